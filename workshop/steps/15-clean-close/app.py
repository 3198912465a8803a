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
import threading
import time
from urllib.parse import urlsplit

from flask import Blueprint, Flask, abort, current_app, request, send_from_directory
from flask_sock import Sock

HISTORY_SIZE = 10            # messages a newcomer is shown on arrival
MAX_MESSAGE_CHARS = 1000     # a long paragraph; more is a paste that floods every screen
MAX_NAME_CHARS = 32          # fits on one line beside the message
MAX_FRAME_BYTES = 16 * 1024  # the library closes with 1009 before we read anything bigger
RATE_BURST = 20              # messages one connection may send at once...
RATE_PER_SECOND = 5          # ...and on average after that: faster than anyone types
OUTBOX_SIZE = 2000           # frames for one tab: 100 people's bursts; more, it stopped reading
PING_INTERVAL = 25           # seconds; finds peers that vanished without saying goodbye
WAKE_INTERVAL = 0.5          # seconds; see receive_messages()
CLOSE_WAIT = 1               # seconds the library has to finish a close handshake

bp = Blueprint("chat", __name__)  # the page and its socket, for any app at any prefix
sock = Sock()

# Many threads join, leave and broadcast at once, so one lock guards both.
clients = set()  # (websocket, outbox) for each open connection
history = collections.deque(maxlen=HISTORY_SIZE)  # the newest frames, oldest first
clients_lock = threading.Lock()


def create_app():
    """The chat alone, as `flask run` serves it."""
    app = Flask(__name__)
    app.logger.setLevel(logging.INFO)  # joins and leaves
    app.register_blueprint(bp)
    return app


@bp.record_once
def set_socket_options(state):
    # flask-sock reads its options from the app's config, for every websocket of the app:
    # the chat adds its own, and keeps any the app has set.
    options = state.app.config.setdefault("SOCK_SERVER_OPTIONS", {})
    options.setdefault("ping_interval", PING_INTERVAL)
    options.setdefault("max_message_size", MAX_FRAME_BYTES)


@bp.before_request
def refuse_other_sites():
    """Another site's page must not open our socket with our users' cookies."""
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc.lower() != request.host.lower():
        abort(403, "This chat takes connections from its own page only.")


@bp.get("/")
def index():
    return send_from_directory(bp.root_path, "chat.html")


@sock.route("/ws", bp=bp)
def chat(ws):
    client = (ws, queue.Queue(maxsize=OUTBOX_SIZE))
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
        count = len(clients)
    current_app.logger.info("%s joined, %d connected", request.remote_addr, count)


def leave(client):
    with clients_lock:
        clients.discard(client)
        count = len(clients)
    current_app.logger.info("%s left, %d connected", request.remote_addr, count)


def broadcast(message):
    frame = json.dumps(message)  # in \u escapes: a lone "\ud800" cannot break a writer
    with clients_lock:  # one lock, so every client gets the frames in one order
        history.append(frame)
        for client in clients:
            send_to(client, frame)


def receive_messages(client):
    ws, allowance, last_check = client[0], RATE_BURST, time.monotonic()
    while True:
        # simple-websocket can close (1009) without waking a receive() that waits for
        # ever; one that wakes now and then raises ConnectionClosed on its next call.
        frame = ws.receive(timeout=WAKE_INTERVAL)
        if frame is None:
            continue
        now = time.monotonic()
        allowance = min(RATE_BURST, allowance + (now - last_check) * RATE_PER_SECOND)
        last_check = now
        try:
            if allowance < 1:
                raise ValueError("You are sending too fast; wait a moment.")
            allowance -= 1
            broadcast(parse_message(frame))
        except ValueError as error:  # bad input: tell the sender alone, in its turn
            send_to(client, json.dumps({"error": str(error)}))


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
            ws.send(frame)
    except Exception:  # closing, closed or reset: the handler ends the connection
        pass


def hang_up(ws):
    """Cut the connection at the socket: it wakes every thread blocked on it."""
    with contextlib.suppress(OSError):  # already closed
        ws.sock.shutdown(socket.SHUT_RDWR)


def finish(client):
    """End the connection with nothing on the wire after the close frame."""
    ws, outbox = client
    ws.thread.join(CLOSE_WAIT)  # the library's reader writes the close frame, and ends...
    hang_up(ws)  # ...then no more: Werkzeug would write "HTTP/1.1 200 OK" after it
    with contextlib.suppress(queue.Full):  # if full, the writer's next send fails
        outbox.put_nowait(None)  # the writer ends
