"""A multi-user chat: every message sent to its websocket goes to everyone connected.

Run it alone with `flask --app hardened run`, then open http://127.0.0.1:5000 in two
windows. Or add it to your own app at any prefix: copy this folder, hardened/, beside your
app's module (or inside its package), then `import hardened` (or `from . import hardened`)
and app.register_blueprint(hardened.bp, url_prefix="/chat").
"""
import collections
import json
import logging
import pathlib
import socket
import struct
import sys
import threading
import time

from flask import Blueprint, Flask, current_app, request

# What works around the libraries, or guards the door: the folder beside this file.
from safeguards import (frames, headers, limits, process, redis_bridge, selfcheck,
                        settings, text_rules, websocket)

HISTORY_SIZE = 10            # messages a newcomer is shown on arrival
MAX_MESSAGE_CHARS = 1000     # a long paragraph; more is a paste that floods every screen
MAX_NAME_CHARS = 32          # fits on one line beside the message
MAX_FRAME_CHARS = 64 * 1024  # the library closes with 1009 before we read anything bigger
RATE_BURST = 20              # messages one connection may send at once...
RATE_PER_SECOND = 5          # ...and on average after that: faster than anyone types
# (and per address, whatever its number of connections: see safeguards/limits.py)
OUTBOX_LIMIT = 2000          # frames waiting for one client; more means it is stuck
# More messages than the room can fan out in time are refused, not queued: a message
# that waited longer than this to be read, or that would wait longer for the room's
# sender, or whose sender has more frames waiting for it...
BUSY_WAIT = 1                # seconds
BUSY_BACKLOG = 100           # frames, a second's worth or less: see room_is_busy()
SEND_TIMEOUT = 10            # seconds a socket may accept nothing before we give up on it
SEND_BUFFER = 64 * 1024      # kernel bytes per client: plenty for chat, little to pin
PING_INTERVAL = 25           # seconds; finds peers that vanished without saying goodbye
# Set it to run several processes as one room, through Redis: safeguards/redis_bridge.py.
REDIS_URL = settings.REDIS_URL
# The other settings, for a LAN, the internet or a classroom: see safeguards/settings.py.

SOCKET_OPTIONS = {  # simple-websocket's, for the chat's websocket alone
    "ping_interval": PING_INTERVAL,
    "max_message_size": MAX_FRAME_CHARS,
}

# The chat, ready to be registered on any Flask app: create_app() below, or yours.
bp = Blueprint("chat", __name__)

# Many threads join, leave and broadcast at once, so one lock guards all three.
clients = {}  # each open websocket -> its outbox: the frames its socket has yet to take
history = collections.deque(maxlen=HISTORY_SIZE)  # the newest frames sent, oldest first
to_send = []  # (frame, to whom: a websocket or EVERYONE, when), for the room's sender
clients_lock = threading.Lock()
frames_to_send = threading.Condition(clients_lock)  # notified when to_send gets one
EVERYONE = None


def create_app():
    """The chat alone, as `flask --app hardened run` serves it."""
    process.tune_for_many_websockets()  # for thousands of websockets: safeguards/process.py
    app = Flask(__name__)
    app.logger.setLevel(logging.INFO)  # joins and leaves
    app.register_blueprint(bp)
    return app


@bp.record_once
def on_register(state):
    selfcheck.verify()  # refuse to start if a library moved what safeguards/ relies on
    if REDIS_URL:
        redis_bridge.start(REDIS_URL, deliver, HISTORY_SIZE)


@bp.get("/")
def index():
    # Read each time, so that an edited page is served, with its script's new hash.
    page = pathlib.Path(bp.root_path, "chat.html").read_text(encoding="utf-8")
    return page, headers.for_page(page)


@websocket.route(bp, "/ws", SOCKET_OPTIONS)
def chat(ws):
    tune_socket(ws.sock)
    outbox = join(ws)
    try:
        receive_messages(ws, outbox)
    finally:
        leave(ws)


def join(ws):
    outbox = Outbox()
    with clients_lock:  # so no message slips between the history and live ones
        clients[ws] = outbox
        send_frames(ws, outbox, list(history))
        count = len(clients)
    current_app.logger.info("%s joined, %d connected", request.remote_addr, count)
    return outbox


def leave(ws):
    with clients_lock:
        del clients[ws]
        count = len(clients)
    current_app.logger.info("%s left, %d connected", request.remote_addr, count)


def receive_messages(ws, outbox):
    allowance, last_check = RATE_BURST, time.monotonic()
    while True:
        frame = ws.receive()  # raises ConnectionClosed when the connection ends
        # Limited by when it sent, not by when we got round to its messages.
        arrival = websocket.arrival_time(ws)
        allowance = min(RATE_BURST, allowance + (arrival - last_check) * RATE_PER_SECOND)
        last_check = arrival
        try:
            if room_is_busy(arrival, outbox):
                raise ValueError("The room is busy; wait a moment, then send that again.")
            if allowance < 1 or not limits.take_message(request.remote_addr, arrival, ws):
                raise ValueError("You are sending too fast; wait a moment.")
            allowance -= 1
            broadcast(parse_message(frame))
        except (ValueError, ConnectionError) as error:  # bad input, or Redis away
            reply = frames.text_frame(json.dumps({"error": str(error)}))
            queue_to_send(reply, ws)  # after what it sent before: the page counts on it


def room_is_busy(arrival, outbox):
    """Is the room sending more than it can? The wait since the message arrived shows how
    far behind the handlers are; the wait of the oldest frame in to_send, how far behind
    the room's sender is; and the sender's own outbox, whether it reads what it gets."""
    now, oldest = time.monotonic(), to_send[:1]  # a copy: the room's sender takes them
    return (now - arrival > BUSY_WAIT or (oldest and now - oldest[0][2] > BUSY_WAIT)
            or len(outbox) > BUSY_BACKLOG)


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
    if not message:
        raise ValueError("Your message is empty.")
    if len(message) > MAX_MESSAGE_CHARS:
        raise ValueError(f"Your message is too long: {len(message):,} characters;"
                         f" the limit is {MAX_MESSAGE_CHARS:,}.")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"Your name is too long: {len(name):,} characters;"
                         f" the limit is {MAX_NAME_CHARS:,}.")
    try:  # a lone surrogate such as "\ud800" would break every client's writer
        (name + message).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("Your text contains a broken character (a lone surrogate)"
                         " that cannot be sent.") from None
    text_rules.check(name, message)  # nothing invisible, reversed or piled up
    return {"name": name or "anonymous", "message": message}


def broadcast(message):
    frame = json.dumps(message, ensure_ascii=False)
    if REDIS_URL:  # Redis hands it to every process's deliver(), this one's included
        redis_bridge.publish(frame)
    else:
        deliver(frame)


def deliver(text):
    # Servers do not mask their frames, so one frame's bytes suit every client.
    queue_to_send(frames.text_frame(text), EVERYONE)


def queue_to_send(frame, to):
    """Hand a frame for everyone, or for one client, to the room's sender: it writes, so
    that the handlers never wait for a client."""
    with clients_lock:
        start_room_sender()
        to_send.append((frame, to, time.monotonic()))
        frames_to_send.notify()


def start_room_sender():
    """Start the one thread that sends to the room, with the first frame it is to send
    (so registering the chat starts nothing). Hold clients_lock: it starts only once."""
    if room_sender.ident is None:
        room_sender.start()


def send_to_room():
    """The room's sender: it takes the oldest frames that wait, and sends each client its
    own in one write, never waiting for anyone. Being one, it keeps one order for all."""
    while True:
        with clients_lock:  # so a newcomer gets each frame once: in history, or from here
            frames_to_send.wait_for(lambda: to_send)
            batch = to_send[:one_write(frame for frame, _, _ in to_send)]
            del to_send[:len(batch)]
            everyone = [frame for frame, to, _ in batch if to is EVERYONE]
            history.extend(everyone)
            receivers = list(clients.items())
        replies = len(everyone) < len(batch)  # else every client gets the same frames
        for ws, outbox in receivers:
            send_frames(ws, outbox, frames_for(ws, batch) if replies else everyone)


def frames_for(ws, batch):
    """The frames of the batch that go to ws: those for everyone and its own, in order."""
    return [frame for frame, to, _ in batch if to is EVERYONE or to is ws]


room_sender = threading.Thread(target=send_to_room, daemon=True)


class Outbox(list):
    """The frames one client's socket has yet to take, and the lock that guards them: the
    room's sender adds to them, and the client's writer sends them."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()


def send_frames(ws, outbox, batch):
    """Send frames to one client, never waiting for it: now, if nothing waits before them
    and its socket takes them at once; else in turn, by its writer."""
    if not batch:
        return
    with outbox.lock:
        if not outbox and frames.send_now(ws, batch):
            return
        if len(outbox) + len(batch) > OUTBOX_LIMIT:
            hang_up(ws)  # this far behind, it is stuck: drop it, not everyone else
            return
        if not outbox:  # it has just fallen behind: a writer catches it up
            start_writer(ws, outbox)  # it waits for outbox.lock, so for these frames
        outbox.extend(batch)


def start_writer(ws, outbox):
    writer = threading.Thread(target=write_frames, args=(ws, outbox), daemon=True)
    try:
        writer.start()
    except RuntimeError:  # "can't start new thread": out of memory or of threads
        hang_up(ws)  # better one client cut off than a broadcast failed for all


def write_frames(ws, outbox):
    """A client's writer, while it is behind: it sends what waits in its outbox, in one
    write at a time, and ends when nothing does. It is the only thread that writes to
    the client meanwhile: the frames it sends stay in the outbox until written, so
    send_frames() sees them there and queues what comes next behind them."""
    try:
        written = 0
        while True:
            with outbox.lock:
                del outbox[:written]
                waiting = outbox[:one_write(outbox)]
            if not waiting:
                return  # caught up: the next frame may go at once
            if not frames.send_whole(ws, waiting):
                return  # the connection is closing: the library says goodbye
            written = len(waiting)
    except Exception:  # reset, SEND_TIMEOUT passed, or anything else: it is over
        hang_up(ws)


def one_write(waiting):
    """How many of the frames waiting, oldest first, to send in one write..."""
    count, size = 0, 0
    # ...up to what the kernel holds for the client: a bigger write would only wait there.
    for frame in waiting:
        if size >= SEND_BUFFER:
            break
        count, size = count + 1, size + len(frame)
    return count


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
