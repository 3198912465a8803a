"""The hardened chat under gunicorn, started as docs/deploying.md says
(hardened/gunicorn.conf.py): it knows how many websockets gunicorn's threads can hold,
refuses newcomers beyond that in words, and keeps answering the page, the chat's and those
of an app it is mounted in. Not told how many threads gunicorn has, it refuses its
websockets in words rather than guess. Skipped where gunicorn is not installed (CI has it).
"""
import contextlib
import os
import pathlib
import socket
import struct
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest

from chat_helpers import TIMEOUT, raw_handshake
from hardened.safeguards import limits, websocket
from test_faults import good_headers, handshake_request, refusal

pytest.importorskip("gunicorn")

ROOT = pathlib.Path(__file__).parent.parent  # the project
THREADS = 20  # gunicorn's, set as deployers set it: CHAT_SERVER_THREADS
HOST_THREADS = 4  # a small host's `gunicorn -w 1 --threads 4`
FLOOD = 64 * 1024 * 1024  # bytes a refused client tries to send
HOST_APP = """
from flask import Flask
import hardened

app = Flask(__name__)
app.register_blueprint(hardened.bp, url_prefix="/chat")


@app.get("/about")
def about():
    return "The host's own page."
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gunicorn(tmp_path):
    """gunicorn -c hardened/gunicorn.conf.py, on a free port; yields (address, its log's path)."""
    with serving(tmp_path, ["-c", "hardened/gunicorn.conf.py"],
                 {"CHAT_SERVER_THREADS": str(THREADS)}) as served:
        yield served


@contextlib.contextmanager
def serving(tmp_path, arguments, settings):
    """gunicorn with these arguments and CHAT_ settings, from the project's folder, with
    tmp_path on its path (for a host's app), on a free port: (address, its log's path)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHAT_")}
    env.update(settings)
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", *arguments, "--pythonpath", str(tmp_path),
             "-b", f"127.0.0.1:{port}"], cwd=ROOT, env=env, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + TIMEOUT * 2
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        yield f"127.0.0.1:{port}", log
    finally:
        server.terminate()
        server.wait(TIMEOUT)


def test_beyond_what_its_threads_hold_newcomers_are_refused_and_the_page_served(gunicorn):
    address, log = gunicorn
    admitted, refusals = [], []
    try:
        for _ in range(THREADS):  # as many idle websockets as gunicorn has threads
            s, response = raw_handshake(address)
            assert response.split()[1] == "101"
            reason = refusal(s)
            (refusals if reason else admitted).append(reason or s)
        assert len(admitted) == THREADS - limits.SPARE_THREADS
        assert set(refusals) == {"The chat is full; try again later."}
        started = time.monotonic()
        with urllib.request.urlopen(f"http://{address}/", timeout=5) as page:
            assert page.status == 200
        assert time.monotonic() - started < 5
    finally:
        for s in admitted:
            s.close()
    assert "Traceback" not in log.read_text()


def test_a_client_that_leaves_right_after_its_handshake_costs_no_error(gunicorn):
    address, log = gunicorn
    host, port = address.split(":")
    for n in range(200):
        s = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        s.sendall(handshake_request(good_headers(address)))
        if n % 2:  # a reset, not a FIN
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    with urllib.request.urlopen(f"http://{address}/", timeout=5) as page:
        assert page.status == 200
    time.sleep(0.5)
    text = log.read_text()
    assert "Traceback" not in text and "Bad file descriptor" not in text, text[:6000]


# --- Mounted in a host's app ----------------------------------------------------------

@pytest.fixture
def host(tmp_path):
    """A host's app on its own module, host.py, with the chat mounted at /chat."""
    (tmp_path / "host.py").write_text(textwrap.dedent(HOST_APP))
    return tmp_path


@pytest.mark.parametrize("told_by", [
    "hook",      # the command docs/deploying.md gives: the chat's config, the host's app
    pytest.param("variable", marks=pytest.mark.slow),  # CHAT_SERVER_THREADS, no config
])
def test_mounted_the_chat_never_takes_the_threads_the_host_s_pages_need(host, told_by):
    """Before, the chat counted on 100 threads whatever gunicorn had: 4 tabs took all
    of a host's 4, and its /about waited for as long as they stayed."""
    if told_by == "hook":
        arguments, settings = ["-c", "hardened/gunicorn.conf.py", "--threads", "4"], {}
    else:
        arguments, settings = ["-w", "1", "--threads", "4"], {"CHAT_SERVER_THREADS": "4"}
    with serving(host, [*arguments, "host:app"], settings) as (address, log):
        tabs, refusals = [], []
        try:
            for _ in range(HOST_THREADS):
                s, response = raw_handshake(address, path="/chat/ws")
                assert response.split()[1] == "101"
                reason = refusal(s)
                (refusals if reason else tabs).append(reason or s)
            assert len(tabs) == limits.websockets_for(HOST_THREADS) == 2
            assert set(refusals) == {"The chat is full; try again later."}
            started = time.monotonic()
            with urllib.request.urlopen(f"http://{address}/about", timeout=5) as page:
                assert page.read() == b"The host's own page."
            assert time.monotonic() - started < 2
        finally:
            for s in tabs:
                s.close()
        assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("arguments, told", [
    (["-w", "1", "--threads", "4"], limits.THREADS_UNKNOWN),  # neither the hook nor the variable
    pytest.param(["-w", "1"], limits.ONE_AT_A_TIME, marks=pytest.mark.slow),  # the sync worker
])
def test_a_gunicorn_that_cannot_hold_the_chat_refuses_it_in_words(host, arguments, told):
    with serving(host, [*arguments, "host:app"], {}) as (address, log):
        for _ in range(2):
            s, response = raw_handshake(address, path="/chat/ws")
            assert response.split()[1] == "101"  # so that the page can read why
            assert refusal(s) == limits.NOT_SET_UP
            s.close()
        with urllib.request.urlopen(f"http://{address}/about", timeout=5) as page:
            assert page.status == 200
        time.sleep(0.2)  # the log is written a moment after the refusal
        assert log.read_text().count(told) == 1  # said once, in the server's log


# The host's app, counting what the server reads from each client's port (/read/<port>):
# socket reads do not show in /proc/<pid>/io.
COUNTING = """
import socket
import threading

counts, lock = {}, threading.Lock()


def counting(read):
    def counted(sock, *args):
        result = read(sock, *args)
        try:
            port = sock.getpeername()[1]
        except (OSError, IndexError, TypeError):
            return result  # not a TCP connection: one cut off, say
        with lock:
            counts[port] = counts.get(port, 0) + (
                result if isinstance(result, int) else len(result))
        return result
    return counted


socket.socket.recv = counting(socket.socket.recv)
socket.socket.recv_into = counting(socket.socket.recv_into)


@app.get("/read/<int:port>")
def read(port):
    return str(counts.get(port, 0))
"""


def test_a_refused_client_that_goes_on_sending_is_read_a_little_then_cut(host):
    """After the close that refuses it, the server reads a few KB at most, and cuts the
    connection: the client, sending on, is stopped by a reset. Before, the library's
    reader parsed what it sent until gunicorn closed the socket: 4 MiB of empty pings
    after each refusal, from 16 threads, made the server read megabytes a second."""
    (host / "host.py").write_text(textwrap.dedent(HOST_APP) + COUNTING)
    settings = {"CHAT_SERVER_THREADS": "4", "CHAT_CONNECTIONS_PER_ADDRESS": "1"}
    with serving(host, ["-w", "1", "--threads", "4", "host:app"], settings) as (address, _):
        held, _ = raw_handshake(address, path="/chat/ws")
        s, _ = raw_handshake(address, path="/chat/ws")
        sent, pings = 0, b"\x89\x80\0\0\0\0" * 10_000  # 60 KB of empty pings, masked
        with pytest.raises(OSError):  # reset (or broken pipe): cut off
            while sent < FLOOD:
                sent += s.send(pings)
        port = s.getsockname()[1]
        s.close()
        time.sleep(0.5)  # for the server to read what it would of what was sent
        with urllib.request.urlopen(f"http://{address}/read/{port}", timeout=5) as page:
            read = int(page.read())
        held.close()
        print(f"sent {sent:,} bytes, of which the server read {read:,}")
        assert read <= 1024 + websocket.LEFTOVER_AFTER_REFUSAL  # the handshake, and that
