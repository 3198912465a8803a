"""A chat room: every message sent to the websocket goes to everyone connected.

Run it with `flask run`, then open http://127.0.0.1:5000 in two windows.
"""
import collections
import queue
import threading

from flask import Flask, send_file
from flask_sock import Sock

HISTORY_SIZE = 10            # messages a newcomer is shown on arrival

app = Flask(__name__)
sock = Sock(app)

# Many threads join, leave and broadcast at once, so one lock guards both.
clients = set()  # (websocket, outbox) for each open connection
history = collections.deque(maxlen=HISTORY_SIZE)  # the newest frames, oldest first
clients_lock = threading.Lock()


@app.get("/")
def index():
    return send_file("chat.html")


@sock.route("/ws")
def chat(ws):
    client = (ws, queue.Queue())
    # The only thread that sends on this socket, so a slow reader keeps only itself waiting.
    threading.Thread(target=write_frames, args=client, daemon=True).start()
    join(client)
    try:
        receive_messages(client)
    finally:
        leave(client)
        finish(client)


def join(client):
    with clients_lock:  # so no message slips between the history and live ones
        for frame in history:
            client[1].put_nowait(frame)
        clients.add(client)


def leave(client):
    with clients_lock:
        clients.discard(client)


def broadcast(frame):
    with clients_lock:  # one lock, so every client gets the frames in one order
        history.append(frame)
        for client in clients:
            send_to(client, frame)


def receive_messages(client):
    ws = client[0]
    while True:
        frame = ws.receive()
        broadcast(frame)


def send_to(client, frame):
    """Hand a frame to the client's writer; never wait for the client itself."""
    client[1].put_nowait(frame)  # the outbox has no limit yet: this never waits


def write_frames(ws, outbox):
    try:
        for frame in iter(outbox.get, None):
            ws.send(frame)
    except Exception:  # closing, closed or reset: the handler ends the connection
        pass


def finish(client):
    client[1].put_nowait(None)  # the writer ends
