"""What the hardened chat's test files share: the chat served on a free loopback port (the
`server` fixture), and clients that talk to it as real ones do.

A test file imports what it uses from here, the `server` fixture included (importing a
fixture makes it that file's own).
"""
import base64
import json
import os
import socket
import threading
import time
import unittest.mock

import pytest
import simple_websocket
from werkzeug.serving import make_server

from hardened import chat
from hardened.safeguards import process

# The chat alone, as `flask --app hardened run` serves it; but importing a test module must
# change nothing in the process, so the tuning of create_app() waits for the first test
# that serves the chat (the server fixture).
with unittest.mock.patch.object(process, "tune_for_many_websockets"):
    CHAT_APP = chat.create_app()
ROOM = chat.room_of(CHAT_APP)  # its room: who is in it, and its history

TIMEOUT = 5  # seconds any single wait may take before the test fails


@pytest.fixture
def server(monkeypatch, caplog):
    """Serve the app with Werkzeug's threaded server, as `flask run` does."""
    process.tune_for_many_websockets()  # as create_app() does
    ROOM.history.clear()
    errors = []
    monkeypatch.setattr("threading.excepthook", errors.append)
    httpd = make_server("127.0.0.1", 0, CHAT_APP, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    wait_until(lambda: not ROOM.clients)  # every test's clients leave...
    # ...and no thread of the server died of an exception or logged an error.
    assert errors == []
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


def wait_until(condition, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the server")
        time.sleep(0.01)


class Client(simple_websocket.Client):
    """simple-websocket's client, which (in 1.1.0) leaves the frames that come in the same
    read as the handshake's response unparsed until more bytes arrive: on a loaded machine
    a newcomer's history never shows, and a close frame sent at once is reported as 1005
    (no status). This one parses them before it reads on."""

    def _thread(self):
        self.connected = self._handle_events()
        super()._thread()


def connect(server):
    """Connect, and wait until the server has registered us."""
    before = len(ROOM.clients)
    ws = Client.connect(f"ws://{server}/ws")
    wait_until(lambda: len(ROOM.clients) > before)
    return ws


def receive(ws):
    data = next_frame(ws, TIMEOUT)
    assert data is not None, "no frame arrived in time"
    return data


def assert_nothing_arrives(ws, wait=0.3):
    assert next_frame(ws, wait) is None


def next_frame(ws, timeout):
    """The next message or error frame, or None. Frames of other kinds (a join notice,
    an online count: an exercise may add them) are skipped: they break only their tests."""
    deadline = time.monotonic() + timeout
    while (frame := ws.receive(timeout=max(0, deadline - time.monotonic()))) is not None:
        data = json.loads(frame)
        if "message" in data or "error" in data:
            return data
    return None


def say(ws, message, name="Ada"):
    ws.send(json.dumps({"name": name, "message": message}))


def close(ws):
    try:
        ws.close()
    except simple_websocket.ConnectionClosed:
        pass  # the server closed it already


def send_numbered(server, sender, count, name):
    ws = Client.connect(f"ws://{server}/ws")
    for n in range(count):
        say(ws, f"{name} {n}", name=name)
        time.sleep(0.005)
    ws.close()


def receive_until(ws, last_message):
    received = []
    while not received or received[-1] != last_message:
        received.append(receive(ws)["message"])
    return received


def raw_handshake(server, origin=None, receive_buffer=None, extensions=None, key=None,
                  path="/ws", host_header=None, source=None):
    """A websocket client that does nothing more than the handshake, from the loopback
    address `source` if given (127.0.0.2: another machine, to the chat).

    Returns the socket and the server's response head (status line and headers).
    """
    host, port = server.split(":")
    s = socket.socket()
    if receive_buffer:  # before connecting, or the kernel keeps its default window
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    if source:
        s.bind((source, 0))
    s.settimeout(TIMEOUT)
    s.connect((host, int(port)))
    key = key or base64.b64encode(os.urandom(16)).decode()
    request = (f"GET {path} HTTP/1.1\r\nHost: {host_header or server}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n")
    if origin:
        request += f"Origin: {origin}\r\n"
    if extensions:
        request += f"Sec-WebSocket-Extensions: {extensions}\r\n"
    s.sendall((request + "\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = s.recv(1)
        if not chunk:
            break
        response += chunk
    return s, response.decode()


def numbered(n):
    """A message of 1,000 characters, about 6 KB once JSON escapes each \x01 as \\u0001."""
    return f"{n:03} " + "\x01" * 996
