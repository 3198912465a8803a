"""An address's allowances belong to it over time (issue 31): closing and opening again buys
no messages and no bytes, an address opens websockets at a bounded rate, and a refused
connection costs next to nothing, however much its client goes on sending.

The per-address limits are shrunk here so that each takes a few frames to reach;
tests/test_faults.py checks that a class behind one address still fits in the real ones.
"""
import socket
import threading

import pytest

from chat_helpers import (ROOM, TIMEOUT, close, connect, raw_handshake, receive, say,
                          server, wait_until)  # noqa: F401
from hardened.safeguards import limits, websocket
from test_faults import frame, frames_until_answered, refusal


@pytest.fixture(autouse=True)
def fresh_addresses():
    """Every test comes from 127.0.0.1: each starts afresh, and leaves no address with its
    shrunk limits to the tests after it."""
    limits.addresses.clear()
    yield
    wait_until(lambda: not any(a["connections"] for a in list(limits.addresses.values())))
    limits.addresses.clear()


class Connection:
    """Anything a connection's shares can be kept for (weakly, as for a websocket)."""


def test_a_new_share_starts_with_no_more_than_the_pool_holds():
    allowance = limits.SharedAllowance(10, 0.001, 3)
    first = Connection()
    assert allowance.take(first, 9, 0, connections=1) == 0  # within the pool
    second, third = Connection(), Connection()
    allowance.join(second, 0)
    assert allowance.take(second, 1, 0, connections=2) == 0  # the pool's last one
    # The pool is empty: the third's share is too, though it never sent anything.
    assert allowance.take(third, 1, 0, connections=3) > 0


def test_closing_and_opening_again_buys_no_messages(server, monkeypatch):
    """Before, each new connection came with a full share of its own: connect, 3
    messages, close, again, was 685 messages a second accepted from one address whose
    limit is 40."""
    monkeypatch.setattr(limits, "MESSAGES_BURST", 6)
    monkeypatch.setattr(limits, "MESSAGES_PER_SECOND", 0.001)
    monkeypatch.setattr(limits, "SHARE_BURST", 3)
    accepted = 0
    for round_ in range(6):
        ws = connect(server)
        for n in range(3):
            say(ws, f"{round_}.{n}")
        answers = frames_until_answered(ws, f"{round_}.", 3)
        accepted += sum("error" not in answer for answer in answers)
        close(ws)
        wait_until(lambda: not ROOM.clients)
    assert accepted == 6  # the address's pool, and not one more


def test_a_share_given_when_joining_is_kept_while_others_spend_the_pool(server, monkeypatch):
    """The other side of it: someone who joined while the pool was full keeps the share
    they were given, though the others spend the pool before they say anything."""
    monkeypatch.setattr(limits, "MESSAGES_BURST", 6)
    monkeypatch.setattr(limits, "MESSAGES_PER_SECOND", 0.001)
    monkeypatch.setattr(limits, "SHARE_BURST", 1)
    quiet, loud = connect(server), connect(server)
    for n in range(6):
        say(loud, f"loud {n}")
    assert [receive(loud)["message"] for _ in range(6)] == [f"loud {n}" for n in range(6)]
    say(quiet, "my turn")
    assert frames_until_answered(quiet, "my", 1) == ['{"name": "Ada", "message": "my turn"}']
    close(quiet)
    close(loud)


def test_an_address_opens_websockets_at_a_bounded_rate(server, monkeypatch):
    monkeypatch.setattr(limits, "CONNECTS_BURST", 3)
    monkeypatch.setattr(limits, "CONNECTS_PER_SECOND", 0.001)
    for _ in range(3):
        close(connect(server))
        wait_until(lambda: not ROOM.clients)
    s, response = raw_handshake(server)
    assert response.split()[1] == "101"  # so that the page can read why
    assert refusal(s) == "You are connecting too often; wait a moment."
    s.close()


# --- A refused connection costs next to nothing ----------------------------------------

REFUSED = 5                # connections refused, each of whose clients then sends...
FLOOD = 1024 * 1024        # ...1 MiB of empty pings, as fast as TCP takes them
BYTES_BURST = 10_000       # the address's allowance of bytes, shrunk
HANDSHAKE = 300            # bytes, more than a handshake's request


class ReadCounter:
    """Counts the bytes the server reads from the sockets it accepted on `port`."""

    def __init__(self, monkeypatch, port):
        self.port, self.total, self.lock = port, 0, threading.Lock()
        for name in ("recv", "recv_into"):
            monkeypatch.setattr(socket.socket, name, self.counting(getattr(socket.socket, name)))

    def counting(self, read):
        def counted(sock, *args):
            result = read(sock, *args)
            if self.is_servers(sock):
                with self.lock:
                    self.total += result if isinstance(result, int) else len(result)
            return result
        return counted

    def is_servers(self, sock):
        try:
            return sock.getsockname()[1] == self.port
        except (OSError, IndexError, TypeError):
            return False  # not a TCP socket: one cut off, say


def flood(s):
    try:
        s.sendall(frame(0x9) * (FLOOD // 6))
    except OSError:
        pass  # cut off: what it was meant to be


def test_a_refused_client_that_goes_on_sending_is_read_a_little_then_cut(server, monkeypatch):
    """Before, after the 1013 the library's reader parsed all that the client sent, and
    then the clean-up read up to 64 MB more: 16 threads doing this made the server read
    80 MB a second. Now, at most LEFTOVER_AFTER_REFUSAL bytes each, and no more than the
    address's allowance of bytes holds, then the connection is cut."""
    monkeypatch.setattr(limits, "CONNECTIONS_PER_ADDRESS", 1)
    monkeypatch.setattr(limits, "READ_BYTES_BURST", BYTES_BURST)
    monkeypatch.setattr(limits, "READ_BYTES_PER_SECOND", 1)
    held = connect(server)
    counter = ReadCounter(monkeypatch, int(server.split(":")[1]))
    for _ in range(REFUSED):
        s, response = raw_handshake(server)
        assert response.split()[1] == "101"
        sender = threading.Thread(target=flood, args=(s,), daemon=True)
        sender.start()
        assert "Too many connections" in refused_while_sending(s)
        sender.join(TIMEOUT)
        assert not sender.is_alive(), "never cut off"
        s.close()
    leftover = min(REFUSED * websocket.LEFTOVER_AFTER_REFUSAL, BYTES_BURST)
    assert counter.total <= REFUSED * HANDSHAKE + leftover
    close(held)


def refused_while_sending(s):
    """The reason of the close frame that comes first; what follows (a reset) is ignored."""
    s.settimeout(TIMEOUT)
    data = b""
    try:
        while len(data) < 4 or len(data) < 2 + data[1]:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    assert data[:1] == b"\x88", data[:40]
    assert int.from_bytes(data[2:4], "big") == websocket.TRY_AGAIN_LATER
    return data[4:2 + data[1]].decode()


def test_a_refused_browser_gets_the_reason_and_a_clean_close(server, monkeypatch):
    """What a browser does: it answers the close, and waits for the server to end the
    connection. It gets the whole reason, and an end without a reset."""
    monkeypatch.setattr(limits, "CONNECTIONS_PER_ADDRESS", 1)
    held = connect(server)
    s, _ = raw_handshake(server)
    reason = refusal_answered(s)
    assert reason.startswith("Too many connections")
    s.close()
    close(held)


def refusal_answered(s):
    head = s.recv(2)
    assert head[:1] == b"\x88"
    body = b""
    while len(body) < head[1]:
        body += s.recv(head[1] - len(body))
    s.sendall(frame(0x8, body[:2]))  # the browser's answer: the same code
    assert s.recv(4096) == b""  # then the end: no reset, nothing more
    return body[2:].decode()

