"""Issue 31's attacks, each from one address beside a class of 20 on twenty others
(bench/attacks.py, which prints the same figures, longer): the class's messages are
hardly ever refused and reach everyone within 1.5 s, the room is itself again 5 s after
the attack, and the attacker gets no more than its address's allowance.

One server and one class for the four attacks, busy last (the server still reads what
it sent for a while after it left): about 55 s in all, with FULL_TESTS=1.
The figures in the docstrings are the chat's before the fixes (commit c10f613).
"""
import pathlib
import sys

import pytest

pytest.importorskip("websockets")  # the class's clients: bench/requirements-bench.txt
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "bench"))
import attacks  # noqa: E402

SECONDS = 6  # each attack's length: several times any burst an address is allowed
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def room():
    if not all(has_alias(address) for address in
               [*attacks.ATTACKERS.values(), *attacks.CLASS_ADDRESSES]):
        pytest.skip("this system has no loopback aliases 127.0.0.2 and on")
    with attacks.Server(attacks.PROJECT + "/hardened") as server, \
            attacks.Classroom(server.port) as classroom:
        yield server, classroom
    assert server.errors == 0, "errors in the server's log"


def has_alias(address):
    import socket
    with socket.socket() as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True


def assert_within_bounds(figures):
    missed = [f"{name}: {value}" for name, value, met in attacks.bounds(figures) if not met]
    assert not missed, f"{missed}; all figures: {figures}"


def test_churn_gets_no_more_than_its_address_allows(room):
    """8 threads connect, send 3 messages and leave, again and again: 770 of its
    messages a second reached the room (the limit is 40), as every new connection
    brought a fresh share of the address's allowance."""
    assert_within_bounds(attacks.attack("churn", *room, SECONDS))


def test_churn_of_big_messages_is_read_at_the_address_pace(room):
    """16 threads connect, send 6 KB and leave: 2.3 MB/s was read from the address
    (the limit is 64 KiB/s)."""
    assert_within_bounds(attacks.attack("churn-bytes", *room, SECONDS))


def test_refused_connections_are_not_read_without_end(room):
    """64 idle connections hold the address's places; 16 threads connect, are refused,
    and send 4 MiB each: 67 MB/s was read from them, and 72% of the class was refused
    "busy"."""
    assert_within_bounds(attacks.attack("refused", *room, SECONDS))


# Not yet: with each address's turn at the room's sender (0cd8073) the class is hardly
# refused, but its messages wait seconds for the GIL, behind the attacker's 128 threads
# parsing and answering ~27,000 empty frames a second (its byte allowance buys 11,000
# six-byte frames a second, and its start ~130,000): p99 2.4 to 3.8 s. Bounded as if
# each frame cost 48 bytes, the class's p99 was 0.06 s (docs/performance.md).
@pytest.mark.xfail(reason="an address's empty frames still cost the room seconds: "
                          "docs/performance.md, Attacks from one address")
def test_a_busy_address_within_its_limits_leaves_the_room_its_turn(room):
    """64 connections send empty frames flat out: 35% of the class was refused "busy",
    p99 2.4 s, and the server stayed busy after the attacker left."""
    assert_within_bounds(attacks.attack("busy", *room, SECONDS))
