"""The tests of step 14 of the workshop: what the chat does at this point. Each starts
app.py on a free port of 127.0.0.1, as `flask run` would, and talks to it as the page does,
or as a client that misbehaves on purpose.

Run `pytest` in the folder that holds app.py: this file needs nothing else.
"""
import base64
import json
import os
import socket
import threading
import time
import urllib.request

import pytest
import simple_websocket
from flask import Flask
from werkzeug.serving import make_server

import app as chat

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


@pytest.fixture
def app():
    return chat.create_app()


@pytest.fixture
def server(app):
    """Serve the app with Werkzeug's threaded server, as `flask run` does."""
    chat.history.clear()
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    yield f"127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    wait_until(lambda: not chat.clients)  # every test's clients have left the room


@pytest.fixture
def connect(server):
    """connect() opens a client and waits until the chat has it; all are closed after."""
    opened = []

    def connect_one(path="/ws"):
        before = len(chat.clients)
        ws = Client.connect(f"ws://{server}{path}")
        opened.append(ws)
        wait_until(lambda: len(chat.clients) > before)
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


def test_a_client_that_left_is_not_sent_to(connect):
    ada, bob, cy = connect(), connect(), connect()
    bob.close()
    wait_until(lambda: len(chat.clients) == 2)
    say(ada, "still here?")
    assert receive(ada) == receive(cy) == {"name": "Ada", "message": "still here?"}


def test_messages_sent_at_once_reach_everyone_in_one_order(connect, monkeypatch):
    monkeypatch.setattr(chat, "RATE_BURST", 1000)
    ada, bob = connect(), connect()
    senders = [connect() for _ in range(4)]
    threads = [DaemonThread(target=lambda ws=ws, n=n: [say(ws, f"{n}.{m}") for m in range(50)])
               for n, ws in enumerate(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    seen = [[receive(ws)["message"] for _ in range(200)] for ws in (ada, bob)]
    assert seen[0] == seen[1]
    for n in range(4):  # and each sender's in the order it sent them
        assert [m for m in seen[0] if m.startswith(f"{n}.")] == [f"{n}.{m}" for m in range(50)]


@pytest.mark.parametrize("frame, words", [
    (b"binary", "Send text"),
    ("hello", "not valid JSON"),
    ("[" * 10_000, "not valid JSON"),  # too deep for Python's parser
    ("[1, 2]", "not a JSON object"),
    ('{"message": 5}', '"message" must be a string'),
    ('{"name": 5, "message": "hi"}', '"name" must be a string'),
    ('{"message": "   "}', "yours has 0"),
    (json.dumps({"message": "x" * (chat.MAX_MESSAGE_CHARS + 1)}), "yours has 1,001"),
    (json.dumps({"name": "x" * (chat.MAX_NAME_CHARS + 1), "message": "hi"}), "yours has 33"),
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


def test_a_lone_surrogate_reaches_everyone_escaped(connect):
    ada, bob = connect(), connect()
    ada.send('{"name": "Ada", "message": "\\ud800 broken"}')
    assert receive(bob)["message"] == "\ud800 broken"


def test_a_newcomer_gets_the_last_ten_oldest_first(connect):
    ada = connect()
    for n in range(chat.HISTORY_SIZE + 3):
        say(ada, f"message {n}")
    for n in range(chat.HISTORY_SIZE + 3):
        receive(ada)
    bob = connect()
    assert [receive(bob)["message"] for _ in range(chat.HISTORY_SIZE)] == [
        f"message {n}" for n in range(3, chat.HISTORY_SIZE + 3)]


def test_newcomers_during_a_burst_get_no_gap_and_no_repeat(connect, monkeypatch):
    monkeypatch.setattr(chat, "RATE_BURST", 1000)
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


def test_a_flood_is_refused_in_words_and_the_sender_stays(connect):
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
    assert len(chat.clients) == 2


def raw_handshake(server, origin=None, receive_buffer=None, path="/ws"):
    """A client that does the handshake and nothing more: returns the socket and the
    server's status line and headers."""
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
    s.sendall((request + "\r\n").encode())
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
    else:  # up to 64 KiB: a 16-bit length
        head = bytes([0x80 | opcode, 0x80 | 126]) + len(payload).to_bytes(2, "big")
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


def test_a_frame_over_the_limit_closes_with_1009_and_its_sender_leaves(server):
    s, _ = raw_handshake(server)
    wait_until(lambda: len(chat.clients) == 1)
    send_frame(s, b"x" * (chat.MAX_FRAME_BYTES + 1))
    frames, _ = read_to_the_end(s)  # (what comes after the close: see step 15)
    assert close_code(frames[-1])[0] == 1009  # too big
    wait_until(lambda: not chat.clients)  # its handler woke up and left
    s.close()


def test_a_peer_that_vanished_is_found_by_pings(app, server, monkeypatch):
    assert app.config["SOCK_SERVER_OPTIONS"]["ping_interval"] == chat.PING_INTERVAL
    # Not to wait 25 seconds; only for this test, as the app is the module's.
    monkeypatch.setitem(app.config["SOCK_SERVER_OPTIONS"], "ping_interval", 0.2)
    s, _ = raw_handshake(server)  # it never answers a ping
    frames, _ = read_to_the_end(s)  # (what comes after the close: see step 15)
    assert [opcode for opcode, _ in frames] == [0x9, 0x8]  # a ping, then goodbye
    assert close_code(frames[-1]) == (1008, "Ping/Pong timeout")
    wait_until(lambda: not chat.clients)
    s.close()


def test_a_tab_that_stops_reading_delays_no_one_and_is_cut_off(connect, server, monkeypatch):
    monkeypatch.setattr(chat, "RATE_BURST", 10_000)
    stuck, _ = raw_handshake(server, receive_buffer=4096)  # it never reads
    wait_until(lambda: len(chat.clients) == 1)
    ada, bob = connect(), connect()
    sent = 0
    while len(chat.clients) == 3:  # until the stuck tab is cut off
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


def test_joins_and_leaves_are_logged_with_the_count(connect, caplog):
    caplog.set_level("INFO")
    ada = connect()
    bob = connect()
    bob.close()
    wait_until(lambda: len(chat.clients) == 1)
    ada.close()

    def logged():  # each line is logged just after the lock is let go: in either order
        return sorted(r.getMessage() for r in caplog.records if r.name == "app")

    wait_until(lambda: len(logged()) == 4)
    assert logged() == [
        "127.0.0.1 joined, 1 connected", "127.0.0.1 joined, 2 connected",
        "127.0.0.1 left, 0 connected", "127.0.0.1 left, 1 connected"]


def test_the_page_shows_its_state_and_finds_its_socket_beside_it(server):
    with urllib.request.urlopen(f"http://{server}/", timeout=TIMEOUT) as response:
        page = response.read().decode()
    assert 'id="status"' in page and 'new URL("ws", location.href)' in page


def test_it_mounts_at_any_prefix_and_keeps_the_hosts_socket_options():
    host = Flask(__name__)
    host.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": 5}
    host.register_blueprint(chat.bp, url_prefix="/chat")
    assert host.config["SOCK_SERVER_OPTIONS"] == {
        "ping_interval": 5, "max_message_size": chat.MAX_FRAME_BYTES}
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
        wait_until(lambda: not chat.clients)
    finally:
        httpd.shutdown()
