"""A multi-user chat: every message sent to /ws goes to everyone connected.

Start it with `flask run`, then open http://127.0.0.1:5000 in two windows.
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
clients = {}  # each open websocket -> the queue of frames its writer sends
history = collections.deque(maxlen=HISTORY_SIZE)  # the newest frames, oldest first
clients_lock = threading.Lock()


@app.get("/")
def index():
    return send_file("chat.html")


@sock.route("/ws")
def chat(ws):
    outbox = join(ws)
    # The only thread that sends on this socket: two senders corrupt the stream.
    writer = threading.Thread(target=write_frames, args=(ws, outbox))
    writer.start()
    try:
        receive_messages(ws)
    finally:
        leave(ws)
        outbox.put(None)
        writer.join()  # flask-sock sends its close frame after we return


def join(ws):
    outbox = queue.SimpleQueue()  # the lightest thread-safe queue
    with clients_lock:  # so no message slips between the history and live ones
        for frame in history:
            outbox.put(frame)
        clients[ws] = outbox
    return outbox


def leave(ws):
    with clients_lock:
        del clients[ws]


def receive_messages(ws):
    while True:
        deliver(ws.receive())


def deliver(frame):
    with clients_lock:  # one lock, so every client gets the frames in one order
        history.append(frame)
        for outbox in clients.values():
            outbox.put(frame)


def write_frames(ws, outbox):
    try:
        for frame in iter(outbox.get, None):
            ws.send(frame)
    except Exception:  # closed or reset: the handler finds out too, and leaves
        pass
