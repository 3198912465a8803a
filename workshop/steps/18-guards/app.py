"""A multi-user chat: every message sent to /ws goes to everyone connected.

Start it with `flask run`, then open http://127.0.0.1:5000 in two windows.
"""
import collections
import json
import logging
import queue
import socket
import struct
import sys
import threading
import time

from flask import Flask, g, request, send_file
from flask_sock import Sock

from safeguards import frames, guards, limits

HISTORY_SIZE = 10            # messages a newcomer is shown on arrival
MAX_MESSAGE_CHARS = 1000     # a long paragraph; more is a paste that floods every screen
MAX_NAME_CHARS = 32          # fits on one line beside the message
MAX_FRAME_CHARS = 64 * 1024  # the library closes with 1009 before we read anything bigger
RATE_BURST = 20              # messages one connection may send at once...
RATE_PER_SECOND = 5          # ...and on average after that: faster than anyone types
OUTBOX_LIMIT = 2000          # frames waiting for one client; more means it is stuck
SEND_TIMEOUT = 10            # seconds a socket may accept nothing before we give up on it
SEND_BUFFER = 64 * 1024      # kernel bytes per client: plenty for chat, little to pin
PING_INTERVAL = 25           # seconds; finds peers that vanished without saying goodbye
# The settings, for a LAN, the internet or a classroom: see safeguards/settings.py.
WAKE_INTERVAL = 25           # seconds; see receive_messages (each wake-up costs CPU)
# One message to thousands of people wakes thousands of writer threads, all queueing for
# the GIL; at Python's default 5 ms interval they pass it round so often that the
# broadcast takes seconds. No thread here computes for long, so switch less often.
SWITCH_INTERVAL = 0.5        # seconds

sys.setswitchinterval(SWITCH_INTERVAL)

app = Flask(__name__)
app.logger.setLevel(logging.INFO)
app.config["SOCK_SERVER_OPTIONS"] = {
    "ping_interval": PING_INTERVAL,
    "max_message_size": MAX_FRAME_CHARS,
}
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
    tune_socket(ws.sock)
    frames.share_socket(ws)  # from now on every write on it goes out whole
    outbox = join(ws)
    # The only thread that sends on this socket: two senders corrupt the stream.
    writer = threading.Thread(target=write_frames, args=(ws, outbox))
    writer.start()
    try:
        receive_messages(ws, outbox)
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
        count = len(clients)
    app.logger.info("%s joined, %d connected", request.remote_addr, count)
    return outbox


def leave(ws):
    with clients_lock:
        del clients[ws]
        count = len(clients)
    app.logger.info("%s left, %d connected", request.remote_addr, count)


def receive_messages(ws, outbox):
    allowance, last_check = RATE_BURST, time.monotonic()
    while True:
        # simple-websocket can close (1009) without waking a receive() that has
        # no timeout, so wake up now and then: it raises ConnectionClosed then.
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
        except ValueError as error:  # bad input: tell the sender alone
            queue_frame(ws, outbox, frames.text_frame(json.dumps({"error": str(error)})))


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
        raise ValueError(f'"message" must be 1 to {MAX_MESSAGE_CHARS} characters.')
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f'"name" must be at most {MAX_NAME_CHARS} characters.')
    try:  # a lone surrogate such as "\ud800" would break every client's writer
        (name + message).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("That text contains invalid characters.") from None
    return {"name": name or "anonymous", "message": message}


def broadcast(message):
    frame = json.dumps(message, ensure_ascii=False)
    deliver(frame)


def deliver(text):
    # Servers do not mask their frames, so one frame's bytes suit every client.
    frame = frames.text_frame(text)
    with clients_lock:  # one lock, so every client gets the frames in one order
        history.append(frame)
        for ws, outbox in clients.items():
            queue_frame(ws, outbox, frame)


def queue_frame(ws, outbox, frame):
    """Hand a frame to the client's writer; never wait for the client itself."""
    if outbox.qsize() >= OUTBOX_LIMIT:
        hang_up(ws)  # this far behind, it is stuck: drop it, not everyone else
    else:
        outbox.put(frame)


def write_frames(ws, outbox):
    try:
        for frame in iter(outbox.get, None):
            if not frames.send_whole(ws, [frame, *frames_waiting(outbox)]):
                return  # the connection is closing: the library says goodbye
    except Exception:  # reset, SEND_TIMEOUT passed, or anything else: it is over
        hang_up(ws)


def frames_waiting(outbox):
    """The frames queued behind the one taken, to send them all in one write."""
    waiting, size = [], 0
    # Up to what the kernel holds for the client: a bigger write would only wait there.
    while size < SEND_BUFFER and not outbox.empty():  # we are its only reader
        frame = outbox.get()
        if frame is None:  # the connection is over: leave the end for the loop
            outbox.put(None)
            break
        waiting.append(frame)
        size += len(frame)
    return waiting


def hang_up(ws):
    """Cut the connection at the socket: it wakes every thread blocked on it."""
    try:
        ws.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


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


@app.before_request
def guard_the_door():
    """For the websocket alone: guards.py's checks at the door, then limits.py's count."""
    if request.path != "/ws":
        return None
    refused = guards.refusal()  # host, handshake, Origin; and compression declined
    if refused is not None:
        return refused
    address = guards.client_address()
    refused = limits.admit(address)  # why not, in a sentence; or None
    if refused is not None:
        return guards.plain_error(429, refused)  # Too Many Requests
    g.admitted = address  # counted until the request is over: see below
    return None


@app.teardown_request
def release_the_address(error):
    address = g.pop("admitted", None)
    if address is not None:
        limits.release(address)
