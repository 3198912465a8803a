"""Which IPv6 addresses the per-address limits count as one: CHAT_IPV6_PREFIX (issue 31).

A home or a phone is given a /64, so by default two addresses in one /64 are one address,
and two in different /64s are two, even in one /48. Set to 48, the whole /48 is one.
"""
import os
import pathlib
import subprocess
import sys

import pytest

from hardened.safeguards import limits

HERE = pathlib.Path(__file__).parent.parent  # the project
DEFAULT = os.environ.get("CHAT_IPV6_PREFIX", "").strip() in ("", "64")


@pytest.fixture
def by_default():
    if not DEFAULT:
        pytest.skip("CHAT_IPV6_PREFIX is set in this environment")


def test_the_default_prefix_is_64(by_default):
    assert limits.IPV6_PREFIX == 64


def test_two_addresses_in_one_slash_64_count_as_one_by_default(by_default):
    assert limits.key("2001:db8:1:2::1") == limits.key("2001:db8:1:2:ffff:ffff:ffff:fffe")


def test_two_slash_64s_of_one_slash_48_count_as_two_by_default(by_default):
    assert limits.key("2001:db8:1:2::1") != limits.key("2001:db8:1:3::1")


def test_two_slash_64s_of_one_slash_48_count_as_one_with_the_prefix_48(monkeypatch):
    monkeypatch.setattr(limits, "IPV6_PREFIX", 48)
    assert limits.key("2001:db8:1:2::1") == limits.key("2001:db8:1:ffff::1") == "2001:db8:1::/48"
    assert limits.key("2001:db8:2::1") != limits.key("2001:db8:1::1")  # another /48
    assert limits.key("203.0.113.7") == "203.0.113.7"  # IPv4 is untouched


def test_the_slash_48_shares_one_connection_cap(monkeypatch):
    """With the prefix 48, connections from two /64s of one /48 fill one cap."""
    monkeypatch.setattr(limits, "IPV6_PREFIX", 48)
    monkeypatch.setattr(limits, "CONNECTIONS_PER_ADDRESS", 1)
    monkeypatch.setattr(limits, "addresses", {})
    first = limits.admit("2001:db8:1:2::1")
    try:
        assert first is None
        assert limits.admit("2001:db8:1:3::1") is not None  # refused: the /48 is full
    finally:
        limits.release("2001:db8:1:2::1")


@pytest.mark.parametrize("value", ["16", "129", "slash-48"])
def test_a_prefix_out_of_bounds_stops_the_chat_with_a_sentence(value):
    env = {**os.environ, "CHAT_IPV6_PREFIX": value}
    result = subprocess.run([sys.executable, "-c", "import hardened"], cwd=HERE, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].endswith(
        f"CHAT_IPV6_PREFIX must be a whole number from 32 to 128, not {value!r}.")
