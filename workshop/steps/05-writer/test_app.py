"""The tests of step 05 of the workshop: what the chat does at this point. Each starts
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
    return chat.app


@pytest.fixture
def server(app):
    """Serve the app with Werkzeug's threaded server, as `flask run` does."""
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


def test_every_client_receives_each_message(connect):
    ada, bob = connect(), connect()
    say(ada, "hello")
    assert receive(ada) == receive(bob) == {"name": "Ada", "message": "hello"}


def test_a_client_that_left_is_not_sent_to(connect):
    ada, bob, cy = connect(), connect(), connect()
    bob.close()
    wait_until(lambda: len(chat.clients) == 2)
    say(ada, "still here?")
    assert receive(ada) == receive(cy) == {"name": "Ada", "message": "still here?"}


def test_messages_sent_at_once_reach_everyone_in_one_order(connect):
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


def test_a_tab_that_stops_reading_delays_no_one(connect, server, monkeypatch):
    stuck, _ = raw_handshake(server, receive_buffer=4096)  # it never reads
    wait_until(lambda: len(chat.clients) == 1)
    ada, bob = connect(), connect()
    for n in range(4000):  # more than every buffer on the way to the stuck tab holds
        say(ada, f"{n} " + "x" * 900)
        assert receive(bob)["message"].startswith(f"{n} ")  # at once, every time
    stuck.close()
