"""bench.py's clients must behave like browsers and judge every frame, and both chats must
start as the bench starts them; quick: one test starts the card's chat, for a second."""
import asyncio
import json

import pytest

pytest.importorskip("websockets")  # in requirements-bench.txt, not requirements.txt
import bench  # noqa: E402


def test_clients_never_push_back_and_offer_compression(monkeypatch):
    seen = {}

    class Connected:
        async def send(self, frame):
            pass

        def __aiter__(self):
            return self

        async def __anext__(self):
            raise StopAsyncIteration

    async def fake_connect(url, **options):
        seen.update(options)
        return Connected()

    monkeypatch.setattr(bench, "connect", fake_connect)
    no_wait = asyncio.sleep
    monkeypatch.setattr(bench.asyncio, "sleep", lambda seconds: no_wait(0))
    asyncio.run(bench.open_clients("hardened", 1, 1))
    assert seen["max_queue"] is None  # a page's onmessage queue has no limit
    assert seen["compression"] == "deflate"  # browsers offer permessage-deflate


@pytest.mark.parametrize("sizes", [bench.FULL, bench.QUICK])
def test_the_stuck_reader_gets_more_than_loopback_buffers_absorb(sizes):
    kernel_absorbs = 4 * 1024 * 1024  # net.ipv4.tcp_wmem's maximum, on Linux by default
    messages = sizes["stuck_healthy"] * 4 * sizes["stuck_seconds"]
    assert messages * 1000 > kernel_absorbs


def test_a_cut_frame_is_counted_as_corrupt():
    whole = json.dumps({"name": "a", "message": "1.0 hello"})
    assert bench.Plain.unpack(None, whole)["name"] == "a"
    for bad in (whole[:-5], "[1, 2]", "\x81\x7ehello"):
        with pytest.raises(ValueError):
            bench.Plain.unpack(None, bad)


def test_socketio_frames_are_judged_and_pings_answered():
    answered = []

    class Socket:
        async def send(self, frame):
            answered.append(frame)

    async def scenario():
        packet = bench.SocketIO.pack({"name": "a", "message": "1.0 hi"})
        assert bench.SocketIO.unpack(Socket(), packet) == {"name": "a", "message": "1.0 hi"}
        assert bench.SocketIO.unpack(Socket(), "2") is None
        assert bench.SocketIO.unpack(Socket(), '40{"sid":"x"}') is None
        for bad in (packet[:-3], '42["other", {}]', "hello"):
            with pytest.raises(ValueError):
                bench.SocketIO.unpack(Socket(), bad)
        await asyncio.sleep(0)  # the answer is sent from a task

    asyncio.run(scenario())
    assert answered == ["3"]


def test_the_stuck_readers_messages_fit_the_cards_limit(monkeypatch):
    """The card's chat refuses more than 1,000 characters: the 1 KB messages must fit."""
    monkeypatch.syspath_prepend(bench.PROJECT)
    import app
    stamp = f"{10**8 + 0.5:.6f} "  # time.perf_counter(), three years after boot
    assert len(stamp) + 4 * -(-bench.NOISE_BYTES // 3) <= app.MAX_MESSAGE_CHARS


def test_the_command_that_starts_the_hardened_chat_finds_the_modules_it_patches():
    """It imported `limits` from the top level, which moved into safeguards/ (now in
    hardened/): the bench could not start our chat at all, and no quick test noticed."""
    import subprocess
    import sys
    preamble = bench.HARDENED_RUN.split("from flask.cli")[0]
    result = subprocess.run([sys.executable, "-c", preamble], cwd=bench.PROJECT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr



def test_the_hardened_chat_is_started_with_every_address_wide_allowance_lifted():
    """Every bench client comes from 127.0.0.1: an allowance of one address's that the
    command leaves in place refuses most of them. The connection rate (CONNECTS_BURST),
    added later and not lifted, left 148 of 250 idle clients out of a quick run."""
    from hardened.safeguards import limits
    address_wide = [name for name in vars(limits) if name.endswith("_BURST")
                    and not name.startswith("SHARE_")]  # a connection's share: its own
    assert "CONNECTS_BURST" in address_wide
    for name in [*address_wide, "CONNECTIONS_PER_ADDRESS"]:
        assert f"limits.{name} = " in bench.HARDENED_RUN, f"bench.py leaves limits.{name}"


def test_the_cards_chat_starts_under_flask_run_and_relays():
    """`flask run` in the project's folder, as a learner types it, finds app.py."""
    from websockets.sync.client import connect

    with bench.running("card") as (port, pid):
        with connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10) as ws:
            ws.send(json.dumps({"name": "bench", "message": "hello"}))
            assert json.loads(ws.recv(timeout=10)) == {"name": "bench", "message": "hello"}
