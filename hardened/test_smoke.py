"""The chat's own smoke tests, which travel with this folder: in a project that copied
hardened/, `pip install -r hardened/requirements-test.txt`, then `pytest hardened` (or
`pytest myapp/hardened`, where the folder is inside the package myapp).

Each registers the chat on an app of its own, as a host does, serves it on a free port of
127.0.0.1, and talks to it as the page does. They use the package's public part only, the
Blueprint `bp`, and change nothing in the process: neither importing them nor running them
calls create_app(), whose tuning is for the chat alone (safeguards/process.py). The
chat's full tests stay in its own project, in tests/.
"""
import json
import sys
import threading
import urllib.request

import pytest
import simple_websocket
from flask import Flask
from werkzeug.serving import make_server

from . import bp

TIMEOUT = 5  # seconds any one wait may take before a test fails
PREFIX = "/chat"


class DaemonThread(threading.Thread):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs, daemon=True)


class Client(simple_websocket.Client):
    """simple-websocket's client (1.1), changed for tests in two ways. Its reader thread is
    a daemon: a client left open cannot keep pytest from exiting. And it parses the frames
    that came in the same read as the handshake's answer (a newcomer's history), which the
    library leaves unread until more bytes arrive; _thread and _handle_events are its own."""

    def __init__(self, url, **kwargs):
        super().__init__(url, thread_class=DaemonThread, **kwargs)

    def _thread(self):
        self.connected = self._handle_events()
        super()._thread()


@pytest.fixture
def host():
    """A host's app with a page of its own at / and the chat at /chat, served on a free
    port: yields its address, and connect(), which opens a websocket to the chat."""
    app = Flask("a_host")
    app.add_url_rule("/", "home", lambda: "<h1>My app</h1>")
    app.register_blueprint(bp, url_prefix=PREFIX)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    address = f"127.0.0.1:{httpd.server_port}"
    opened = []

    def connect():
        opened.append(Client(f"ws://{address}{PREFIX}/ws"))
        return opened[-1]

    yield address, connect
    for ws in opened:
        ws.close()
    httpd.shutdown()
    httpd.server_close()


def send(ws, name, message):
    ws.send(json.dumps({"name": name, "message": message}))


def receive(ws):
    frame = ws.receive(timeout=TIMEOUT)
    assert frame is not None, "no frame arrived in time"
    return json.loads(frame)


def receive_until(ws, wanted):
    """The frames ws receives up to and with `wanted`."""
    frames = [receive(ws)]
    while frames[-1] != wanted:
        frames.append(receive(ws))
    return frames


def get(url):
    with urllib.request.urlopen(url, timeout=TIMEOUT) as response:
        return response.headers, response.read().decode()


def test_the_page_is_at_the_prefix_and_the_hosts_home_stays_its_own(host):
    address, _ = host
    headers, page = get(f"http://{address}{PREFIX}/")
    assert 'id="message"' in page and "'sha256-" in headers["Content-Security-Policy"]
    headers, page = get(f"http://{address}/")
    assert page == "<h1>My app</h1>" and "Content-Security-Policy" not in headers


def test_a_message_reaches_everyone_in_the_room(host):
    _, connect = host
    ada, bob = connect(), connect()
    send(ada, "Ada", "hello")
    for ws in (ada, bob):  # Bob has it live, or in the history if he joined after it
        assert receive_until(ws, {"name": "Ada", "message": "hello"})


def test_a_newcomer_is_shown_the_last_messages(host):
    _, connect = host
    ada = connect()
    for message in ("one", "two"):
        send(ada, "Ada", message)
        receive_until(ada, {"name": "Ada", "message": message})
    cleo = connect()
    send(cleo, "Cleo", "hi")  # her own comes after the history
    assert receive_until(cleo, {"name": "Cleo", "message": "hi"})[-3:-1] == [
        {"name": "Ada", "message": "one"}, {"name": "Ada", "message": "two"}]


def test_bad_input_gets_an_answer_in_words_to_its_sender_alone(host):
    _, connect = host
    ada, bob = connect(), connect()
    send(ada, "Ada", "hi")
    for ws in (ada, bob):  # and whatever came before it
        receive_until(ws, {"name": "Ada", "message": "hi"})
    ada.send("hello")  # not JSON
    assert "not valid JSON" in receive(ada)["error"]
    send(ada, "Ada", "sorry")
    assert receive(bob) == {"name": "Ada", "message": "sorry"}  # and no error before it


def test_registering_and_chatting_leave_the_process_as_it_was(host):
    """The chat tunes the process only when it runs alone (create_app())."""
    _, connect = host
    before = sys.getswitchinterval()
    ada = connect()
    send(ada, "Ada", "still as it was?")
    receive_until(ada, {"name": "Ada", "message": "still as it was?"})
    assert sys.getswitchinterval() == before
