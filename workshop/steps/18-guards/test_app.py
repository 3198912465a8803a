"""The tests of step 16 of the workshop: what the chat does at this point.

Run `pytest` in the folder that holds app.py. Each test starts the chat on a free port of
127.0.0.1 and talks to it as the page does. A later step's tests are these plus its own.
"""
import base64
import json
import os
import queue
import socket
import threading
import time
import urllib.request
from types import SimpleNamespace

import pytest
import simple_websocket
from werkzeug.serving import make_server
from wsproto.connection import ConnectionState  # comes with simple-websocket

import app as chat
from safeguards import frames, limits

CHAT_APP = chat.app
TIMEOUT = 5  # seconds any single wait may take before a test fails


@pytest.fixture(autouse=True)
def no_address_limits(monkeypatch):
    """Every test comes from 127.0.0.1: lift the limits shared by all the connections
    from one address, but where a test sets them."""
    limits.addresses.clear()
    monkeypatch.setattr(limits, "MESSAGES_BURST", 10**9)
    monkeypatch.setattr(limits, "READ_BYTES_BURST", 10**12)


@pytest.fixture
def server():
    """Serve the chat with Werkzeug's threaded server, as `flask run` does."""
    chat.history.clear()
    httpd = make_server("127.0.0.1", 0, CHAT_APP, threaded=True)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    yield f"127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    wait_until(lambda: not chat.clients)  # every test's clients leave the room


class Client(simple_websocket.Client):
    """simple-websocket's client. In 1.1.0 it leaves the frames that arrive in the same
    read as the handshake's response unread until more bytes come, so a newcomer could
    miss the history the chat sends at once. This one reads them first."""

    def _thread(self):
        self.connected = self._handle_events()
        super()._thread()


@pytest.fixture
def connect(server):
    """connect() opens a client to the chat and waits until the chat has it; every one
    is closed when the test ends."""
    opened = []

    def connect_one():
        before = len(chat.clients)
        ws = Client.connect(f"ws://{server}/ws")
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


def raw_handshake(server, headers=""):
    """A client that does nothing more than the handshake: its socket, and the head of
    the chat's response (status line and headers)."""
    s = socket.create_connection(server.split(":"), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
              f"Sec-WebSocket-Version: 13\r\n{headers}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        byte = s.recv(1)
        if not byte:
            break
        head += byte
    return s, head.decode()


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


def test_a_newcomer_gets_the_last_ten_messages(connect):
    ada = connect()
    for n in range(12):
        say(ada, f"m{n}")
    for n in range(12):
        receive(ada)
    bob = connect()
    assert [receive(bob)["message"] for _ in range(10)] == [f"m{n}" for n in range(2, 12)]


@pytest.mark.parametrize("frame, words", [
    ("hello", "not valid JSON"),
    ('["hello"]', "not a JSON object"),
    ('{"name": "Ada"}', '"message" must be a string'),
    (json.dumps({"message": "x" * 1001}), "must be 1 to 1000 characters"),
])
def test_bad_input_gets_an_error_for_the_sender_alone(connect, frame, words):
    ada, bob = connect(), connect()
    ada.send(frame)
    assert words in receive(ada)["error"]
    say(ada, "still here")  # bob got nothing before this, and ada is still connected
    assert receive(bob)["message"] == "still here"


def test_a_flood_is_refused(connect):
    ada = connect()
    for n in range(chat.RATE_BURST + 1):
        say(ada, f"m{n}")
    replies = [receive(ada) for _ in range(chat.RATE_BURST + 1)]
    assert [reply["message"] for reply in replies[:-1]] == [
        f"m{n}" for n in range(chat.RATE_BURST)]
    assert "too fast" in replies[-1]["error"]


def test_a_client_too_far_behind_is_hung_up_on(connect, monkeypatch):
    monkeypatch.setattr(chat, "OUTBOX_LIMIT", 0)  # every client is too far behind
    ada = connect()
    say(ada, "hello")
    wait_until(lambda: not chat.clients)


def test_the_chat_pings_every_client():
    assert CHAT_APP.config["SOCK_SERVER_OPTIONS"]["ping_interval"] == chat.PING_INTERVAL


def test_joins_and_leaves_are_logged_with_the_count(connect, caplog):
    caplog.set_level("INFO", logger=CHAT_APP.logger.name)
    ada = connect()
    ada.close()
    wait_until(lambda: len(caplog.records) >= 2)
    assert [r.getMessage() for r in caplog.records][:2] == [
        "127.0.0.1 joined, 1 connected", "127.0.0.1 left, 0 connected"]


def test_other_sites_pages_are_refused(server):
    with pytest.raises(simple_websocket.ConnectionError) as refused:
        simple_websocket.Client.connect(f"ws://{server}/ws",
                                        headers={"Origin": "http://evil.example"})
    assert refused.value.status_code == 403


def test_the_page_shows_its_status(server):
    assert 'id="status"' in page(server)


def test_compression_is_declined(server):
    s, head = raw_handshake(server, "Sec-WebSocket-Extensions: permessage-deflate\r\n")
    s.close()
    assert " 101 " in head and "sec-websocket-extensions" not in head.lower()


def test_the_writer_sends_what_waits_in_one_write_of_whole_frames():
    """A websocket whose socket records what is written to it: the frames waiting in an
    outbox go out whole, in one write."""
    written = []
    sock = SimpleNamespace(sendall=written.append, shutdown=lambda how: None)
    ws = SimpleNamespace(sock=sock, ws=SimpleNamespace(state=ConnectionState.OPEN),
                         environ={})
    frames.share_socket(ws)
    outbox = queue.SimpleQueue()
    for text in ("one", "two", "three"):
        outbox.put(frames.text_frame(text))
    outbox.put(None)  # the end: the writer returns
    chat.write_frames(ws, outbox)
    assert written == [b"\x81\x03one\x81\x03two\x81\x05three"]


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
    with pytest.raises(simple_websocket.ConnectionError) as refused:
        simple_websocket.Client.connect(f"ws://{server}/ws")
    assert refused.value.status_code == 429  # Too Many Requests
