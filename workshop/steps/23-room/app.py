"""A multi-user chat: every message sent to its websocket goes to everyone connected.

Run it alone with `flask --app hardened run`, then open http://127.0.0.1:5000 in two
windows. Or add it to your own app at any prefix: copy this folder, hardened/, beside your
app's module (or inside its package), then `import hardened` (or `from . import hardened`)
and app.register_blueprint(hardened.bp, url_prefix="/chat"). Each app it is registered on
has a room of its own, with the settings in that app's config.
"""
import collections
import html
import json
import logging
import pathlib
import re
import socket
import struct
import sys
import threading
import time
from types import SimpleNamespace

from flask import Blueprint, Flask, current_app, request

# What works around the libraries, or guards the door: the folder beside this file.
from safeguards import (frames, headers, limits, process, redis_bridge, selfcheck,
                        settings, text_rules, websocket)

# The settings a host may change, in its app.config as CHAT_ and the name (CHAT_HISTORY_SIZE,
# ...) or in an environment variable of that name: read_settings() reads them. Defaults:
HISTORY_SIZE = 10            # messages a newcomer is shown on arrival
MAX_MESSAGE_CHARS = 1000     # a long paragraph; more is a paste that floods every screen
MAX_NAME_CHARS = 32          # fits on one line beside the message
RATE_BURST = 20              # messages one connection may send at once...
RATE_PER_SECOND = 5          # ...and on average after that: faster than anyone types
# (and per address, whatever its number of connections: see safeguards/limits.py)
# CHAT_REDIS_URL, unset by default, runs several processes as one room, through Redis
# (safeguards/redis_bridge.py), in the stream CHAT_REDIS_STREAM; CHAT_ALLOWED_HOSTS and
# CHAT_TRUSTED_PROXIES are the door's (safeguards/settings.py). Two are the host's own
# functions, called in the request of the page or of the socket, in app.config only:
# CHAT_ALLOW() says whether this person may enter (its login), CHAT_SPEAKER() the name
# they speak under (its logged-in user's), or None to let them type one.
NOT_ALLOWED = "Log in to use the chat."  # the words for someone CHAT_ALLOW() refuses
POLICY_VIOLATION = 1008  # the close code of a login refused (RFC 6455, 7.4.1)

MAX_FRAME_CHARS = 64 * 1024  # the library closes with 1009 before we read anything bigger
OUTBOX_LIMIT = 2000          # frames waiting for one client; more means it is stuck
# More messages than the room can fan out in time are refused, not queued: a message
# that waited longer than this to be read, or whose address's frames wait longer for the
# room's sender, or whose sender has more frames waiting for it than BUSY_BACKLOG.
BUSY_WAIT = 1                # seconds
BUSY_BACKLOG = 100           # frames, a second's worth or less: see room_is_busy()
SEND_TIMEOUT = 10            # seconds a socket may accept nothing before we give up on it
SEND_BUFFER = 64 * 1024      # kernel bytes per client: plenty for chat, little to pin
PING_INTERVAL = 25           # seconds; finds peers that vanished without saying goodbye
SENDER_IDLE = 10             # seconds with nothing to send before the room's sender ends

SOCKET_OPTIONS = {  # simple-websocket's, for the chat's websocket alone
    "ping_interval": PING_INTERVAL,
    "max_message_size": MAX_FRAME_CHARS,
}

# The chat, ready to be registered on any Flask app: create_app() below, or yours.
bp = Blueprint("chat", __name__)
EVERYONE = None  # whom a frame for the whole room is for


class Room:
    """The room of one app the chat is registered on. Many threads join, leave and
    broadcast at once, so one lock guards it all."""

    def __init__(self, chosen):
        self.settings = chosen  # read_settings()'s
        self.clients = {}  # each open websocket -> its outbox: what its socket has yet to take
        self.history = collections.deque(maxlen=chosen.HISTORY_SIZE)  # newest sent, oldest first
        # For its sender, the frames each address has sent, in turn: sending address ->
        # its frames, oldest first, each (frame, to whom: a websocket or EVERYONE, when).
        self.to_send = {}
        self.lock = threading.Lock()
        self.frames_to_send = threading.Condition(self.lock)  # notified when to_send gets one
        self.sender = None  # the room's sender, while it runs
        self.redis = None  # with CHAT_REDIS_URL set, its redis_bridge.Bridge


def create_app():
    """The chat alone, as `flask --app hardened run` serves it."""
    process.tune_for_many_websockets()  # for thousands of websockets: safeguards/process.py
    app = Flask(__name__)
    app.logger.setLevel(logging.INFO)  # joins and leaves
    app.register_blueprint(bp)
    return app


@bp.record
def on_register(state):
    """Give the app its room, as Flask's extensions keep theirs: in app.extensions."""
    app = state.app
    if "chat" in app.extensions:  # the handlers find the room by app: it would be shared
        raise ValueError(f"The chat is registered on this app already; register it once"
                         f" (not again as {state.name!r}): each app has one room.")
    selfcheck.verify()  # refuse to start if a library moved what safeguards/ relies on
    settings.of_app(app)  # the door's settings: a bad value stops the start, here
    room = app.extensions["chat"] = Room(read_settings(app.config))
    if room.settings.REDIS_URL:
        room.redis = redis_bridge.start(room.settings.REDIS_URL, room.settings.REDIS_STREAM,
                                        room, deliver, room.settings.HISTORY_SIZE)


def read_settings(config):
    """The room's settings, from the app's config or the environment (settings.py), each
    within bounds that keep the chat sound."""
    def number(name, default, least, most):
        return settings.whole_number(f"CHAT_{name}", default, least, most, config)
    return SimpleNamespace(
        HISTORY_SIZE=number("HISTORY_SIZE", HISTORY_SIZE, 0, 1000),
        # A message of 10,000 characters is a frame of 60 KB at most: under MAX_FRAME_CHARS.
        MAX_MESSAGE_CHARS=number("MAX_MESSAGE_CHARS", MAX_MESSAGE_CHARS, 1, 10_000),
        MAX_NAME_CHARS=number("MAX_NAME_CHARS", MAX_NAME_CHARS, 1, 100),
        RATE_BURST=number("RATE_BURST", RATE_BURST, 1, 1000),
        RATE_PER_SECOND=number("RATE_PER_SECOND", RATE_PER_SECOND, 1, 100),
        REDIS_URL=settings.text("CHAT_REDIS_URL", None, config),
        REDIS_STREAM=settings.text("CHAT_REDIS_STREAM", redis_bridge.STREAM, config),
        ALLOW=hook("CHAT_ALLOW", config),
        SPEAKER=hook("CHAT_SPEAKER", config))


def hook(name, config):
    """One of the host's functions: None, or something to call."""
    function = config.get(name)
    if function is not None and not callable(function):
        raise ValueError(f"{name} must be a function the chat calls, with no arguments,"
                         f" in each request of its page and socket; not {function!r}.")
    return function


def is_allowed(chosen):
    """May the person making this request use the chat? The host's CHAT_ALLOW() says."""
    return chosen.ALLOW is None or bool(chosen.ALLOW())


def speaker_of(chosen):
    """The name the host gives the person making this request, or None to let them type
    one. A name it gives is checked as a typed one is: nobody else may make it look
    like another."""
    name = chosen.SPEAKER() if chosen.SPEAKER is not None else None
    if name is not None and not isinstance(name, str):
        raise TypeError(f"CHAT_SPEAKER() must give a name or None, not {name!r}.")
    return name


def room_of(app):
    """The room of an app the chat is registered on."""
    return app.extensions["chat"]


@bp.get("/")
def index():
    chosen = room_of(current_app).settings
    if not is_allowed(chosen):
        return NOT_ALLOWED + "\n", 403, {"Content-Type": "text/plain; charset=utf-8"}
    # Read each time, so that an edited page is served, with its script's new hash.
    page = pathlib.Path(bp.root_path, "chat.html").read_text(encoding="utf-8")
    page = with_settings(page, chosen, speaker_of(chosen) or "")
    return page, headers.for_page(page)


def with_settings(page, chosen, name=""):
    """The page, its <body> telling the script the room's limits, and the name the host
    gives its reader, if any. In data- attributes, not in the script: the
    Content-Security-Policy lets it run by the hash of its text."""
    for attribute, value in (("data-max-message-chars", chosen.MAX_MESSAGE_CHARS),
                             ("data-max-name-chars", chosen.MAX_NAME_CHARS),
                             ("data-history-size", chosen.HISTORY_SIZE),
                             ("data-speaker", html.escape(name))):
        page = re.sub(rf'(<body\b[^>]*\s{attribute}=")[^"]*"',
                      lambda found: f'{found[1]}{value}"', page, count=1)
    return page


@websocket.route(bp, "/ws", SOCKET_OPTIONS)
def chat(ws):
    tune_socket(ws.sock)
    room = room_of(current_app)
    if not is_allowed(room.settings):  # a browser shows a page nothing of a refused
        ws.close(POLICY_VIOLATION, NOT_ALLOWED)  # handshake, but a close's reason it does
        return
    name = speaker_of(room.settings)
    outbox = join(room, ws)
    try:
        receive_messages(room, ws, outbox, name)
    finally:
        leave(room, ws)


def join(room, ws):
    outbox = Outbox()
    with room.lock:  # so no message slips between the history and live ones
        room.clients[ws] = outbox
        send_frames(ws, outbox, list(room.history))
        count = len(room.clients)
    current_app.logger.info("%s joined, %d connected", request.remote_addr, count)
    return outbox


def leave(room, ws):
    with room.lock:
        del room.clients[ws]
        count = len(room.clients)
    current_app.logger.info("%s left, %d connected", request.remote_addr, count)


def receive_messages(room, ws, outbox, name=None):
    burst, rate = room.settings.RATE_BURST, room.settings.RATE_PER_SECOND
    allowance, last_check = burst, time.monotonic()
    sender = limits.key(request.remote_addr)  # its address, as the limits count it
    while True:
        frame = ws.receive()  # raises ConnectionClosed when the connection ends
        # Limited by when it sent, not by when we got round to its messages.
        arrival = websocket.arrival_time(ws)
        allowance = min(burst, allowance + (arrival - last_check) * rate)
        last_check = arrival
        try:
            if room_is_busy(room, sender, arrival, outbox):
                raise ValueError("The room is busy; wait a moment, then send that again.")
            if allowance < 1 or not limits.take_message(request.remote_addr, arrival, ws):
                raise ValueError("You are sending too fast; wait a moment.")
            allowance -= 1
            broadcast(room, parse_message(frame, room.settings, name))
        except (ValueError, ConnectionError) as error:  # bad input, or Redis away
            reply = frames.text_frame(json.dumps({"error": str(error)}))
            # In its address's turn, after what it sent before: the page counts on it.
            queue_to_send(room, reply, ws, sender)


def room_is_busy(room, sender, arrival, outbox):
    """Is the room sending more than it can, for this sender's address? The wait since
    the message arrived shows how far behind the handlers are; the wait of the oldest
    frame its address has queued, how far behind the room's sender is with them (each
    address has its turn: those that send the most wait the longest); and its own outbox,
    whether it reads what it gets."""
    now = time.monotonic()
    with room.lock:
        waiting = room.to_send.get(sender)
        oldest = waiting[0][2] if waiting else now
    return (now - arrival > BUSY_WAIT or now - oldest > BUSY_WAIT
            or len(outbox) > BUSY_BACKLOG)


def parse_message(frame, chosen, speaker=None):
    """Return {"name", "message"} from a client's frame, or raise ValueError. `chosen` are
    the room's settings: its limits. A `speaker` the host named replaces the frame's name."""
    if not isinstance(frame, str):
        raise ValueError("Send text: binary frames are not accepted.")
    example = 'Send JSON like {"name": "Ada", "message": "hello"}.'
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):  # "[[[[..." nests too deep to parse
        raise ValueError(f"That is not valid JSON. {example}") from None
    if not isinstance(data, dict):
        raise ValueError(f"That is not a JSON object. {example}")
    name, message = data.get("name") if speaker is None else speaker, data.get("message")
    if not isinstance(message, str):
        raise ValueError('"message" must be a string.')
    if not isinstance(name, (str, type(None))):
        raise ValueError('"name" must be a string.')
    name, message = (name or "").strip(), message.strip()
    if not message:
        raise ValueError("Your message is empty.")
    if len(message) > chosen.MAX_MESSAGE_CHARS:
        raise ValueError(f"Your message is too long: {len(message):,} characters;"
                         f" the limit is {chosen.MAX_MESSAGE_CHARS:,}.")
    if len(name) > chosen.MAX_NAME_CHARS:
        raise ValueError(f"Your name is too long: {len(name):,} characters;"
                         f" the limit is {chosen.MAX_NAME_CHARS:,}.")
    try:  # a lone surrogate such as "\ud800" would break every client's writer
        (name + message).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("Your text contains a broken character (a lone surrogate)"
                         " that cannot be sent.") from None
    text_rules.check(name, message)  # nothing invisible, reversed or piled up
    return {"name": name or "anonymous", "message": message}


def broadcast(room, message):
    frame = json.dumps(message, ensure_ascii=False)
    if room.redis:  # Redis hands it to every process's deliver(), this one's included
        room.redis.publish(frame, request.remote_addr)
    else:
        deliver(room, frame, request.remote_addr)


def deliver(room, text, address):
    # Servers do not mask their frames, so one frame's bytes suit every client.
    queue_to_send(room, frames.text_frame(text), EVERYONE, limits.key(address))


def queue_to_send(room, frame, to, sender):
    """Hand a frame for everyone, or for one client, to the room's sender, in the turn of
    the address that sent it: the sender writes, so that the handlers never wait."""
    with room.lock:
        room.to_send.setdefault(sender, collections.deque()).append(
            (frame, to, time.monotonic()))
        start_room_sender(room)
        room.frames_to_send.notify()


def start_room_sender(room):
    """Start the one thread that sends to the room, with the first frame it is to send
    (so registering the chat starts nothing), unless it runs. Hold room.lock: one runs."""
    if room.sender is None:
        room.sender = threading.Thread(target=send_to_room, args=(room,), daemon=True)
        room.sender.start()


def send_to_room(room):
    """The room's sender: it takes the frames that wait, each address's in turn, and sends
    each client its own in one write, never waiting for anyone. Being one, it keeps one
    order for all. It ends when the room has been quiet for SENDER_IDLE: a room whose app
    is gone keeps no thread."""
    while True:
        with room.lock:  # so a newcomer gets each frame once: in history, or from here
            if not room.frames_to_send.wait_for(lambda: room.to_send, SENDER_IDLE):
                room.sender = None  # the next frame starts another
                return
            batch = take_in_turn(room)
            everyone = [frame for frame, to, _ in batch if to is EVERYONE]
            room.history.extend(everyone)
            receivers = list(room.clients.items())
        # Most clients get the frames for everyone; a client with replies in the batch, its own.
        theirs = frames_for(batch) if len(everyone) < len(batch) else {}
        for ws, outbox in receivers:
            send_frames(ws, outbox, theirs.get(ws, everyone))


def take_in_turn(room):
    """Up to one write's worth of the frames that wait: the oldest of each address in turn,
    so that an address sending more than its share waits for its own frames, and nobody
    else does. A frame for a client that has left is dropped. Hold room.lock."""
    batch, size = [], 0
    while room.to_send and size < SEND_BUFFER:
        sender, waiting = next(iter(room.to_send.items()))
        del room.to_send[sender]
        frame, to, when = waiting.popleft()
        if waiting:
            room.to_send[sender] = waiting  # the back of the line, for its next turn
        if to is EVERYONE or to in room.clients:
            batch.append((frame, to, when))
            size += len(frame)
    return batch


def frames_for(batch):
    """For each client the batch has frames for alone, the frames of the batch that go to
    it: those for everyone and its own, in order. In one pass, however many they are."""
    everyone, theirs = [], {}
    for frame, to, _ in batch:
        if to is EVERYONE:
            everyone.append(frame)
            for listed in theirs.values():
                listed.append(frame)
        else:
            if to not in theirs:
                theirs[to] = list(everyone)  # what came before its first
            theirs[to].append(frame)
    return theirs


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
