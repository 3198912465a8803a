"""A chat room: every message sent to the websocket goes to everyone connected.

Run it with `flask run`, then open http://127.0.0.1:5000 in two windows.
"""
import threading

from flask import Flask, send_file
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)

# Many threads join, leave and broadcast at once, so one lock guards the set.
clients = set()
clients_lock = threading.Lock()


@app.get("/")
def index():
    return send_file("chat.html")


@sock.route("/ws")
def chat(ws):
    with clients_lock:
        clients.add(ws)
    try:
        while True:
            message = ws.receive()
            with clients_lock:
                for client in clients:
                    client.send(message)
    finally:  # however the connection ended
        with clients_lock:
            clients.discard(ws)
