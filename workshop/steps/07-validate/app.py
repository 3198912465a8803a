"""A multi-user chat: every message sent to /ws goes to everyone connected.

Start it with `flask run`, then open http://127.0.0.1:5000 in two windows.
"""
import collections
import json
import queue
import threading

from flask import Flask, send_file
from flask_sock import Sock

HISTORY_SIZE = 10            # messages a newcomer is shown on arrival
MAX_MESSAGE_CHARS = 1000     # a long paragraph; more is a paste that floods every screen
MAX_NAME_CHARS = 32          # fits on one line beside the message
MAX_FRAME_CHARS = 64 * 1024  # the library closes with 1009 before we read anything bigger

app = Flask(__name__)
app.config["SOCK_SERVER_OPTIONS"] = {
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
    return outbox


def leave(ws):
    with clients_lock:
        del clients[ws]


def receive_messages(ws, outbox):
    while True:
        frame = ws.receive()
        try:
            broadcast(parse_message(frame))
        except ValueError as error:  # bad input: tell the sender alone
            outbox.put(json.dumps({"error": str(error)}))


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
