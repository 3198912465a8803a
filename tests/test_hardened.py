"""The hardened chat's own tests (hardened/): they start it on a free loopback port and
talk to it as clients do."""
import base64
import collections
import contextlib
import gc
import json
import os
import pathlib
import runpy
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from types import SimpleNamespace

import pytest
import simple_websocket
from flask import Flask, request
from werkzeug.serving import make_server
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import CloseConnection, Pong, TextMessage

from chat_helpers import (CHAT_APP, ROOM, TIMEOUT, Client,  # noqa: F401
                          assert_nothing_arrives, close, connect, numbered, raw_handshake,
                          receive, receive_until, say, send_numbered, server, wait_until)
from hardened import chat
from hardened.safeguards import frames, limits, settings, text_rules


@pytest.fixture(autouse=True)
def no_address_limits(monkeypatch):
    """Every test comes from 127.0.0.1 and some send hundreds of messages: lift the
    limits shared by all connections from one address (test_faults.py tests them)."""
    limits.addresses.clear()
    monkeypatch.setattr(limits, "MESSAGES_BURST", 10**9)
    monkeypatch.setattr(limits, "READ_BYTES_BURST", 10**12)


@pytest.fixture
def clients(server):
    """Two connected clients, closed at the end."""
    opened = [connect(server) for _ in range(2)]
    wait_until(lambda: len(ROOM.clients) == 2)
    yield opened
    for ws in opened:
        close(ws)


def test_index_serves_the_page(server):
    with urllib.request.urlopen(f"http://{server}/", timeout=TIMEOUT) as response:
        page = response.read().decode()
    for element in ('id="name"', 'id="message"', 'id="messages"', 'id="status"'):
        assert element in page


def test_every_client_receives_the_trimmed_message(clients):
    ada, bob = clients
    ada.send(json.dumps({"name": "  Ada ", "message": "  hello  "}))
    assert receive(ada) == {"name": "Ada", "message": "hello"}
    assert receive(bob) == {"name": "Ada", "message": "hello"}


@pytest.mark.parametrize("payload", [{}, {"name": ""}, {"name": "   "}, {"name": None}])
def test_a_missing_or_empty_name_becomes_anonymous(clients, payload):
    ada, bob = clients
    ada.send(json.dumps({**payload, "message": "hi"}))
    assert receive(bob) == {"name": "anonymous", "message": "hi"}


@pytest.mark.parametrize("frame, words", [
    ("hello", "not valid JSON"),
    ("[" * 50_000, "not valid JSON"),
    ('["hello"]', "not a JSON object"),
    ("null", "not a JSON object"),
    ('{"name": "Ada"}', '"message" must be a string'),
    ('{"message": 42}', '"message" must be a string'),
    ('{"message": "hi", "name": 7}', '"name" must be a string'),
    ('{"message": ""}', "Your message is empty."),
    ('{"message": "   \\n "}', "Your message is empty."),
    (json.dumps({"message": "x" * 1234}),
     "Your message is too long: 1,234 characters; the limit is 1,000."),
    (json.dumps({"message": "hi", "name": "n" * 33}),
     "Your name is too long: 33 characters; the limit is 32."),
    ('{"message": "\\ud800"}', "broken character"),
    (b"\x00\x01binary", "binary"),
    ("x" * chat.MAX_FRAME_CHARS, "not valid JSON"),
    # Text that would show as something it is not (text_rules.py).
    (json.dumps({"message": "hi", "name": "\u202eevil"}), "reverses text (U+202E)"),
    (json.dumps({"message": "hi", "name": "Ada\nBob: hi"}), "line breaks"),
    (json.dumps({"message": "hi", "name": "\u200b\u3164"}), "name has nothing visible"),
    (json.dumps({"message": "\u200b\u200c\u200d\u2060\ufeff"}), "nothing visible"),
    (json.dumps({"message": "\u0301\u0302\u0303"}), "nothing visible"),  # marks alone
    (json.dumps({"message": "\u3164 \u2800 \u00a0\u202e"}), "nothing visible"),
    (json.dumps({"message": "Z" + "\u0301" * 999}), "too many accents"),
    (json.dumps({"message": "Z" + "\u0301\u200d" * 6}), "too many accents"),
    (json.dumps({"message": "hi", "name": "Z" + "\u0301" * 6}), "name stacks too many"),
])
def test_bad_input_gets_an_error_and_nothing_else_happens(clients, frame, words):
    ada, bob = clients
    ada.send(frame)
    reply = receive(ada)
    assert list(reply) == ["error"] and words in reply["error"]
    assert_nothing_arrives(bob)
    say(ada, "still here")  # the connection stays open and usable
    assert receive(bob)["message"] == "still here"


def test_limits_are_inclusive(clients):
    ada, bob = clients
    say(ada, "m" * 1000, name="n" * 32)
    assert receive(bob) == {"name": "n" * 32, "message": "m" * 1000}


def test_names_with_any_bidi_control_are_refused(clients):
    ada, bob = clients
    for control in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069":
        say(ada, "hi", name=f"Ada{control}")
        assert "reverses text" in receive(ada)["error"]
    assert_nothing_arrives(bob)


@pytest.mark.parametrize("name, message", [
    ("Ada", "Tiếng Việt, עִבְרִית, हिन्दी, 👩\u200d💻, 1\ufe0f\u20e3"),  # real accents and emoji
    ("Ada", "Z" + "\u0301" * text_rules.MAX_MARKS_PER_CHAR),
    ("Ada", "\u202egnp.exe"),  # messages may hold bidi controls: the page isolates them
    ("Ada", "first line\nsecond line"),
    ("سارة", "مرحبا"),
])
def test_text_that_only_looks_unusual_is_accepted(clients, name, message):
    ada, bob = clients
    say(ada, message, name=name)
    assert receive(bob) == {"name": name, "message": message}


def test_a_message_over_64_kib_closes_with_1009(server):
    ada, bob = connect(server), connect(server)
    ada.send("x" * (chat.MAX_FRAME_CHARS + 1))
    with pytest.raises(simple_websocket.ConnectionClosed):
        receive(ada)
    assert ada.close_reason == 1009
    wait_until(lambda: len(ROOM.clients) == 1)  # its handler has finished, at once
    say(bob, "others carry on")
    assert receive(bob)["message"] == "others carry on"
    bob.close()


def test_a_newcomer_gets_the_last_ten_messages_oldest_first(clients):
    ada, _ = clients
    for n in range(12):
        say(ada, f"message {n}")
    for n in range(12):
        assert receive(ada)["message"] == f"message {n}"
    carol = Client.connect(f"ws://{chat_address(ada)}/ws")
    history = [receive(carol)["message"] for _ in range(10)]
    assert history == [f"message {n}" for n in range(2, 12)]
    assert_nothing_arrives(carol)
    carol.close()


def chat_address(ws):
    return f"{ws.host}:{ws.port}"


def test_concurrent_senders_are_seen_in_one_order_by_everyone(server):
    watchers = [connect(server) for _ in range(3)]
    senders = [threading.Thread(target=send_numbered, args=(server, i, 15, f"s{i}"))
               for i in range(5)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(TIMEOUT)
    # The server may still be broadcasting a sender's last messages after it has left:
    # "end" goes once their handlers have finished.
    wait_until(lambda: len(ROOM.clients) == len(watchers))
    say(watchers[0], "end")
    seen = [receive_until(ws, "end") for ws in watchers]
    assert len(seen[0]) == 5 * 15 + 1
    assert seen[0] == seen[1] == seen[2]
    for i in range(5):  # and each sender's messages stay in the order it sent them
        mine = [m for m in seen[0] if m.startswith(f"s{i} ")]
        assert mine == [f"s{i} {n}" for n in range(15)]
    for ws in watchers:
        ws.close()


def test_newcomers_during_a_burst_get_no_gap_and_no_duplicate(server):
    watcher = connect(server)
    senders = [threading.Thread(target=send_numbered, args=(server, i, 20, f"s{i}"))
               for i in range(4)]
    for thread in senders:
        thread.start()
    newcomers = []
    for _ in range(6):
        time.sleep(0.02)
        newcomers.append(Client.connect(f"ws://{server}/ws"))
    for thread in senders:
        thread.join(TIMEOUT)
    wait_until(lambda: len(ROOM.clients) == 1 + len(newcomers))  # the senders' handlers end
    say(watcher, "end")
    everything = receive_until(watcher, "end")
    assert len(everything) == 4 * 20 + 1
    for ws in newcomers:
        seen = receive_until(ws, "end")
        start = everything.index(seen[0])
        assert seen == everything[start:], "a gap, a duplicate or another order"
        assert len(seen) >= min(10, len(everything))
        ws.close()
    watcher.close()


def test_the_rate_limit_refuses_a_flood_and_keeps_the_sender(clients):
    ada, bob = clients
    for n in range(chat.RATE_BURST + 5):
        say(ada, f"flood {n}")
    replies = [receive(ada) for _ in range(chat.RATE_BURST + 5)]
    accepted = [r for r in replies if "message" in r]
    refused = [r for r in replies if "error" in r]
    assert len(accepted) == chat.RATE_BURST
    assert len(refused) == 5 and "too fast" in refused[0]["error"]
    assert [receive(bob)["message"] for _ in range(chat.RATE_BURST)] == [
        f"flood {n}" for n in range(chat.RATE_BURST)]
    assert_nothing_arrives(bob)
    time.sleep(1 / chat.RATE_PER_SECOND)  # one message's worth of allowance comes back
    say(ada, "later")
    assert receive(bob)["message"] == "later"


@pytest.mark.parametrize("origin, status", [
    ("http://evil.example", "403"),
    ("http://127.0.0.1:1", "403"),  # same host, other port: another origin
    ("null", "403"),
    (None, "101"),
    ("same", "101"),
])
def test_handshakes_from_other_sites_are_refused(server, origin, status):
    s, response = raw_handshake(server, f"http://{server}" if origin == "same" else origin)
    assert response.split()[1] == status
    s.close()


def test_compression_offered_as_browsers_do_is_declined(server):
    s, response = raw_handshake(
        server, extensions="permessage-deflate; client_max_window_bits")
    assert response.split()[1] == "101"
    assert "sec-websocket-extensions" not in response.lower()
    bob = connect(server)
    wait_until(lambda: len(ROOM.clients) == 2)
    send_text_frame(s, json.dumps({"name": "Ada", "message": "plain"}))
    assert receive(bob) == {"name": "Ada", "message": "plain"}
    first, data = receive_raw(s)
    assert first == 0x81  # a final text frame, without the "compressed" bit (RSV1)
    assert data == {"name": "Ada", "message": "plain"}
    s.close()
    bob.close()


def send_text_frame(s, text, opcode=0x1):
    """Send a short text frame (a ping with opcode 0x9), masked as client frames must be."""
    payload = text.encode()
    assert len(payload) < 126  # longer ones need an extended length
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    s.sendall(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)


def receive_raw(s):
    """The first byte and the JSON of the next short message or error frame on a raw
    socket; frames of other kinds are skipped, as next_frame does."""
    while True:
        first, length = receive_exactly(s, 2)
        data = json.loads(receive_exactly(s, length))
        if "message" in data or "error" in data:
            return first, data


def receive_exactly(s, size):
    data = b""
    while len(data) < size:
        chunk = s.recv(size - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    return data


def reset(s):
    """Close a socket with a TCP reset instead of a goodbye."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_abrupt_resets_mid_broadcast_disturb_nobody(server):
    ada, bob = connect(server), connect(server)
    vanishing = [raw_handshake(server)[0] for _ in range(10)]
    wait_until(lambda: len(ROOM.clients) == 12)
    for n in range(chat.RATE_BURST):
        say(ada, f"burst {n}")
        if n < len(vanishing):
            reset(vanishing[n])
    assert receive_until(bob, f"burst {chat.RATE_BURST - 1}") == [
        f"burst {n}" for n in range(chat.RATE_BURST)]
    wait_until(lambda: len(ROOM.clients) == 2)
    ada.close()
    bob.close()


def test_a_reader_that_stalls_is_dropped_and_delays_no_one(server, monkeypatch):
    monkeypatch.setattr(chat, "SEND_TIMEOUT", 1)
    monkeypatch.setattr(ROOM.settings, "RATE_BURST", 1000)
    # Ada sends faster than anyone types; on a loaded machine her own outbox or the wait
    # could pass the "busy" marks, which are not what this test is about.
    monkeypatch.setattr(chat, "BUSY_BACKLOG", chat.OUTBOX_LIMIT)
    monkeypatch.setattr(chat, "BUSY_WAIT", 10)
    stalled, _ = raw_handshake(server, receive_buffer=4096)  # and it never reads
    ada, bob = connect(server), connect(server)
    wait_until(lambda: len(ROOM.clients) == 3)
    # Random letters do not compress: enough of them fill every buffer on the way.
    count = 3 * chat.SEND_BUFFER // 1000
    for n in range(count):
        say(ada, f"{n} " + base64.b64encode(os.urandom(740)).decode())
    for n in range(count):
        assert receive(bob)["message"].startswith(f"{n} ")
    wait_until(lambda: len(ROOM.clients) == 2)  # the stalled one was cut off
    ada.close()
    bob.close()
    stalled.close()


def test_a_client_too_far_behind_is_dropped_at_once(server, monkeypatch):
    monkeypatch.setattr(chat, "OUTBOX_LIMIT", 50)
    monkeypatch.setattr(chat, "SEND_TIMEOUT", 60)
    monkeypatch.setattr(ROOM.settings, "RATE_BURST", 1000)
    monkeypatch.setattr(chat, "BUSY_WAIT", 10)  # a loaded machine must not refuse Ada
    stalled, _ = raw_handshake(server, receive_buffer=4096)
    ada = connect(server)
    wait_until(lambda: len(ROOM.clients) == 2)
    for n in range(3 * chat.SEND_BUFFER // 1000 + chat.OUTBOX_LIMIT):
        say(ada, f"{n} " + base64.b64encode(os.urandom(740)).decode())
        time.sleep(0.001)  # our own writer keeps up; the stalled one cannot
    wait_until(lambda: len(ROOM.clients) == 1)
    ada.close()
    stalled.close()


class FakeWebSocket(SimpleNamespace):
    __hash__ = object.__hash__  # a key of ROOM.clients, as a real one is


def fake_connection(sendall, state=ConnectionState.OPEN, send=None):
    """A websocket whose socket records what is done to it and writes with sendall (and,
    without waiting, with send(data, flags), which takes nothing unless given)."""
    done = []

    def takes_nothing(data, flags):
        raise BlockingIOError(11, "no room")

    sock = SimpleNamespace(sendall=sendall, send=send or takes_nothing,
                           shutdown=lambda how: done.append("shutdown"))
    ws = FakeWebSocket(sock=sock, ws=SimpleNamespace(state=state), environ={})
    frames.share_socket(ws)
    return ws, done


@pytest.mark.parametrize("error", [BlockingIOError(11, "SEND_TIMEOUT passed"),
                                   ConnectionResetError(), BrokenPipeError(),
                                   RuntimeError("anything else")])
def test_the_writer_hangs_up_whatever_the_write_raises(error):
    """Whatever the write raises, the writer hangs up: it must not die with a traceback."""
    def sendall(data):
        raise error

    ws, done = fake_connection(sendall)
    outbox = outbox_of(frames.text_frame("a frame"))
    chat.write_frames(ws, outbox)  # returns, having hung up
    assert done and set(done) == {"shutdown"}


def test_a_write_that_fails_part_way_cuts_the_connection_itself():
    """At once, under the lock: the library's next pong must not follow part of a frame."""
    def sendall(data):
        raise BlockingIOError(11, "SEND_TIMEOUT passed, part of the frame written")

    ws, done = fake_connection(sendall)
    with pytest.raises(BlockingIOError):
        frames.send_whole(ws, [frames.text_frame("a frame")])
    assert done == ["shutdown"]


def test_the_writer_sends_what_waits_in_one_write_and_nothing_once_closing():
    written = []
    ws, done = fake_connection(written.append)
    outbox = outbox_of(*(frames.text_frame(text) for text in ("one", "two", "three")))
    chat.write_frames(ws, outbox)  # returns once the outbox is empty: it caught up
    assert written == [b"\x81\x03one\x81\x03two\x81\x05three"] and done == []
    assert not outbox
    # The library's reader thread has begun to close: no data frame may follow its close.
    ws.ws.state = ConnectionState.LOCAL_CLOSING
    outbox.append(frames.text_frame("too late"))
    chat.write_frames(ws, outbox)  # returns at once
    assert len(written) == 1 and done == []


def outbox_of(*frames):
    outbox = chat.Outbox()
    outbox.extend(frames)
    return outbox


def sends_to(written, room):
    """A non-blocking send(data, flags) that takes at most `room` bytes, then none."""
    def send(data, flags):
        assert flags == frames.DONT_WAIT
        taken = data[:room[0]]
        if not taken:
            raise BlockingIOError(11, "no room")
        room[0] -= len(taken)
        written.append(taken)
        return len(taken)
    return send


@pytest.mark.skipif(frames.DONT_WAIT is None, reason="Windows has no MSG_DONTWAIT")
def test_a_frame_goes_at_once_when_nothing_waits_and_never_before_one_that_waits(
        monkeypatch):
    started = []
    monkeypatch.setattr(chat, "start_writer", lambda ws, outbox: started.append(ws))
    written, room = [], [1000]
    ws, done = fake_connection(written.append, send=sends_to(written, room))
    one, two, three = (frames.text_frame(text) for text in ("one", "two", "three"))
    outbox = chat.Outbox()
    chat.send_frames(ws, outbox, [one])
    assert written == [one] and not outbox and not started  # no writer, no wake-up
    room[0] = 0  # the socket is full: the frame waits, and a writer is started for it
    chat.send_frames(ws, outbox, [two])
    assert list(outbox) == [two] and started == [ws]
    room[0] = 1000  # room again, but "two" waits: "three" must not overtake it
    chat.send_frames(ws, outbox, [three])
    assert written == [one] and list(outbox) == [two, three] and started == [ws]
    chat.write_frames(ws, outbox)
    assert written == [one, two + three] and not outbox and done == []


@pytest.mark.skipif(frames.DONT_WAIT is None, reason="Windows has no MSG_DONTWAIT")
def test_a_frame_the_socket_took_part_of_is_finished_first_and_never_sent_twice(
        monkeypatch):
    monkeypatch.setattr(chat, "start_writer", lambda ws, outbox: None)
    written, room = [], [3]
    ws, done = fake_connection(written.append, send=sends_to(written, room))
    one, two = frames.text_frame("one"), frames.text_frame("two")
    outbox = chat.Outbox()
    chat.send_frames(ws, outbox, [one])  # the socket takes 3 of its 5 bytes
    assert written == [one[:3]] and list(outbox) == [one]
    chat.send_frames(ws, outbox, [two])
    ws.sock.send(b"PONG")  # the library's pong comes after the rest of the frame
    chat.write_frames(ws, outbox)
    assert written == [one[:3], one[3:] + b"PONG", two] and not outbox and done == []


@pytest.mark.skipif(frames.DONT_WAIT is None, reason="Windows has no MSG_DONTWAIT")
def test_frames_that_wait_for_the_room_go_out_in_one_write(monkeypatch):
    written = []
    ws, _ = fake_connection(written.append, send=sends_to(written, [1000]))
    room = chat.Room(chat.read_settings({}))
    room.clients[ws] = chat.Outbox()
    first, second = frames.text_frame("first"), frames.text_frame("second")
    with room.lock:  # broadcast while the room's sender was busy: both wait
        room.to_send["127.0.0.1"] = collections.deque([(first, chat.EVERYONE, 0),
                                                       (second, chat.EVERYONE, 0)])
        chat.start_room_sender(room)
    wait_until(lambda: written)
    assert written == [first + second] and list(room.history) == [first, second]


def test_without_a_send_that_does_not_wait_every_frame_goes_to_the_writer(monkeypatch):
    """Windows has no MSG_DONTWAIT."""
    monkeypatch.setattr(frames, "DONT_WAIT", None)
    monkeypatch.setattr(chat, "start_writer", lambda ws, outbox: None)
    written = []
    ws, _ = fake_connection(written.append, send=sends_to(written, [1000]))
    outbox = chat.Outbox()
    chat.send_frames(ws, outbox, [frames.text_frame("one")])
    assert written == [] and list(outbox) == [frames.text_frame("one")]


def test_frames_refuse_a_connection_that_was_offered_compression():
    offer = {"HTTP_SEC_WEBSOCKET_EXTENSIONS": "permessage-deflate"}
    ws = SimpleNamespace(sock=None, environ=offer)
    with pytest.raises(RuntimeError):
        frames.share_socket(ws)


def read_strictly(s, enough, chunk=65536, pause=0, errors=None):
    """Read the server's stream as a client with wsproto, which checks every byte of it.

    Returns the text messages and pong payloads received, until enough(messages, pongs)
    is true or the stream ends; reads at most `chunk` bytes every `pause` seconds. The
    stream may end in the middle of a frame (the server cut the connection: a client sees
    that as any dropped connection), but a frame that does not parse, or a close frame
    for a protocol error, fails the test.
    """
    client = Connection(ConnectionType.CLIENT)
    messages, pongs, text = [], [], ""
    while not enough(messages, pongs):
        time.sleep(pause)
        try:
            data = s.recv(chunk)
        except ConnectionResetError:
            data = b""
        if not data:
            break
        client.receive_data(data)
        for event in client.events():
            if isinstance(event, TextMessage):
                text += event.data
                if event.message_finished:
                    data = json.loads(text)
                    if "message" in data:  # other kinds (an exercise's) are not ours
                        messages.append(data)
                    elif "error" in data and errors is not None:
                        errors.append(data["error"])
                    text = ""
            elif isinstance(event, Pong):
                pongs.append(event.payload.decode())
            elif isinstance(event, CloseConnection):
                assert event.code < 1002, f"a corrupt stream: {event.code} {event.reason}"
                return messages, pongs
            else:
                raise AssertionError(f"unexpected {event}")
    return messages, pongs


def test_a_client_that_pauses_reading_gets_whole_frames_or_is_cut_off(server, monkeypatch):
    """The issue's case: with the send timeout short, the old writer left a frame half
    written and went on with the next frame's bytes once the client read again."""
    monkeypatch.setattr(chat, "SEND_TIMEOUT", 1)
    monkeypatch.setattr(ROOM.settings, "RATE_BURST", 1000)
    paused, _ = raw_handshake(server, receive_buffer=4096)
    ada = connect(server)
    wait_until(lambda: len(ROOM.clients) == 2)
    count = 3 * chat.SEND_BUFFER // 6000  # more than the kernel holds on the way
    for n in range(count):
        say(ada, numbered(n))
    assert receive_until(ada, numbered(count - 1))[0] == numbered(0)
    # The buffers toward the paused client are full now. Read again between one and two
    # SEND_TIMEOUTs later: the old writer's send() had given up on a frame half written
    # after one, and the next frame was waiting to follow it.
    time.sleep(1.5)
    messages, _ = read_strictly(paused, lambda messages, _: len(messages) == count)
    assert len(messages) >= 10  # what the kernel held, at least
    assert [m["message"] for m in messages] == [numbered(n) for n in range(len(messages))]
    say(ada, "the others carry on")
    assert receive(ada)["message"] == "the others carry on"
    ada.close()
    paused.close()


def test_a_sender_the_writers_are_behind_on_is_told_the_room_is_busy(server, monkeypatch):
    """A sender that does not read what the room sends may not add to it: its outbox shows
    it. Queued anyway, 300 senders' messages reached an observer 94 s late."""
    monkeypatch.setattr(chat, "BUSY_BACKLOG", 20)
    monkeypatch.setattr(chat, "SEND_TIMEOUT", 60)
    monkeypatch.setattr(ROOM.settings, "RATE_BURST", 1000)
    behind, _ = raw_handshake(server, receive_buffer=4096)  # reads nothing for now
    ada = connect(server)
    wait_until(lambda: len(ROOM.clients) == 2)
    count = 3 * chat.SEND_BUFFER // 1000 + 2 * chat.BUSY_BACKLOG
    for n in range(count):  # random letters do not compress: they fill every buffer
        say(ada, f"{n} " + base64.b64encode(os.urandom(740)).decode())
        time.sleep(0.002)  # so that Ada's own writer keeps up; the other's cannot
    assert [receive(ada)["message"].split()[0] for _ in range(count)] == [
        str(n) for n in range(count)]
    wait_until(lambda: max(len(o) for o in ROOM.clients.values()) > chat.BUSY_BACKLOG)
    send_text_frame(behind, json.dumps({"name": "Bo", "message": "hello"}))
    assert_nothing_arrives(ada, wait=0.5)  # refused, not queued for everyone
    errors = []
    read_strictly(behind, lambda messages, _: errors, errors=errors)
    assert errors == ["The room is busy; wait a moment, then send that again."]
    send_text_frame(behind, json.dumps({"name": "Bo", "message": "hello again"}))
    assert receive(ada)["message"] == "hello again"  # caught up, it may send
    ada.close()
    behind.close()


def test_a_message_is_refused_while_the_room_sender_is_behind(clients, monkeypatch):
    """Frames that wait over BUSY_WAIT for the room's sender mean the room is sending more
    than it can: what comes next is refused, not queued behind them."""
    ada, bob = clients
    monkeypatch.setattr(chat, "BUSY_WAIT", 0.5)
    original, held_up, go_on = chat.send_frames, threading.Event(), threading.Event()

    def held_up_by_the_first(ws, outbox, batch):  # the room's sender, busy with "first"
        if not held_up.is_set():
            held_up.set()
            go_on.wait(TIMEOUT)
        original(ws, outbox, batch)

    monkeypatch.setattr(chat, "send_frames", held_up_by_the_first)
    say(ada, "first")
    assert held_up.wait(TIMEOUT)
    say(ada, "second")
    wait_until(lambda: frames_waiting(ROOM) == 1)  # it waits for the room's sender
    time.sleep(0.7)
    say(ada, "third")  # "second" has waited over BUSY_WAIT: the room is behind
    wait_until(lambda: frames_waiting(ROOM) == 2)  # "third"'s refusal, to Ada alone
    go_on.set()
    assert [receive(bob)["message"] for _ in range(2)] == ["first", "second"]
    assert [receive(ada).get("message") for _ in range(2)] == ["first", "second"]
    assert receive(ada).get("error") == "The room is busy; wait a moment, then send that again."
    assert_nothing_arrives(bob)
    say(ada, "later")
    assert receive(bob)["message"] == "later"


def frames_waiting(room):
    with room.lock:
        return sum(len(waiting) for waiting in room.to_send.values())


def test_one_address_sending_flat_out_has_nobody_elses_message_refused(server, monkeypatch):
    """Issue 31: one address churning big messages on many connections made half of a
    class's messages "busy", since the oldest frame of one queue for all was its own.
    Each address now has its turn, and only its own frames count against it."""
    monkeypatch.setattr(chat, "BUSY_WAIT", 0.5)
    flood = [connect(server) for _ in range(5)]  # all from 127.0.0.1
    original, held_up, go_on = chat.send_frames, threading.Event(), threading.Event()

    def held_up_by_the_first(ws, outbox, batch):  # the room's sender, stuck for a while
        if not held_up.is_set():
            held_up.set()
            go_on.wait(TIMEOUT)
        original(ws, outbox, batch)

    monkeypatch.setattr(chat, "send_frames", held_up_by_the_first)
    say(flood[0], "first")
    assert held_up.wait(TIMEOUT)
    for n, ws in enumerate(flood * 4):
        say(ws, f"flood {n}")
    wait_until(lambda: frames_waiting(ROOM) == 20)
    time.sleep(0.7)  # 127.0.0.1's oldest frame has waited over BUSY_WAIT: it is behind
    say(flood[0], "one more")
    wait_until(lambda: frames_waiting(ROOM) == 21)  # its refusal, in 127.0.0.1's turn
    other = from_another_address(server)  # 127.0.0.2, with nothing waiting
    wait_until(lambda: len(ROOM.clients) == 6)
    send_text_frame(other, json.dumps({"name": "Bo", "message": "my turn"}))
    wait_until(lambda: frames_waiting(ROOM) == 22)  # accepted: for everyone
    go_on.set()
    seen = [receive(flood[1]).get("message") for _ in range(22)]
    assert seen[0] == "first" and "my turn" in seen[:3]  # its turn came at once
    flooded = [int(m.split()[1]) for m in seen if m and m.startswith("flood")]
    assert sorted(flooded) == list(range(20))
    for i in range(5):  # each connection's in the order it sent them
        assert [n for n in flooded if n % 5 == i] == list(range(i, 20, 5))
    errors = []
    read_strictly(other, lambda messages, _: "my turn" in [m["message"] for m in messages],
                  errors=errors)
    assert errors == []  # never told the room is busy
    replies = [receive(flood[0]) for _ in range(23)]
    assert replies[-1] == {"error": "The room is busy; wait a moment, then send that again."}
    for ws in flood:
        close(ws)
    other.close()


def from_another_address(server):
    """A raw websocket from 127.0.0.2, another machine to the chat (Linux routes all of
    127.0.0.0/8 to loopback)."""
    s, response = raw_handshake(server, source="127.0.0.2")
    assert response.split()[1] == "101"
    return s


def test_frames_for_a_client_that_has_left_are_dropped(monkeypatch):
    written = []
    ws, _ = fake_connection(written.append, send=sends_to(written, [1000]))
    gone = FakeWebSocket()
    room = chat.Room(chat.read_settings({}))
    room.clients[ws] = chat.Outbox()
    mine, theirs = frames.text_frame("mine"), frames.text_frame("theirs")
    with room.lock:
        room.to_send["127.0.0.1"] = collections.deque([(theirs, gone, 0), (mine, ws, 0)])
        chat.start_room_sender(room)
    wait_until(lambda: written)
    assert written == [mine] and not room.history


def test_a_message_that_waited_too_long_to_be_handled_is_refused(clients, monkeypatch):
    """Handlers held up (by the GIL, under overload) must not broadcast what waited."""
    ada, bob = clients
    monkeypatch.setattr(chat, "BUSY_WAIT", 0.5)
    original, calls = chat.broadcast, []

    def slow_once(room, message):
        calls.append(message)
        if len(calls) == 1:
            time.sleep(1)
        original(room, message)

    monkeypatch.setattr(chat, "broadcast", slow_once)
    for text in ("first", "second", "third"):
        say(ada, text)
    assert receive(bob)["message"] == "first"
    assert_nothing_arrives(bob)
    replies = [receive(ada) for _ in range(3)]
    assert replies[0]["message"] == "first"
    assert [r.get("error") for r in replies[1:]] == [
        "The room is busy; wait a moment, then send that again."] * 2
    say(ada, "later")
    assert receive(bob)["message"] == "later"


def test_pongs_from_the_library_never_interleave_with_our_frames(server, monkeypatch):
    """The library's reader thread answers pings on the same socket as our writer."""
    monkeypatch.setattr(ROOM.settings, "RATE_BURST", 1000)
    reader, _ = raw_handshake(server, receive_buffer=4096)
    ada = connect(server)
    wait_until(lambda: len(ROOM.clients) == 2)
    count = 4 * chat.SEND_BUFFER // 6000  # the writer waits for the reader, mid-frame
    for n in range(count):
        say(ada, numbered(n))
    pings = [f"ping {n}" for n in range(100)]

    def ping_meanwhile():
        for payload in pings:
            send_text_frame(reader, payload, opcode=0x9)
            time.sleep(0.002)

    pinger = threading.Thread(target=ping_meanwhile)
    pinger.start()
    messages, pongs = read_strictly(
        reader, lambda messages, pongs: len(messages) == count and len(pongs) == len(pings),
        chunk=2048, pause=0.001)
    pinger.join(TIMEOUT)
    assert [m["message"] for m in messages] == [numbered(n) for n in range(count)]
    assert pongs == pings
    ada.close()
    reader.close()


def writers():
    return [t for t in threading.enumerate() if getattr(t, "_target", None) is chat.write_frames]


def server_threads():
    """The threads of the server: all but this test's own clients' reader threads, and the
    rooms' senders, which come and go with what there is to send."""
    return [t for t in threading.enumerate()
            if not isinstance(getattr(getattr(t, "_target", None), "__self__", None), Client)
            and getattr(t, "_target", None) is not chat.send_to_room]


def test_an_idle_connection_holds_two_threads_and_no_writer(server):
    """The handler's and the library's reader's: a writer wakes only for a client behind."""
    before = len(server_threads())
    opened = [connect(server) for _ in range(5)]
    say(opened[0], "hello")
    for ws in opened:
        assert receive(ws)["message"] == "hello"
    wait_until(lambda: not writers())  # one may have caught up a client a moment behind
    assert len(server_threads()) == before + 2 * len(opened)
    for ws in opened:
        close(ws)


@pytest.mark.skipif(frames.DONT_WAIT is None, reason="Windows has no MSG_DONTWAIT")
def test_a_writer_exists_only_while_its_client_is_behind(server, monkeypatch):
    monkeypatch.setattr(ROOM.settings, "RATE_BURST", 1000)
    paused, _ = raw_handshake(server, receive_buffer=4096)  # reads nothing for now
    ada = connect(server)
    wait_until(lambda: len(ROOM.clients) == 2)
    count = 3 * chat.SEND_BUFFER // 6000  # more than the kernel holds on the way
    for n in range(count):
        say(ada, numbered(n))
    assert receive_until(ada, numbered(count - 1))[0] == numbered(0)
    wait_until(lambda: len(writers()) == 1)  # the paused client's, sending what waits
    messages, _ = read_strictly(paused, lambda messages, _: len(messages) == count)
    assert [m["message"] for m in messages] == [numbered(n) for n in range(count)]
    wait_until(lambda: not writers())  # caught up: its writer is gone
    say(ada, "and now at once")
    assert receive(ada)["message"] == "and now at once"
    assert read_strictly(paused, lambda messages, _: messages)[0][0]["message"] == (
        "and now at once")
    ada.close()
    paused.close()


def test_a_peer_that_vanishes_silently_is_removed_by_ping(server, monkeypatch):
    monkeypatch.setitem(chat.SOCKET_OPTIONS, "ping_interval", 0.2)
    silent, _ = raw_handshake(server)  # never answers a ping
    wait_until(lambda: len(ROOM.clients) == 1)
    wait_until(lambda: len(ROOM.clients) == 0)
    silent.close()


def test_joins_and_leaves_are_logged_with_the_count(server, caplog):
    caplog.set_level("INFO", logger=CHAT_APP.logger.name)
    expected = ["127.0.0.1 joined, 1 connected", "127.0.0.1 joined, 2 connected",
                "127.0.0.1 left, 1 connected", "127.0.0.1 left, 0 connected"]

    def logged(count):
        """The first `count` lines, once there: join() and leave() log after letting go
        of the lock, a moment after `clients` has changed."""
        def lines():
            return [r.getMessage() for r in caplog.records if r.name == CHAT_APP.logger.name]
        wait_until(lambda: len(lines()) >= count)
        return lines()

    ada = connect(server)
    assert logged(1) == expected[:1]
    bob = connect(server)
    assert logged(2) == expected[:2]
    bob.close()
    assert logged(3) == expected[:3]
    ada.close()
    assert logged(4) == expected


HARDENED = os.path.dirname(os.path.abspath(chat.__file__))


def test_flask_app_hardened_finds_the_chat():
    """`flask --app hardened run`, as the README and docs/deploying.md say, from the
    folder that holds hardened/: Flask finds create_app() in the package."""
    env = {key: value for key, value in os.environ.items() if key != "CHAT_REDIS_URL"}
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "hardened", "routes"],
                            cwd=os.path.dirname(HARDENED), env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "chat.index" in result.stdout and "/ws" in result.stdout


@pytest.mark.parametrize("threads", [None, "", "20"])
def test_gunicorn_conf_gives_gunicorn_the_threads_the_chat_counts_on(monkeypatch, threads):
    """gunicorn loads hardened/gunicorn.conf.py by its path, so it reads
    CHAT_SERVER_THREADS itself (100 unless set); its post_worker_init hook then tells the
    chat the number gunicorn runs with, which limits.py counts websockets against."""
    monkeypatch.setattr(os, "environ", dict(os.environ))  # what the hook sets stays here
    if threads is None:
        monkeypatch.delenv("CHAT_SERVER_THREADS", raising=False)
    else:
        monkeypatch.setenv("CHAT_SERVER_THREADS", threads)
    conf = runpy.run_path(os.path.join(HARDENED, "gunicorn.conf.py"))
    assert conf["threads"] == int(threads or 100)
    worker = SimpleNamespace(cfg=SimpleNamespace(threads=conf["threads"]))  # as gunicorn's
    conf["post_worker_init"](worker)
    assert limits.server_threads() == conf["threads"]
    assert conf["wsgi_app"] == "hardened:create_app()" and conf["workers"] == 1


# --- A room per app, its settings the app's ----------------------------------------------

def test_two_apps_never_share_history_or_clients():
    first, second = chat.create_app(), chat.create_app()
    with serving(first) as one, serving(second) as two:
        ada, bob = Client.connect(f"ws://{one}/ws"), Client.connect(f"ws://{two}/ws")
        wait_until(lambda: len(chat.room_of(first).clients) == 1
                   and len(chat.room_of(second).clients) == 1)
        say(ada, "only in the first")
        assert receive(ada)["message"] == "only in the first"
        assert_nothing_arrives(bob)
        carol = Client.connect(f"ws://{two}/ws")
        assert_nothing_arrives(carol)  # the second app's history is its own: empty
        assert list(chat.room_of(second).history) == []
        for ws in (ada, bob, carol):
            close(ws)


def test_apps_made_and_dropped_leave_no_thread_behind(monkeypatch):
    """A factory called for each test: each app's room starts its sender and ends it."""
    monkeypatch.setattr(chat, "SENDER_IDLE", 0.2)
    before = threading.active_count()
    for n in range(20):
        app = chat.create_app()
        with serving(app) as address:
            ws = Client.connect(f"ws://{address}/ws")
            say(ws, f"hello {n}")
            assert receive(ws)["message"] == f"hello {n}"
            close(ws)
            wait_until(lambda: not chat.room_of(app).clients)
    del app
    gc.collect()
    wait_until(lambda: threading.active_count() <= before)


def test_the_chat_registered_twice_on_one_app_refuses_in_words():
    app = chat.create_app()
    with pytest.raises(ValueError, match="registered on this app already"):
        app.register_blueprint(chat.bp, name="again", url_prefix="/again")


@pytest.mark.parametrize("name, value, words", [
    ("CHAT_HISTORY_SIZE", "ten", "CHAT_HISTORY_SIZE must be a whole number from 0 to 1000"),
    ("CHAT_MAX_MESSAGE_CHARS", 0, "CHAT_MAX_MESSAGE_CHARS must be a whole number from 1"),
    ("CHAT_RATE_BURST", True, "CHAT_RATE_BURST must be a whole number"),
    ("CHAT_TRUSTED_PROXIES", "-1", "CHAT_TRUSTED_PROXIES must be a whole number from 0 to 10"),
    ("CHAT_ALLOWED_HOSTS", ["a.example"], "CHAT_ALLOWED_HOSTS must be text"),
])
def test_a_bad_setting_stops_the_start_with_a_sentence(name, value, words):
    app = Flask("a_host")
    app.config[name] = value
    with pytest.raises(ValueError, match=words):
        app.register_blueprint(chat.bp)


def test_settings_come_from_the_apps_config_and_else_the_environment(monkeypatch):
    monkeypatch.setenv("CHAT_HISTORY_SIZE", "12")
    monkeypatch.setenv("CHAT_MAX_NAME_CHARS", "40")
    app = Flask("a_host")
    app.config["CHAT_HISTORY_SIZE"] = 30  # the app's own wins
    app.register_blueprint(chat.bp)
    chosen = chat.room_of(app).settings
    assert (chosen.HISTORY_SIZE, chosen.MAX_NAME_CHARS, chosen.RATE_BURST) == (30, 40, 20)


def test_an_apps_history_size_and_message_limit_reach_its_newcomers_and_page():
    app = Flask("a_host")
    app.config.update(CHAT_HISTORY_SIZE=30, CHAT_MAX_MESSAGE_CHARS=2000, CHAT_RATE_BURST=40)
    app.register_blueprint(chat.bp)
    with serving(app) as address:
        ada = Client.connect(f"ws://{address}/ws")
        say(ada, "m" * 2000)
        assert receive(ada)["message"] == "m" * 2000
        say(ada, "m" * 2001)
        assert receive(ada)["error"] == (
            "Your message is too long: 2,001 characters; the limit is 2,000.")
        for n in range(31):
            say(ada, f"message {n}")
        receive_until(ada, "message 30")
        bob = Client.connect(f"ws://{address}/ws")
        assert [receive(bob)["message"] for _ in range(30)] == [
            f"message {n}" for n in range(1, 31)]  # the 2,000 m's and message 0 forgotten
        for ws in (ada, bob):
            close(ws)
        page = app.test_client().get("/").text
    if "data-max-message-chars=" in CHAT_PAGE:  # the page reads its limits from there
        assert 'data-max-message-chars="2000"' in page and 'data-history-size="30"' in page


CHAT_PAGE = (pathlib.Path(HARDENED) / "chat.html").read_text(encoding="utf-8")


def test_the_page_is_given_the_rooms_limits_in_its_body_and_nothing_else_changes():
    chosen = chat.read_settings({"CHAT_MAX_MESSAGE_CHARS": 2000, "CHAT_HISTORY_SIZE": 30})
    page = ('<body class="x" data-max-message-chars="1000" data-history-size="10"'
            ' data-speaker="">\n<script>const limit = "data-history-size=\\"10\\"";</script>')
    assert chat.with_settings(page, chosen) == page.replace('"1000"', '"2000"', 1).replace(
        'data-history-size="10"', 'data-history-size="30"', 1)
    assert chat.with_settings("<body>plain</body>", chosen) == "<body>plain</body>"


@contextlib.contextmanager
def serving(app):
    """Serve an app on a free loopback port, as the `server` fixture serves CHAT_APP."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(TIMEOUT)


# --- Who may enter, and who is speaking: the host's functions -------------------------

def host_with_logins(**hooks):
    """A host whose people say who they are in a header (a stand-in for its session)."""
    app = Flask("a_host")
    app.config.update(hooks)
    app.register_blueprint(chat.bp, url_prefix="/chat")
    return app


def logged_in():
    return request.headers.get("X-User") in ("ada", "bob")


def test_a_host_may_require_a_login_for_the_page_and_the_socket():
    app = host_with_logins(CHAT_ALLOW=logged_in)
    page = app.test_client().get("/chat/")
    assert page.status_code == 403 and page.text == "Log in to use the chat.\n"
    assert app.test_client().get("/chat/", headers={"X-User": "ada"}).status_code == 200
    with serving(app) as address:
        stranger = Client.connect(f"ws://{address}/chat/ws")
        with pytest.raises(simple_websocket.ConnectionClosed) as closed:
            stranger.receive(timeout=TIMEOUT)
        assert (closed.value.reason, closed.value.message) == (1008, "Log in to use the chat.")
        assert not chat.room_of(app).clients  # it never joined the room
        ada = Client.connect(f"ws://{address}/chat/ws", headers={"X-User": "ada"})
        say(ada, "let in")
        assert receive(ada)["message"] == "let in"
        close(ada)


def test_a_host_may_say_who_is_speaking_and_the_frames_name_is_ignored():
    app = host_with_logins(CHAT_SPEAKER=lambda: request.headers.get("X-User"))
    with serving(app) as address:
        ada = Client.connect(f"ws://{address}/chat/ws", headers={"X-User": "ada"})
        anyone = Client.connect(f"ws://{address}/chat/ws")  # no name given: types one
        say(ada, "hello", name="Mallory")
        for ws in (ada, anyone):
            assert receive(ws) == {"name": "ada", "message": "hello"}
        say(anyone, "hi", name="Bob")
        assert receive(ada) == {"name": "Bob", "message": "hi"}
        for ws in (ada, anyone):
            close(ws)
    page = app.test_client().get("/chat/", headers={"X-User": 'Ada "<b>'}).text
    if "data-speaker=" in CHAT_PAGE:  # the page hides its name box when it is set
        assert 'data-speaker="Ada &quot;&lt;b&gt;"' in page
    assert chat.with_settings('<body data-speaker="">', chat.room_of(app).settings,
                              'Ada "<b>') == '<body data-speaker="Ada &quot;&lt;b&gt;">'


def test_a_hosts_function_that_is_not_one_stops_the_start_in_words():
    with pytest.raises(ValueError, match="CHAT_ALLOW must be a function"):
        host_with_logins(CHAT_ALLOW=True)
