"""The chat's tests. Each starts app.py on a free port of 127.0.0.1, as `flask run` would,
and talks to it as the page does, or as a client that misbehaves on purpose.

Run `pytest` in the folder that holds app.py: this file needs nothing else.
"""
import base64
import contextlib
import json
import os
import socket
import threading
import time
import urllib.request

import pytest
import simple_websocket
import wsproto.frame_protocol
from flask import Flask
from werkzeug.serving import make_server

import app as chat
from safeguards import limits

TIMEOUT = 5  # seconds any single wait may take before a test fails


class DaemonThread(threading.Thread):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs, daemon=True)


class Client(simple_websocket.Client):
    """simple-websocket's client, changed twice for tests. Its reader thread is a daemon,
    so a client left open cannot keep pytest from exiting. And it parses the frames that
    came in the same read as the handshake's response, such as a newcomer's history,
    which the library (1.1.0) leaves unread until more bytes arrive."""

    def __init__(self, url, *args, thread_class=None, **kwargs):
        super().__init__(url, *args, thread_class=DaemonThread, **kwargs)

    def _thread(self):
        self.connected = self._handle_events()
        super()._thread()


@pytest.fixture(autouse=True)
def no_address_limits(monkeypatch):
    """Every test comes from 127.0.0.1: lift the limits shared by all the connections
    from one address, but where a test sets them."""
    limits.addresses.clear()
    monkeypatch.setattr(limits, "MESSAGES_BURST", 10**9)
    monkeypatch.setattr(limits, "READ_BYTES_BURST", 10**12)
    yield
    # A connection's thread may still be leaving: let it, so the next test starts clean.
    wait_until(lambda: not any(a["connections"] for a in list(limits.addresses.values())))


@pytest.fixture
def app():
    return chat.create_app()


@pytest.fixture
def room(app):
    """The app's room: who is in it, what it remembers, and its settings."""
    return chat.room_of(app)


@pytest.fixture
def server(app, room):
    """Serve the app with Werkzeug's threaded server, as `flask run` does."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    yield f"127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    wait_until(lambda: not room.clients)  # every test's clients have left the room


@pytest.fixture
def connect(server, room):
    """connect() opens a client and waits until the chat has it; all are closed after."""
    opened = []

    def connect_one(path="/ws"):
        before = len(room.clients)
        ws = Client.connect(f"ws://{server}{path}")
        opened.append(ws)
        wait_until(lambda: len(room.clients) > before)
        return ws

    yield connect_one
    for ws in opened:
        try:
            ws.close()
        except simple_websocket.ConnectionClosed:
            pass  # closed already, by the test or by the chat


def wait_until(condition):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the chat"
        time.sleep(0.01)


def say(ws, message, name="Ada"):
    ws.send(json.dumps({"name": name, "message": message}))


def receive(ws):
    """The next frame the chat sends, decoded."""
    frame = ws.receive(timeout=TIMEOUT)
    assert frame is not None, "timed out waiting for a frame"
    return json.loads(frame)


def test_the_page_is_served(server):
    with urllib.request.urlopen(f"http://{server}/", timeout=TIMEOUT) as response:
        assert "<script>" in response.read().decode()


def test_every_client_receives_each_message_trimmed(connect):
    ada, bob = connect(), connect()
    say(ada, "  hello  ")
    assert receive(ada) == receive(bob) == {"name": "Ada", "message": "hello"}
    ada.send(json.dumps({"message": "who am I?"}))
    assert receive(bob) == {"name": "anonymous", "message": "who am I?"}


@pytest.mark.parametrize("frame, words", [
    (b"binary", "Send text"),
    ("hello", "not valid JSON"),
    ("[" * 10_000, "not valid JSON"),  # too deep for Python's parser
    ("[1, 2]", "not a JSON object"),
    ('{"message": 5}', '"message" must be a string'),
    ('{"name": 5, "message": "hi"}', '"name" must be a string'),
    ('{"message": "   "}', "Your message is empty"),
    (json.dumps({"message": "x" * (chat.MAX_MESSAGE_CHARS + 1)}), "too long: 1,001"),
    (json.dumps({"name": "x" * (chat.MAX_NAME_CHARS + 1), "message": "hi"}), "too long: 33"),
    ('{"name": "Ada", "message": "\\ud800 broken"}', "a lone surrogate"),
])
def test_bad_input_gets_words_to_its_sender_alone_in_its_turn(connect, frame, words):
    ada, bob = connect(), connect()
    say(ada, "before")
    ada.send(frame)
    say(ada, "after")
    assert receive(ada)["message"] == "before"
    assert words in receive(ada)["error"]
    assert receive(ada)["message"] == "after"
    assert [receive(bob)["message"], receive(bob)["message"]] == ["before", "after"]


def test_a_newcomer_gets_the_last_ten_oldest_first(connect):
    ada = connect()
    for n in range(chat.HISTORY_SIZE + 3):
        say(ada, f"message {n}")
    for n in range(chat.HISTORY_SIZE + 3):
        receive(ada)
    bob = connect()
    assert [receive(bob)["message"] for _ in range(chat.HISTORY_SIZE)] == [
        f"message {n}" for n in range(3, chat.HISTORY_SIZE + 3)]


def test_newcomers_during_a_burst_get_no_gap_and_no_repeat(connect, monkeypatch, room):
    monkeypatch.setattr(room.settings, "RATE_BURST", 1000)
    ada = connect()
    sender = threading.Thread(target=lambda: [say(ada, str(n)) for n in range(300)])
    sender.start()
    newcomers = [connect() for _ in range(5)]
    sender.join()
    for ws in newcomers:
        seen = []
        while seen[-1:] != ["299"]:
            seen.append(receive(ws)["message"])
        first = int(seen[0])
        assert seen == [str(n) for n in range(first, 300)]


def test_a_flood_is_refused_in_words_and_the_sender_stays(connect, room):
    ada, bob = connect(), connect()
    for n in range(chat.RATE_BURST + 5):
        say(ada, str(n))
    replies = [receive(ada) for _ in range(chat.RATE_BURST + 5)]
    assert [r.get("message") for r in replies[:chat.RATE_BURST]] == [
        str(n) for n in range(chat.RATE_BURST)]
    assert all("too fast" in r["error"] for r in replies[chat.RATE_BURST:])
    time.sleep(1 / chat.RATE_PER_SECOND)  # one more message's worth of time
    say(ada, "later")
    assert receive(ada)["message"] == "later"
    assert len(room.clients) == 2


def raw_handshake(server, origin=None, receive_buffer=None, path="/ws", extra=""):
    """A client that does the handshake and nothing more: returns the socket and the
    server's status line and headers. `extra` is more header lines, each with its CRLF."""
    host, port = server.split(":")
    s = socket.socket()
    if receive_buffer:  # before connecting, or the kernel keeps its default window
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    s.settimeout(TIMEOUT)
    s.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n")
    if origin:
        request += f"Origin: {origin}\r\n"
    s.sendall((request + extra + "\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = s.recv(1)  # one byte at a time: what follows is the chat's frames
        if not chunk:
            break
        response += chunk
    return s, response.decode()


def send_frame(s, payload, opcode=0x1):
    """Send one frame, masked as a client's must be."""
    if len(payload) < 126:
        head = bytes([0x80 | opcode, 0x80 | len(payload)])
    elif len(payload) < 1 << 16:  # a 16-bit length
        head = bytes([0x80 | opcode, 0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:  # a 64-bit length
        head = bytes([0x80 | opcode, 0x80 | 127]) + len(payload).to_bytes(8, "big")
    mask = os.urandom(4)
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def read_to_the_end(s):
    """Read until the server closes the socket: the frames it sent, and any bytes after
    the first close frame."""
    data = b""
    while chunk := s.recv(65536):  # a timeout here fails the test
        data += chunk
    frames = []
    while data and (not frames or frames[-1][0] != 0x8):
        length, start = data[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
        frames.append((data[0] & 0x0F, data[start:start + length]))
        data = data[start + length:]
    return frames, data


def close_code(frame):
    opcode, payload = frame
    assert opcode == 0x8, "the last frame is not a close frame"
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


@pytest.mark.parametrize("origin, status", [
    ("http://evil.example", "403"),
    ("http://127.0.0.1:1", "403"),  # same host, another port: another site
    ("null", "403"),
    (None, "101"),  # not a browser: Origin is the browser's word, nothing else's
    ("same", "101"),
])
def test_another_sites_page_is_refused(server, origin, status):
    s, response = raw_handshake(server, f"http://{server}" if origin == "same" else origin)
    assert response.split()[1] == status
    s.close()


def test_after_a_clients_close_nothing_follows_the_close_frame(server):
    s, _ = raw_handshake(server)
    send_frame(s, (1000).to_bytes(2, "big"), opcode=0x8)
    started = time.monotonic()
    frames, after = read_to_the_end(s)
    assert close_code(frames[-1])[0] == 1000
    assert after == b""  # no "HTTP/1.1 200 OK" from Werkzeug
    assert time.monotonic() - started < 1
    s.close()


def test_a_frame_over_the_limit_closes_with_1009_and_nothing_after(server):
    s, _ = raw_handshake(server)
    send_frame(s, b"x" * (chat.MAX_FRAME_CHARS + 1))
    started = time.monotonic()
    frames, after = read_to_the_end(s)
    assert close_code(frames[-1])[0] == 1009
    assert after == b""
    assert time.monotonic() - started < 1
    s.close()


def test_a_peer_that_vanished_is_found_by_pings(server, monkeypatch, room):
    assert chat.SOCKET_OPTIONS["ping_interval"] == chat.PING_INTERVAL
    monkeypatch.setitem(chat.SOCKET_OPTIONS, "ping_interval", 0.2)  # not to wait 25 s
    s, _ = raw_handshake(server)  # it never answers a ping
    frames, after = read_to_the_end(s)
    assert [opcode for opcode, _ in frames] == [0x9, 0x8]  # a ping, then goodbye
    assert close_code(frames[-1]) == (1008, "Ping/Pong timeout")
    assert after == b""
    wait_until(lambda: not room.clients)
    s.close()


def test_a_tab_that_stops_reading_delays_no_one_and_is_cut_off(connect, server, monkeypatch,
                                                               room):
    monkeypatch.setattr(room.settings, "RATE_BURST", 10_000)
    stuck, _ = raw_handshake(server, receive_buffer=4096)  # it never reads
    wait_until(lambda: len(room.clients) == 1)
    ada, bob = connect(), connect()
    sent = 0
    while len(room.clients) == 3:  # until the stuck tab is cut off
        assert sent < 10_000, "the stuck tab was never cut off"
        say(ada, f"{sent} " + "x" * 900)
        sent += 1
        assert receive(bob)["message"].startswith(f"{sent - 1} ")  # at once, every time
    for n in range(sent, sent + 5):
        say(ada, str(n))
        assert receive(bob)["message"] == str(n)
    assert stuck.recv(1 << 20, socket.MSG_PEEK)  # it was sent what it could hold...
    stuck.settimeout(TIMEOUT)
    while stuck.recv(1 << 20):  # ...and then its socket was closed
        pass
    stuck.close()


def test_joins_and_leaves_are_logged_with_the_count(connect, caplog, room):
    caplog.set_level("INFO")
    ada = connect()
    bob = connect()
    bob.close()
    wait_until(lambda: len(room.clients) == 1)
    ada.close()

    def logged():  # each line is logged just after the lock is let go: in either order
        return sorted(r.getMessage() for r in caplog.records if r.name == "app")

    wait_until(lambda: len(logged()) == 4)
    assert logged() == [
        "127.0.0.1 joined, 1 connected", "127.0.0.1 joined, 2 connected",
        "127.0.0.1 left, 0 connected", "127.0.0.1 left, 1 connected"]


def test_it_mounts_at_any_prefix_and_leaves_the_hosts_socket_options_alone():
    host = Flask(__name__)
    host.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": 5}
    host.register_blueprint(chat.bp, url_prefix="/chat")
    assert host.config["SOCK_SERVER_OPTIONS"] == {"ping_interval": 5}  # the host's own
    rules = {rule.rule for rule in host.url_map.iter_rules()}
    assert {"/chat/", "/chat/ws"} <= rules


def test_the_page_and_its_socket_work_under_a_prefix(monkeypatch):
    host = Flask(__name__)
    host.register_blueprint(chat.bp, url_prefix="/chat")
    httpd = make_server("127.0.0.1", 0, host, threaded=True)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    server = f"127.0.0.1:{httpd.server_port}"
    try:
        with urllib.request.urlopen(f"http://{server}/chat/", timeout=TIMEOUT) as response:
            assert response.status == 200
        ws = Client.connect(f"ws://{server}/chat/ws")
        say(ws, "under a prefix")
        assert receive(ws)["message"] == "under a prefix"
        ws.close()
        wait_until(lambda: not chat.room_of(host).clients)
    finally:
        httpd.shutdown()


def test_compression_is_declined(server):
    s, head = raw_handshake(server, extra="Sec-WebSocket-Extensions: permessage-deflate\r\n")
    s.close()
    assert " 101 " in head and "sec-websocket-extensions" not in head.lower()


def test_a_tab_that_takes_nothing_is_cut_off_after_the_send_timeout(connect, server,
                                                                     monkeypatch, room):
    """Even in a room too quiet to fill its outbox: its writer waits SEND_TIMEOUT, no more."""
    monkeypatch.setattr(chat, "SEND_TIMEOUT", 1)
    monkeypatch.setattr(room.settings, "RATE_BURST", 10_000)
    stuck, _ = raw_handshake(server, receive_buffer=4096)  # it never reads
    wait_until(lambda: len(room.clients) == 1)
    ada = connect()
    for n in range(300):  # more than the buffers on the way hold, fewer than OUTBOX_SIZE
        say(ada, f"{n} " + "x" * 900)
    for n in range(300):
        receive(ada)
    wait_until(lambda: len(room.clients) == 1)  # the stuck tab is gone: Ada is left
    stuck.close()


def test_a_tab_that_takes_nothing_for_a_while_gets_whole_frames(connect, server,
                                                               monkeypatch, room):
    """Its writer's send gives up after SEND_TIMEOUT, part-way through a frame: from then
    on the tab gets either the rest of that frame, or nothing more. Never another frame
    after a part: the tab reads again later, and every frame it gets is whole."""
    monkeypatch.setattr(chat, "SEND_TIMEOUT", 1)
    monkeypatch.setattr(room.settings, "RATE_BURST", 10_000)
    slow, _ = raw_handshake(server, receive_buffer=4096)  # it reads nothing for now
    wait_until(lambda: len(room.clients) == 1)
    ada = connect()
    for n in range(300):  # more than the buffers on the way hold
        say(ada, f"{n} " + "x" * 900)
    for n in range(300):
        receive(ada)
    time.sleep(chat.SEND_TIMEOUT * 1.25)  # the send to it gives up meanwhile
    parser = wsproto.frame_protocol.FrameProtocol(client=True, extensions=[])
    slow.settimeout(1)
    numbers, text = [], ""
    with contextlib.suppress(socket.timeout):  # until nothing more comes
        while data := slow.recv(65536):  # a corrupt frame raises ParseFailed
            parser.receive_bytes(data)
            for frame in parser.received_frames():  # the parts of a frame, as they come
                text += frame.payload
                if frame.message_finished:
                    numbers.append(int(json.loads(text)["message"].split()[0]))
                    text = ""
    assert numbers and numbers == list(range(len(numbers))), numbers[-5:]
    slow.close()


def test_a_bad_handshake_gets_a_400_in_words(server):
    s = socket.create_connection(server.split(":"), timeout=TIMEOUT)
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\nSec-WebSocket-Key: not sixteen bytes\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    response = b""
    while chunk := s.recv(4096):  # the chat closes the connection after its answer
        response += chunk
    s.close()
    assert response.startswith(b"HTTP/1.1 400") and b"Sec-WebSocket-Key must be" in response


def test_one_address_may_not_fill_the_room(server, connect):
    for _ in range(limits.CONNECTIONS_PER_ADDRESS):
        connect()
    # Refused in words a page can read: accepted, then closed with 1013 and the reason.
    one_more = Client.connect(f"ws://{server}/ws")
    with pytest.raises(simple_websocket.ConnectionClosed) as closed:
        one_more.receive(timeout=TIMEOUT)
    assert closed.value.reason == 1013  # Try Again Later
    assert "Too many connections from your address" in closed.value.message


def test_the_handler_hears_a_close_at_once(connect, room):
    """Too big a frame: the library closes the connection with 1009, and the handler
    hears it at once, without waking up now and then to ask."""
    tabs = [connect() for _ in range(5)]
    for ws in tabs:
        ws.send("x" * (chat.MAX_FRAME_CHARS + 1))
    wait_until(lambda: not room.clients)


def test_an_address_is_limited_whatever_its_connections(connect, monkeypatch):
    monkeypatch.setattr(limits, "MESSAGES_BURST", 30)
    monkeypatch.setattr(limits, "MESSAGES_PER_SECOND", 0.001)
    monkeypatch.setattr(limits, "SHARE_BURST", 1)
    ada, *others = [connect() for _ in range(4)]
    for ws in others:  # 10 each: every connection is well within its own RATE_BURST
        for n in range(10):
            say(ws, f"m{n}")
    for n in range(30):
        receive(ada)
    # The address has spent its 30; ada still has her own share of it (1 here)...
    say(ada, "my share")
    assert receive(ada)["message"] == "my share"
    say(ada, "more than my share")  # ...and no more
    assert "too fast" in receive(ada)["error"]


def test_text_that_reverses_itself_is_refused_in_words(connect):
    ada = connect()
    say(ada, "hello", name="\u202eevil")
    assert "reverses text" in receive(ada)["error"]


def test_text_goes_out_as_it_came_not_in_escapes(connect, room):
    ada = connect()
    say(ada, "café ☕")
    assert receive(ada)["message"] == "café ☕"
    assert "café ☕".encode() in room.history[-1]  # UTF-8: a third of the bytes of \u escapes


def test_the_page_comes_with_its_content_security_policy(server):
    with urllib.request.urlopen(f"http://{server}/", timeout=TIMEOUT) as response:
        policy = response.headers["Content-Security-Policy"]
        body = response.read().decode()
    assert "default-src 'none'" in policy and "prefers-color-scheme: dark" in body


def test_a_message_that_waited_too_long_to_be_handled_is_refused(connect, monkeypatch):
    """Handlers held up (by the GIL, under overload) must not broadcast what waited: the
    room is busy, and the sender is told so, in its turn."""
    ada, bob = connect(), connect()
    monkeypatch.setattr(chat, "BUSY_WAIT", 0.5)
    original, calls = chat.broadcast, []

    def slow_once(room, message):
        calls.append(message)
        if len(calls) == 1:
            time.sleep(1)
        original(room, message)

    monkeypatch.setattr(chat, "broadcast", slow_once)
    for text in ("first", "second", "third"):
        say(ada, text)
    assert receive(bob)["message"] == "first"
    assert bob.receive(timeout=0.3) is None  # the others were refused, not sent
    replies = [receive(ada) for _ in range(3)]
    assert replies[0]["message"] == "first"
    assert [r.get("error") for r in replies[1:]] == [
        "The room is busy; wait a moment, then send that again."] * 2
    say(ada, "later")
    assert receive(bob)["message"] == "later"


def test_one_thread_sends_to_the_room(connect, room):
    """The handlers hand frames to the room's sender, which started with the first."""
    ada, bob = connect(), connect()
    say(ada, "hello")
    assert receive(bob)["message"] == "hello"
    assert room.sender.is_alive() and not room.to_send
