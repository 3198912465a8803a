"""The tests of step 01 of the workshop: what the chat does at this point. Each starts
app.py on a free port of 127.0.0.1, as `flask run` would, and talks to it as the page does,
or as a client that misbehaves on purpose.

Run `pytest` in the folder that holds app.py: this file needs nothing else.
"""
import threading

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


@pytest.fixture
def connect(server):
    """connect() opens a client; all are closed after the test."""
    opened = []

    def connect_one(path="/ws"):
        ws = Client.connect(f"ws://{server}{path}")
        opened.append(ws)
        return ws

    yield connect_one
    for ws in opened:
        try:
            ws.close()
        except simple_websocket.ConnectionClosed:
            pass  # closed already, by the test or by the chat


def test_the_socket_sends_back_what_it_gets(connect):
    ws = connect()
    ws.send("hello")
    assert ws.receive(timeout=TIMEOUT) == "hello"
