"""The hardened chat under gunicorn, started as docs/deploying.md says
(hardened/gunicorn.conf.py): it knows how many websockets gunicorn's threads can hold,
refuses newcomers beyond that in words, and keeps answering the page. Skipped where
gunicorn is not installed (CI has it).
"""
import os
import pathlib
import socket
import struct
import subprocess
import sys
import time
import urllib.request

import pytest

from chat_helpers import TIMEOUT, raw_handshake
from hardened.safeguards import limits
from test_faults import good_headers, handshake_request, refusal

pytest.importorskip("gunicorn")

ROOT = pathlib.Path(__file__).parent.parent  # the project
THREADS = 20  # gunicorn's, set as deployers set it: CHAT_SERVER_THREADS


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gunicorn(tmp_path):
    """gunicorn -c hardened/gunicorn.conf.py, on a free port; yields (address, its log's path)."""
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("CHAT_")
           and key not in ("REDIS_URL", "TRUSTED_PROXIES", "ALLOWED_HOSTS")}
    env["CHAT_SERVER_THREADS"] = str(THREADS)
    log = tmp_path / "gunicorn.log"
    with open(log, "w") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "hardened/gunicorn.conf.py",
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
