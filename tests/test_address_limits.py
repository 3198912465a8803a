"""An address's allowances belong to it over time (issue 31): closing and opening again buys
no messages and no bytes, and an address opens websockets at a bounded rate.

The per-address limits are shrunk here so that each takes a few frames to reach;
tests/test_faults.py checks that a class behind one address still fits in the real ones.
"""
import pytest

from chat_helpers import (close, connect, raw_handshake, receive, say, server,  # noqa: F401
                          wait_until)
from hardened import chat
from hardened.safeguards import limits
from test_faults import frames_until_answered, refusal


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
        wait_until(lambda: not chat.clients)
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
        wait_until(lambda: not chat.clients)
    s, response = raw_handshake(server)
    assert response.split()[1] == "101"  # so that the page can read why
    assert refusal(s) == "You are connecting too often; wait a moment."
    s.close()

