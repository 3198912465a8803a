"""PEER, for bench.py: the naive flask-sock chat, as a first tutorial would write it.

A set of sockets, a lock, and ws.send() to each in the loop. One client that stops reading
blocks that send forever, with the lock held: the whole chat freezes.
Run: flask --app bench/peers/naive_flask_sock.py run
"""
import threading

from flask import Flask
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)
clients = set()
lock = threading.Lock()


@sock.route("/ws")
def chat(ws):
    with lock:
        clients.add(ws)
    try:
        while True:
            message = ws.receive()
            with lock:
                for client in clients:
                    client.send(message)
    finally:
        with lock:
            clients.discard(ws)
