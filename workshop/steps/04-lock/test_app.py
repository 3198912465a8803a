"""The tests of step 04 of the workshop: what the chat does at this point.

Run `pytest` in the folder that holds app.py. Each test starts the chat on a free port of
127.0.0.1 and talks to it as the page does. A later step's tests are these plus its own.
"""
import json
import threading
import time
import urllib.request

import pytest
import simple_websocket
from werkzeug.serving import make_server

import app as chat

CHAT_APP = chat.app
TIMEOUT = 5  # seconds any single wait may take before a test fails


@pytest.fixture
def server():
    """Serve the chat with Werkzeug's threaded server, as `flask run` does."""
    httpd = make_server("127.0.0.1", 0, CHAT_APP, threaded=True)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    yield f"127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    wait_until(lambda: not chat.clients)  # every test's clients leave the room


@pytest.fixture
def connect(server):
    """connect() opens a client to the chat and waits until the chat has it; every one
    is closed when the test ends."""
    opened = []

    def connect_one():
        before = len(chat.clients)
        ws = simple_websocket.Client.connect(f"ws://{server}/ws")
        opened.append(ws)
        wait_until(lambda: len(chat.clients) > before)
        return ws

    yield connect_one
    for ws in opened:
        close(ws)


def close(ws):
    try:
        ws.close()
    except simple_websocket.ConnectionClosed:
        pass  # the chat closed it already


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
    assert frame is not None, "no frame arrived in time"
    return json.loads(frame)


def page(server, headers=None):
    request = urllib.request.Request(f"http://{server}/", headers=headers or {})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.read().decode()


def test_the_page_is_served(server):
    assert 'id="message"' in page(server)


def test_everyone_gets_every_message(connect):
    ada, bob = connect(), connect()
    say(ada, "hello")
    assert receive(ada) == {"name": "Ada", "message": "hello"}
    assert receive(bob) == {"name": "Ada", "message": "hello"}


def test_a_closed_connection_leaves_the_room(connect):
    ada, bob = connect(), connect()
    ada.close()
    wait_until(lambda: len(chat.clients) == 1)
    say(bob, "still here")  # and the room goes on without it
    assert receive(bob)["message"] == "still here"
