"""A chat room: every message sent to the websocket goes to everyone connected.

Run it with `flask run`, then open http://127.0.0.1:5000 in two windows. To add it to an
app of your own, at any prefix: app.register_blueprint(chat.bp, url_prefix="/chat").
"""
import collections
import contextlib
import json
import logging
import queue
import socket
import struct
import sys
import threading
import time

from flask import Blueprint, Flask, current_app, request, send_from_directory

# What works around the libraries, or guards the door: the folder beside this file.
from safeguards import frames, websocket

HISTORY_SIZE = 10            # messages a newcomer is shown on arrival
MAX_MESSAGE_CHARS = 1000     # a long paragraph; more is a paste that floods every screen
MAX_NAME_CHARS = 32          # fits on one line beside the message
MAX_FRAME_CHARS = 64 * 1024  # the library closes with 1009 before we read anything bigger
RATE_BURST = 20              # messages one connection may send at once...
RATE_PER_SECOND = 5          # ...and on average after that: faster than anyone types
OUTBOX_SIZE = 2000           # frames for one tab: 100 people's bursts; more, it stopped reading
SEND_TIMEOUT = 10            # seconds a socket may accept nothing before we give up on it
SEND_BUFFER = 64 * 1024      # kernel bytes per client: plenty for chat, little to pin
PING_INTERVAL = 25           # seconds; finds peers that vanished without saying goodbye
# One message to thousands of people wakes thousands of writer threads, all queueing for
# the GIL; at Python's default 5 ms interval they pass it round so often that the
# broadcast takes seconds. No thread here computes for long, so switch less often.
SWITCH_INTERVAL = 0.5        # seconds
# The settings, for a LAN, the internet or a classroom: see safeguards/settings.py.

SOCKET_OPTIONS = {  # simple-websocket's, for the chat's websocket alone
    "ping_interval": PING_INTERVAL,
    "max_message_size": MAX_FRAME_CHARS,
}

bp = Blueprint("chat", __name__)  # the page and its socket, for any app at any prefix

# Many threads join, leave and broadcast at once, so one lock guards both.
clients = set()  # (websocket, outbox) for each open connection
history = collections.deque(maxlen=HISTORY_SIZE)  # the newest frames, oldest first
clients_lock = threading.Lock()


def create_app():
    """The chat alone, as `flask run` serves it."""
    sys.setswitchinterval(SWITCH_INTERVAL)  # for the whole process: see above
    app = Flask(__name__)
    app.logger.setLevel(logging.INFO)  # joins and leaves
    app.register_blueprint(bp)
    return app


@bp.get("/")
def index():
    return send_from_directory(bp.root_path, "chat.html")


@websocket.route(bp, "/ws", SOCKET_OPTIONS)
def chat(ws):
    tune_socket(ws.sock)
    client = (ws, queue.Queue(maxsize=OUTBOX_SIZE))
    # The only thread that sends on this socket, so a slow reader keeps only itself waiting.
    threading.Thread(target=write_frames, args=client, daemon=True).start()
    join(client)
    try:
        receive_messages(client)
    finally:
        leave(client)
        with contextlib.suppress(queue.Full):  # if full, it ends at its next frame:
            client[1].put_nowait(None)  # the writer ends (the connection is closing)


def join(client):
    with clients_lock:  # so no message slips between the history and live ones
        for frame in history:
            client[1].put_nowait(frame)
        clients.add(client)
        count = len(clients)
    current_app.logger.info("%s joined, %d connected", request.remote_addr, count)


def leave(client):
    with clients_lock:
        clients.discard(client)
        count = len(clients)
    current_app.logger.info("%s left, %d connected", request.remote_addr, count)


def broadcast(message):
    text = json.dumps(message)  # in \u escapes: a lone "\ud800" cannot break a writer
    # Servers do not mask their frames, so one frame's bytes suit every client.
    frame = frames.text_frame(text)
    with clients_lock:  # one lock, so every client gets the frames in one order
        history.append(frame)
        for client in clients:
            send_to(client, frame)


def receive_messages(client):
    ws, allowance, last_check = client[0], RATE_BURST, time.monotonic()
    while True:
        frame = ws.receive()  # raises ConnectionClosed when the connection ends
        # Limited by when it sent, not by when we got round to its messages.
        arrival = websocket.arrival_time(ws)
        allowance = min(RATE_BURST, allowance + (arrival - last_check) * RATE_PER_SECOND)
        last_check = arrival
        try:
            if allowance < 1:
                raise ValueError("You are sending too fast; wait a moment.")
            allowance -= 1
            broadcast(parse_message(frame))
        except ValueError as error:  # bad input: tell the sender alone, in its turn
            send_to(client, frames.text_frame(json.dumps({"error": str(error)})))


def parse_message(frame):
    """Return {"name", "message"} from a client's frame, or raise ValueError."""
    if not isinstance(frame, str):
        raise ValueError("Send text: binary frames are not accepted.")
    example = 'Send JSON like {"name": "Ada", "message": "hello"}.'
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):  # "[[[[..." nests too deep to parse
        raise ValueError(f"That is not valid JSON. {example}") from None
    if not isinstance(data, dict):
        raise ValueError(f"That is not a JSON object. {example}")
    name, message = data.get("name"), data.get("message")
    if not isinstance(message, str):
        raise ValueError('"message" must be a string.')
    if not isinstance(name, (str, type(None))):
        raise ValueError('"name" must be a string.')
    name, message = (name or "").strip(), message.strip()
    if not 1 <= len(message) <= MAX_MESSAGE_CHARS:
        raise ValueError(f"A message has 1 to {MAX_MESSAGE_CHARS:,} characters;"
                         f" yours has {len(message):,}.")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"A name has at most {MAX_NAME_CHARS} characters; yours has {len(name)}.")
    return {"name": name or "anonymous", "message": message}


def send_to(client, frame):
    """Hand a frame to the client's writer; never wait for the client itself."""
    ws, outbox = client
    try:
        outbox.put_nowait(frame)
    except queue.Full:  # this far behind, it stopped reading: drop it, not everyone else
        hang_up(ws)


def write_frames(ws, outbox):
    try:
        for frame in iter(outbox.get, None):
            if not frames.send_whole(ws, [frame]):
                return  # the connection is closing: the library says goodbye
    except Exception:  # reset, SEND_TIMEOUT passed, or anything else: it is over
        hang_up(ws)


def hang_up(ws):
    """Cut the connection at the socket: it wakes every thread blocked on it."""
    with contextlib.suppress(OSError):  # already closed
        ws.sock.shutdown(socket.SHUT_RDWR)


def tune_socket(sock):
    # Chat frames are tiny: send each now, not after the peer's delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    # Without a send timeout, send() to a peer that stopped reading never returns.
    if sys.platform == "win32":
        timeout = SEND_TIMEOUT * 1000  # milliseconds
    else:
        timeout = struct.pack("ll", SEND_TIMEOUT, 0)  # struct timeval
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeout)
