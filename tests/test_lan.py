"""The room opens the finished chat from other machines on the LAN (issue 30): served as
the tutorial says, `flask run --host 0.0.0.0` without `--debug`, from the project's folder,
a page from another machine connects and its messages go through, and another site's
page is refused.

"Another machine" is a loopback alias, 127.0.0.2: to the chat it is another address,
with its own Host and Origin, and no packet leaves this machine. Nothing here talks to a
private-range address. Linux answers on all of 127.0.0.0/8; where the system has no such
alias (macOS has only 127.0.0.1 unless told otherwise), the test is skipped.
"""
import base64
import json
import os
import pathlib
import socket
import struct
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
OTHER_MACHINE = "127.0.0.2"
TIMEOUT = 10  # seconds any one wait may take: flask's start, a handshake, a frame


def has_alias(address):
    with socket.socket() as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True


pytestmark = pytest.mark.skipif(not has_alias(OTHER_MACHINE),
                                reason=f"this system has no loopback alias {OTHER_MACHINE}")


def free_port():
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))  # as flask will: free on every address
        return s.getsockname()[1]


@pytest.fixture
def lan_chat(tmp_path):
    """`flask run --host 0.0.0.0 --port N` in the project's folder, as the room runs it;
    yields the port and a function that returns what flask has printed so far."""
    port = free_port()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith(("FLASK_", "WERKZEUG_"))}  # find app.py, debugger off
    env["PYTHONUNBUFFERED"] = "1"
    log = tmp_path / "flask.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "flask", "run", "--host", "0.0.0.0", "--port", str(port)],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert process.poll() is None, log.read_text(errors="replace")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "flask run did not start listening"
                time.sleep(0.05)
        yield port, lambda: log.read_text(errors="replace")
    finally:
        process.terminate()
        try:
            process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=TIMEOUT)


class Peer:
    """One browser's websocket, by hand: its socket, and what it has read but not used."""

    def __init__(self, s, leftover):
        self.sock, self.leftover = s, leftover

    def close(self):
        self.sock.close()


def handshake(address, port, origin):
    """Open /ws as a browser at `address` would, with `origin` as its page's; returns the
    connection and the status code."""
    # From the address too, as another machine's packets would come.
    s = socket.create_connection((address, port), timeout=TIMEOUT, source_address=(address, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: {address}:{port}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"Origin: {origin}\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = s.recv(4096)
        if not chunk:
            break
        response += chunk
    status = int(response.split(b" ", 2)[1])
    # Frames can come in the same read as the response: keep them.
    return Peer(s, response.partition(b"\r\n\r\n")[2]), status


def send_text(peer, text):
    """One masked text frame, as a browser sends it."""
    data, mask = text.encode(), os.urandom(4)
    header = bytes([0x81]) + (bytes([0x80 | len(data)]) if len(data) < 126
                              else bytes([0x80 | 126]) + struct.pack("!H", len(data)))
    peer.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def receive_text(peer):
    """The next text frame from the server (unmasked), skipping pings."""
    def read(n):
        while len(peer.leftover) < n:
            chunk = peer.sock.recv(4096)
            assert chunk, "the server closed the connection"
            peer.leftover += chunk
        data, peer.leftover = peer.leftover[:n], peer.leftover[n:]
        return data

    while True:
        first, second = read(2)
        length = second & 0x7F
        if length == 126:
            length = struct.unpack("!H", read(2))[0]
        elif length == 127:
            length = struct.unpack("!Q", read(8))[0]
        payload = read(length)
        if first & 0x0F == 0x1:
            return payload.decode()


def test_another_machine_on_the_lan_chats_and_a_foreign_page_is_refused(lan_chat):
    port, printed = lan_chat
    other = f"http://{OTHER_MACHINE}:{port}"
    # The page itself, as the other machine's browser asks for it.
    with socket.create_connection((OTHER_MACHINE, port), timeout=TIMEOUT,
                                  source_address=(OTHER_MACHINE, 0)) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: {OTHER_MACHINE}:{port}\r\n"
                  "Connection: close\r\n\r\n".encode())
        page = b""
        while chunk := s.recv(65536):
            page += chunk
    assert page.startswith(b"HTTP/1.1 200") and b"new WebSocket" in page

    teacher, status = handshake("127.0.0.1", port, f"http://127.0.0.1:{port}")
    assert status == 101
    guest, status = handshake(OTHER_MACHINE, port, other)
    assert status == 101
    try:
        message = {"name": "Bob", "message": "hello from the next table"}
        send_text(guest, json.dumps(message))
        assert json.loads(receive_text(guest)) == message
        assert json.loads(receive_text(teacher)) == message
    finally:
        teacher.close()
        guest.close()

    # Another site's page, open in the other machine's browser.
    refused, status = handshake(OTHER_MACHINE, port, "http://evil.example")
    refused.close()
    assert status == 403

    output = printed()
    assert "Running on all addresses (0.0.0.0)" in output
    assert "Debug mode: off" in output and "Debugger is active" not in output
    assert f"{OTHER_MACHINE} joined" in output  # the chat saw the other machine's address
