"""Attack a running chat the way the world will, and say whether it held.

    flask run                        # in one terminal
    python break_it.py stall         # in another; --help lists the others; or all

Each demonstration prints one sentence: what went wrong, or that the chat held. The exit
status says which: 0 held, 1 broke, 2 could not even start: nothing answered at --url as
a chat does, or the chat trips over leftovers of an earlier experiment (the sentence says
which, and what to do).

There are two chats. The card's chat (Part 1 of the tutorial, the top-level app.py) keeps
what a classroom needs; the hardened chat (Parts 2 and 3, hardened/) adds what a room on
the open internet needs. `all` tells them apart by the page (only the hardened chat's
comes with a Content-Security-Policy), or by --chat. Against the card's chat it runs Part
1's demonstrations and names the others, which the card's chat leaves to the hardened one;
against the hardened chat it runs every one. A demonstration named alone always runs.
It needs nothing beyond requirements.txt: simple-websocket's client, wsproto's frames,
plain sockets and urllib.
"""
import argparse
import base64
import contextlib
import functools
import itertools
import json
import os
import re
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
from http import HTTPStatus
from urllib.parse import urlsplit, urlunsplit

import simple_websocket
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

WAIT = 5          # seconds we wait for messages that should arrive
REFUSAL_WAIT = 0.1  # seconds: a refusal in words comes at once after the handshake
QUIET = 1.5       # seconds without a new message: nothing more is coming
ROOM = 4          # well-behaved clients in each demonstration
STALL_QUIET = 5   # seconds: stall's QUIET, for 6,000 messages on a loaded machine
STALL_WAIT = 60   # seconds stall's readers may take over them, at the most
STALL_SENDERS = 24  # stall's load, spread so that no one address sends more than 256 KB
# pause's reader stops for longer than the chat's send timeout (SEND_TIMEOUT, 10 s), so
# that a send to it gives up part-way, and for less than twice that, so that it reads
# again while the next send still waits. The card's chat has no send timeout.
PAUSE = 14         # seconds
SEND_TIMEOUT = 10  # seconds: the hardened chat's, from step 16 on
PAUSE_SENDERS = 15  # each sends 20 long messages: its first burst, at every step
TOO_BIG = 64 * 1024 + 1  # characters: one more than the hardened chat's MAX_FRAME_CHARS
FOREIGN = "http://evil.example"  # origin's page: another site's
MOST_CONNECTIONS = 100   # oversize stops opening connections here if none is refused
# The client library's reader threads, as daemons: a frozen server must not keep this
# script from ending.
DAEMON = functools.partial(threading.Thread, daemon=True)


def one_address_per_client():
    """Give each client a loopback address of its own (127.0.0.2, 127.0.0.3, ...).

    The finished chat limits what one address may do together (limits.py), as it should:
    an address is a person, or a household. Every client here runs on your machine, so
    without this they would all be one person, refused and slowed as one. On Linux every
    127.x.y.z address is this machine; elsewhere they keep the one address.
    """
    if not sys.platform.startswith("linux"):
        return
    numbers = itertools.count()

    class Socket(socket.socket):
        def connect(self, address):
            if (self.family == socket.AF_INET and address[0] == "127.0.0.1"
                    and not one_person[0]):
                n = next(numbers)
                self.bind((f"127.0.{n // 200}.{n % 200 + 2}", 0))
            super().connect(address)

    socket.socket = Socket  # the library makes its sockets with socket.socket too


one_person = [False]  # True while clients are to come from one address: see one_address


@contextlib.contextmanager
def one_address():
    """The clients connected inside all come from this machine's own 127.0.0.1, as one
    person's many tabs, or one script, do (crowd, oversize, swarm)."""
    one_person[0] = True
    try:
        yield
    finally:
        one_person[0] = False


def main():
    parser = argparse.ArgumentParser(
        description="Attack a running chat the way the world will, and say whether it held.",
        epilog="demonstrations:\n" + "\n".join(
            f"  {name:<8} {demo.__doc__.strip()}" for name, demo in DEMOS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", choices=[*DEMOS, "all"], metavar="demo",
                        help="one of: " + ", ".join([*DEMOS, "all"]))
    parser.add_argument("--url", default="ws://127.0.0.1:5000/ws",
                        help="the chat's websocket (default: %(default)s)")
    parser.add_argument("--chat", choices=["card", "hardened"],
                        help="which chat `all` is for (default: told by its page)")
    args = parser.parse_args()
    one_address_per_client()
    names = list(DEMOS) if args.demo == "all" else [args.demo]
    if args.demo == "all" and (args.chat or which_chat(args.url)) == "card":
        names = [name for name in DEMOS if name in PART_1]
    everything_held = True
    for name in names:
        try:
            newcomer = first_to_speak(args.url)
            if newcomer is None:
                print(f"{name}: {LEFTOVERS}")
                sys.exit(2)
            try:
                held, sentence = DEMOS[name](args.url)
            finally:
                # Only now: at step 02 a client that leaves stays in the set for good.
                close_all([newcomer])
        except Misbehaved as finding:  # it let our clients in, then failed them
            held, sentence = False, f"the chat answered, but {finding}"
        except simple_websocket.ConnectionClosed as error:
            held, sentence = False, (
                "the chat cut off one of our clients in the middle of the demonstration "
                f"(close code {error.reason}{': ' + error.message if error.message else ''})")
        except (OSError, simple_websocket.ConnectionError) as error:
            print(f"{name}: {why_no_chat(args.url, error)}")
            sys.exit(2)
        print(f"{name}: {'HELD' if held else 'BROKE'}: {sentence}")
        everything_held = everything_held and held
    for name in DEMOS:
        if args.demo == "all" and name not in names:
            print(f"{name}: the hardened chat handles this: see Part 2")
    sys.exit(0 if everything_held else 1)


# Part 1's demonstrations: what the card's chat holds against. The others show what the
# hardened chat adds (Parts 2 and 3).
PART_1 = ("vanish", "race", "stall", "garbage", "flood", "origin")


def which_chat(url):
    """"hardened" if the chat's page comes with a Content-Security-Policy, else "card"
    (a page that does not load at all is a chat early in Part 1's)."""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path.rsplit("/", 1)[0] + "/"  # the page is beside its socket
    try:
        with urllib.request.urlopen(urlunsplit((scheme, parts.netloc, path, "", "")),
                                    timeout=WAIT) as response:
            policy = response.headers.get("Content-Security-Policy")
    except (OSError, ValueError):  # no page (yet), or no server: the demonstration says
        return "card"
    return "hardened" if policy else "card"


LEFTOVERS = (
    "could not start: the chat cut off our first client as soon as it spoke, before the "
    "demonstration began. It still holds connections from an earlier experiment that "
    "ended without a goodbye (a closed tab or console, or an earlier demonstration), and "
    "trips over them. Restart the chat (Ctrl+C, then flask run again; or save app.py "
    "under flask run --debug) and run this again")


def first_to_speak(url):
    """A client that spoke and was heard; None if the chat cut it off for speaking. A chat
    that trips over connections left from an earlier experiment cuts off whoever speaks
    first (step 02), and a demonstration would then say nothing true about the
    step itself. The caller closes it when the demonstration is over."""
    ws = open_client(url)
    probe = f"{new_tag()} is anyone there?"
    try:
        say(ws, probe)
        collect(ws, probe, until=probe)  # its own message comes back to it
        time.sleep(0.2)  # a handler that tripped closes the connection within a moment
    except simple_websocket.ConnectionClosed:
        pass
    if ws.connected:
        return ws
    close_all([ws])
    return None


class Misbehaved(Exception):
    """The chat let our clients in, then failed them before a demonstration could begin:
    that is a finding too. Its words finish the sentence "the chat answered, but ..."."""


def why_no_chat(url, error):
    """Why nothing we could talk to answered at url, in a sentence, from the error that
    stopped us: nothing listens there, or something that is not a websocket answers."""
    address = urlsplit(url).netloc
    reason = error.reason if isinstance(error, urllib.error.URLError) else error
    if isinstance(reason, ConnectionRefusedError):
        return (f"nothing listens at {address}. Is the chat running? (flask run prints "
                "the address it listens at; for another one, give --url, as in "
                "--url ws://127.0.0.1:5001/ws)")
    if isinstance(reason, socket.gaierror):
        return f"could not find the host in {url} ({reason})"
    if isinstance(error, simple_websocket.ConnectionError):
        return what_answered(url)
    return f"could not talk to {url} ({error})"


def what_answered(url):
    """Something at url answered an upgrade to a websocket with something else: what."""
    try:
        s, status, answer = raw_handshake(url)  # once more, to read the answer in words
    except OSError as error:
        return f"could not talk to {url} ({error})"
    s.close()
    parts = urlsplit(url)
    if status == 101:
        return (f"{parts.netloc} refused one of our websockets at {parts.path}, then "
                "accepted the next: try again in a moment")
    words = answer if answer and "<" not in answer else HTTPStatus(status).phrase
    return (f"{parts.netloc} answered, but not with a websocket at {parts.path}: "
            f"{status} {words}. If the chat listens at another port or path, give "
            "--url, as in --url ws://127.0.0.1:5001/ws")


# The demonstrations. Each returns (held, a sentence a beginner understands).

def stall(url):
    """a client stops reading while the others chat: does the room freeze?"""
    tag = new_tag()
    stuck = raw_client(url, receive_buffer=4096)  # it will never read a byte
    room = gather(url, ROOM, tag)
    sender, readers = room[0], room[1:]
    # An hour of chat in a few seconds: enough to fill every buffer on the way to the
    # stuck client (Linux lets the server's buffer for it grow to 4 MB).
    # Spread over several senders: the finished chat reads one address's bytes at a pace.
    count, helpers = 6000, [open_client(url) for _ in range(STALL_SENDERS - 1)]
    senders = [sender, *helpers]
    share = count // len(senders)
    sent = send_together({ws: [chat_line(tag, n, size=900)
                               for n in range(s * share, (s + 1) * share)]
                          for s, ws in enumerate(senders)})
    # A frozen room stays frozen; a busy machine only pauses now and then, and may take
    # many seconds over 6,000 messages: wait longer, and for as long as they come.
    got = [collect(ws, tag, until_quiet=True, wait=STALL_WAIT,
                   quiet=STALL_QUIET if n == 0 else 1) for n, ws in enumerate(readers)]
    # Until each goes quiet: on a loaded machine the errors may trail the messages.
    errors = [count_errors(ws, wait=STALL_WAIT) or 0 for ws in senders]
    # A sender that fell too far behind in reading (it gets everyone's messages and its
    # own refusals) may be cut off by a chat that limits each outbox, before it read all
    # its refusals: then what the readers got from it is what the chat took.
    heard = [0] * len(senders)
    for text in texts(got[0]):
        heard[int(text.split()[1]) // share] += 1
    cut_off = [s for s, ws in enumerate(senders) if not ws.connected]
    refused = sum(errors[s] for s in range(len(senders)) if s not in cut_off)
    reset(stuck)
    close_all(room + helpers)
    accepted = sent - refused - sum(share - heard[s] for s in cut_off)
    lowest = min(len(seen) for seen in got)
    if lowest < accepted:
        return False, (
            f"the {len(readers)} clients that kept reading got only {lowest} of the "
            f"{accepted} messages within {STALL_QUIET} s of the last one: one client that "
            "stopped reading froze the room (every send to it waits, forever)")
    note = f" (it refused {refused} as too fast)" if refused else ""
    return True, (
        f"one client stopped reading, and the {len(readers)} others still got all "
        f"{accepted} messages the server accepted{note}")


def flood(url):
    """one client sends 200 messages as fast as it can: is the room buried?"""
    tag = new_tag()
    room = gather(url, ROOM, tag)
    flooder, others = room[0], room[1:]
    count = 200
    for n in range(count):
        say(flooder, f"{tag} flood {n}")
    got = [collect(ws, tag, until_quiet=True) for ws in others]
    refused = count_errors(flooder)
    most = max(len(seen) for seen in got)
    still_there = room_still_talks(others[0], [flooder, *others[1:]], tag)
    close_all(room)
    if most > count // 4:
        return False, (
            f"one client sent {count} messages at once and the {len(others)} "
            f"others got {most} of them on their screens: nothing stops one script "
            "from burying the conversation")
    if not still_there:
        return False, "the flood was refused, but afterwards the room no longer talked"
    return True, (
        f"one client sent {count} messages at once; the others got {most} of "
        f"them, {refused} were refused as too fast, and everyone stayed connected")


GARBAGE = [
    ("a frame that is not JSON", "hello"),
    ("JSON nested 10,000 deep", "[" * 10_000),  # under any frame limit, over Python's depth
    ("a number as the message", '{"message": 42}'),
    ("a binary frame", b"\x00\x01\x02"),
    ("a 5,000-character message", json.dumps({"name": "Ada", "message": "m" * 5000})),
]
HUGE = 100_000  # characters: more than anyone's message, less than a denial of service


def garbage(url):
    """malformed frames: is each refused, to its sender alone, with everyone still on?"""
    tag = new_tag()
    room = gather(url, ROOM, tag)
    sender, others = room[0], room[1:]
    for _, frame in GARBAGE:
        sender.send(frame)
    say(sender, f"{tag} done")  # still connected, still heard?
    leaks = [leaked(ws, f"{tag} done") for ws in others]
    errors = count_errors(sender, until=f"{tag} done")
    leaked_kinds = [kind for kind, frame in GARBAGE if any(
        looks_like(frame, leak) for leak_list in leaks for leak in leak_list)]
    if leaked_kinds:
        close_all(room)
        return False, (
            f"the {len(others)} other clients received {len(leaked_kinds)} of "
            f"{len(GARBAGE)} malformed frames as if they were messages "
            f"({', '.join(leaked_kinds)}): every page would show them or choke on them")
    if any(f"{tag} done" not in seen for seen in map(texts, leaks)) or errors is None:
        close_all(room)
        return False, ("after the malformed frames the sender was cut off or no longer "
                       "heard: one bad frame cost a client its connection")
    if errors < len(GARBAGE):
        close_all(room)
        return False, (f"only {errors} of {len(GARBAGE)} malformed frames got an error "
                       "back: the sender cannot tell what went wrong")
    # Last, one frame far bigger than any message: the server should close on it.
    sender.send("x" * HUGE)
    close_reason = wait_for_close(sender)
    leaks = [leaked(ws, None, wait=1) for ws in others]
    still_there = room_still_talks(others[0], others[1:], tag)
    close_all(room)
    if any(looks_like("x" * HUGE, leak) for leak_list in leaks for leak in leak_list):
        return False, (f"a {HUGE:,}-character frame went to all {len(others)} other "
                       "clients: anyone can make everyone download anything")
    if close_reason is None or not still_there:
        return False, (f"a {HUGE:,}-character frame was not refused cleanly: its sender "
                       "was not closed, or the room stopped talking")
    return True, (
        f"each of the {len(GARBAGE)} malformed frames got an error back to its sender "
        f"alone, who stayed connected; a {HUGE:,}-character frame closed its sender's "
        f"connection (code {close_reason}) and reached no one else")


def race(url):
    """8 clients send at once: does everyone get every message, in one order?"""
    tag = new_tag()
    watchers = gather(url, 3, tag)
    senders, each = 8, 15
    opened = []
    threads = [threading.Thread(target=send_numbered, args=(url, tag, s, each, opened),
                                daemon=True) for s in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    seen = [texts(collect(ws, tag, until_quiet=True, quiet=QUIET if n == 0 else 0.2))
            for n, ws in enumerate(watchers)]
    close_all(watchers + opened)  # only now: a client that leaves is another story
    total = senders * each
    fewest = min(len(s) for s in seen)
    if fewest < total:
        return False, (
            f"{senders} clients sent {total} messages at once and a watcher got only "
            f"{fewest}: two threads wrote to one connection at the same time and "
            "garbled it, or changed the set of clients while another looped over it")
    for n, other in enumerate(seen[1:], start=2):
        if other != seen[0]:
            at = next(i for i, (a, b) in enumerate(zip(seen[0], other)) if a != b)
            return False, (
                f"{senders} clients sent {total} messages at once, and watchers 1 and "
                f"{n} saw them in different orders (from message {at + 1} on): two "
                "broadcasts ran through the clients at the same time")
    for s in range(senders):
        mine = [m for m in seen[0] if m.startswith(f"{tag} s{s} ")]
        if mine != [f"{tag} s{s} {n}" for n in range(each)]:
            return False, f"sender {s}'s messages arrived out of the order it sent them"
    return True, (f"{senders} clients sent {total} messages at once: every watcher got "
                  "all of them, in one order")


def vanish(url):
    """clients disappear without saying goodbye: does the next message still go out?"""
    tag = new_tag()
    room = gather(url, 3, tag)
    ghosts = []
    for n in range(4):  # one at a time, each heard by all, as gather does
        ghosts.append(raw_client(url))
        call = f"{tag} raw roll call {n}"
        raw_say(ghosts[-1], call)
        if not (all(raw_heard(s, call, wait=WAIT) for s in ghosts)
                and all(call in texts(collect(ws, tag, until=call)) for ws in room)):
            raise Misbehaved("the clients that were to vanish never joined the room")
    for ghost in ghosts:
        ghost.close()  # no close frame: a killed browser, a crashed phone app
    time.sleep(1)  # the server notices a closed socket within a moment
    sender, others = room[0], room[1:]
    count = 5
    for n in range(count):
        say(sender, f"{tag} after {n}")
    got = [texts(collect(ws, tag, until_quiet=True)) for ws in room]
    close_all(room)
    if len(got[0]) < count:
        reached = min(len(g) for g in got[1:])
        return False, (
            f"after {len(ghosts)} clients vanished without saying goodbye, the next "
            f"message cut off its own sender; the others got {reached} of {count}: "
            "the server kept the vanished clients and tripped over them")
    if any(len(g) < count for g in got[1:]):
        return False, (f"after {len(ghosts)} clients vanished, the others got only "
                       f"{min(len(g) for g in got[1:])} of {count} messages")
    return True, (f"{len(ghosts)} clients vanished without saying goodbye, and the "
                  f"next {count} messages reached everyone else")


CROWD = 128  # connections from one address: twice what the finished chat lets it hold


def crowd(url):
    """one address opens 128 connections: can one script fill the room?"""
    tag = new_tag()
    room = gather(url, 3, tag)
    admitted, refusals = [], []
    with one_address():
        for _ in range(CROWD):
            s, status, answer = raw_handshake(url)
            if status == 101:
                admitted.append(s)
            else:
                refusals.append((status, answer))
                s.close()
    wait_for_raw_roll_call(room[0], admitted, tag)  # all of them are in the room
    still_there = room_still_talks(room[0], room[1:], tag)
    for s in admitted:
        s.close()
    close_all(room)
    if not refusals:
        return False, (
            f"one address opened {CROWD} connections and all {CROWD} got in, each "
            "holding server threads for as long as it stays: one script can fill the "
            "room, and the server, by itself")
    status, answer = refusals[0]
    if not answer or 500 <= status < 600:
        return False, (f"{len(refusals)} of {CROWD} connections from one address were "
                       f"refused, but with {status} and no reason the person can read")
    if not still_there:
        return False, (f"{len(refusals)} of {CROWD} connections from one address were "
                       "refused, but afterwards the room no longer talked")
    return True, (
        f"one address opened {CROWD} connections: the first {len(admitted)} got in, the "
        f"other {len(refusals)} were refused in words ({status}: \"{answer}\"), and the "
        "room still talked")


SWARM = 40  # connections from one address: fewer than the finished chat lets it hold
TAB_BURST = 20  # messages each sends at once: app.py's RATE_BURST, one connection's due


def swarm(url):
    """one address sends 20 messages on each of 40 connections: is the room buried?"""
    tag = new_tag()
    room = gather(url, 3, tag)
    with one_address():
        tabs = [open_client(url) for _ in range(SWARM)]
    for n in range(TAB_BURST):
        for t, ws in enumerate(tabs):
            say(ws, f"{tag} tab {t} {n}")
    got = [collect(ws, tag, until_quiet=True, quiet=QUIET if n == 0 else 0.2)
           for n, ws in enumerate(room)]
    refused = sum(count_errors(ws) or 0 for ws in tabs)
    still_there = room_still_talks(room[0], room[1:], tag)
    close_all(room + tabs)
    count, most = SWARM * TAB_BURST, max(len(seen) for seen in got)
    if most > count // 2:
        return False, (
            f"one address opened {SWARM} connections and sent {TAB_BURST} messages on "
            f"each, every connection within its own limit, and the others got {most} of "
            f"the {count}: one person with more tabs open buries the room")
    if not refused or not still_there:
        return False, (f"the others got {most} of {count} messages from one address, but "
                       "its tabs were not told why, or the room stopped talking")
    return True, (
        f"one address sent {count} messages over {SWARM} connections at once: the others "
        f"got {most} of them, {refused} were refused as too fast, and the room still "
        "talked")


# What each would show as on every screen; one line each, so it fits the sentence.
SPOOFED_NAME = "\u202enimda"  # U+202E reverses what follows: it shows as "admin"
INVISIBLE = "\u200b\u2063"   # a zero-width space and an invisible separator


def spoof(url):
    """a name that reverses text, a message with nothing visible: do the others get them?"""
    tag = new_tag()
    room = gather(url, 3, tag)
    sender, others = room[0], room[1:]
    say(sender, f"{tag} I am in charge here", name=SPOOFED_NAME)
    say(sender, INVISIBLE)
    say(sender, f"{tag} done")
    leaks = [leaked(ws, f"{tag} done") for ws in others]
    answers = [data["error"] for data in map(as_dict, leaked(sender, f"{tag} done"))
               if "error" in data]
    close_all(room)
    spoofs = [data for leak in leaks for data in map(as_dict, leak)
              if data.get("name") == SPOOFED_NAME or data.get("message") == INVISIBLE]
    if spoofs:
        return False, (
            f"a name sent as U+202E and \"nimda\" (it shows as \"admin\") and a message of "
            f"invisible characters reached the others ({len(spoofs)} of "
            f"{2 * len(others)}): a name that shows as something it is not")
    if len(answers) < 2:
        return False, "the misleading name and message were dropped without a word"
    return True, (
        "a name that reverses text and a message with nothing visible were refused, each "
        f"with an error in words to its sender alone (\"{answers[0]}\"), and "
        "reached no one else")


def origin(url):
    """a page on another site opens the chat's socket: is it refused?"""
    s, status, _ = raw_handshake(url, origin=FOREIGN)
    s.close()
    if status == 101:
        return False, (
            f"a page on {FOREIGN} opened the chat's websocket: any site a user visits "
            "could read and write in the chat as them, with their cookies")
    return True, (f"a page on {FOREIGN} asked for the chat's websocket and was refused "
                  f"({status} {HTTPStatus(status).phrase})")


def headers(url):
    """the page: does it come with a Content-Security-Policy?"""
    parts = urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    with urllib.request.urlopen(urlunsplit((scheme, parts.netloc, "/", "", "")),
                                timeout=WAIT) as response:
        policy = response.headers.get("Content-Security-Policy")
        sniffing = response.headers.get("X-Content-Type-Options")
    if not policy:
        return False, (
            "the page came without a Content-Security-Policy: should a message ever get "
            "into the page as markup, any script in it would run in every reader's "
            "browser, as them")
    if sniffing != "nosniff":
        return False, ("the page has a Content-Security-Policy but not X-Content-Type-"
                       "Options: nosniff: browsers may guess a file's type and run it")
    return True, (f"the page came with a Content-Security-Policy ({policy.split(';')[0]}: "
                  "no script runs but its own) and X-Content-Type-Options: nosniff")


def pause(url):
    """a client stops reading for 14 s, then reads on: are its frames still whole?"""
    tag = new_tag()
    paused = raw_client(url, receive_buffer=4096)
    room = gather(url, ROOM, tag)
    received = wait_for_raw_roll_call(room[0], [paused], tag)[0]
    # From now on it reads nothing, while others chat enough to fill every buffer on the
    # way to it: the server's send to it stops part-way through a frame, and waits.
    stopped = time.monotonic()
    senders = [open_client(url) for _ in range(PAUSE_SENDERS)]
    sent = send_together({ws: [chat_line(tag, s * 20 + n, size=900) for n in range(20)]
                          for s, ws in enumerate(senders)})
    # What the others got is what the room took: a busy or rate-limited chat refuses
    # some, in words to their senders, and that is no fault of the paused client's.
    taken = len(texts(collect(room[1], tag, until_quiet=True, wait=WAIT * 2)))
    filled = time.monotonic() - QUIET
    # Read again once that send gave up (after the chat's send timeout), but before the
    # next one does: PAUSE s, or longer if the chat was slow to send.
    time.sleep(max(0, max(stopped + PAUSE, filled + SEND_TIMEOUT + 1) - time.monotonic()))
    paused_for = time.monotonic() - stopped
    # Until all have come or it is hung up on: after a long pause, the kernel may take
    # seconds to notice that the client reads again (TCP's zero-window probes back off).
    rest, hung_up, got, broken, cut = b"", False, 0, None, None
    deadline = time.monotonic() + WAIT * 4
    while not (got >= taken or hung_up or broken or cut) and time.monotonic() < deadline:
        more, hung_up = raw_read(paused, wait=deadline - time.monotonic())
        rest += more
        messages, broken = whole_messages(received + rest)
        got = len([t for t in texts(messages)
                   if t.startswith(tag) and " roll call " not in t])
        cut = cut_frame(received + rest)
    close_all(room + senders)
    said = f"the client that paused reading for {paused_for:.0f} s got {got} messages"
    if cut:
        return False, (
            f"{said}, then a frame cut off after {cut[0]:,} of its {cut[1]:,} bytes, "
            "followed by the next frame: its stream is garbage from there on (a browser "
            'drops the connection: "Invalid frame header")')
    if broken:
        return False, f"{said}, then garbage: {broken}"
    of_them = f"of the {taken} the room took meanwhile" + (
        f" ({sent - taken} of {sent} were refused to their senders)" if taken < sent else "")
    if got < taken and not hung_up:
        return False, f"{said} {of_them}, and no more in {WAIT * 4} s"
    ending = ", then was hung up on" if hung_up else ""
    return True, f"{said} {of_them}, every frame whole{ending}"


def oversize(url):
    """connections closed for too big a frame: does their address get its places back?"""
    # A line in the history first: a newcomer let in then hears from the chat at once,
    # and so is told from one refused (closed at once) without waiting.
    gather(url, 1, new_tag())[0].close()
    # One address (one household, say) opens connections until the chat refuses one.
    opened, refusal = [], None
    ready_by = time.monotonic() + WAIT  # an earlier run's connections may still be closing
    with one_address():
        while len(opened) < MOST_CONNECTIONS and refusal is None:
            try:
                opened.append(raw_client(url))
            except Refused as error:
                if len(opened) < 2 and time.monotonic() < ready_by:
                    time.sleep(0.1)
                    continue
                refusal = error
    if refusal is None:
        close_all_raw(opened)
        return True, (f"one address opened {len(opened)} connections: this chat sets no "
                      "limit per address, so a closed connection holds no place back")
    # Half of them send a frame too big: the chat closes those (code 1009).
    closing = opened[len(opened) // 2:]
    frame = FrameProtocol(client=True, extensions=[]).send_data("x" * TOO_BIG)
    for s in closing:
        s.sendall(frame)
    codes = ", ".join(sorted({str(close_code(s)) for s in closing}))
    # At once the address opens as many again: their places should be free.
    started, reopened = time.monotonic(), []
    with one_address():
        while len(reopened) < len(closing) and time.monotonic() < started + WAIT:
            try:
                reopened.append(raw_client(url))
            except Refused as error:
                refusal = error
                time.sleep(0.1)
    took = time.monotonic() - started
    close_all_raw(opened + reopened)
    closed = (f"{len(closing)} of one address's {len(opened)} connections sent a frame "
              f"too big and the chat closed them (close code {codes})")
    if len(reopened) < len(closing):
        return False, (
            f"{closed}, yet for {WAIT} s the address could open only {len(reopened)} "
            f"new ones ({refusal}): the chat still counted {len(closing) - len(reopened)} "
            "closed connections, whose handlers notice the close only when they next "
            "wake up (every 25 s)")
    return True, (f"{closed}, and the address opened {len(reopened)} new ones within "
                  f"{took:.1f} s: their places were free")



# One address at a time, beside a room of ROOM people who each say something every
# TALK_PACE s: churn, busy and refused. The room holds if none of its messages is
# refused and each reaches everyone within TALK_LAG s, during the attack and after it.
ATTACK_SECONDS = 2  # each attack's length: enough for the room to feel it, short to run
TALK_PACE = 0.5     # seconds between one person's messages: a lively room
TALK_LAG = 1.5      # seconds from sending to everyone's screen: the hardened chat's aim
RECOVERY = 5        # seconds after an attack by which the room must be itself again
CHURN_THREADS = 4   # churn's: each connects, sends 3 messages, leaves, again and again
# The finished chat's limits for one address (safeguards/limits.py): 40 messages a
# second after a burst of 100; churn must get no more than that, with a quarter spare.
ADDRESS_RATE, ADDRESS_BURST = 40, 100
ADDRESS_CONNECTIONS = 64  # the finished chat's connections per address (its most)
REFUSED_THREADS = 4    # refused's: each connects, is refused, sends 4 MiB, again
REFUSED_BYTES = 4 * 1024 * 1024
REFUSED_PATIENCE = 2  # seconds a refused connection's send may wait: the chat reads no more


class Conversation:
    """The room talking while something else happens: each member says something every
    TALK_PACE s, and reads everything, in threads of their own."""

    def __init__(self, room, tag):
        self.room, self.tag, self.stop, self.done = room, tag, threading.Event(), False
        self.sent = {}      # text -> when it was sent
        self.arrived = [{} for _ in room]  # for each member: text -> when it arrived
        self.refusals = []  # the errors the members were sent
        self.others = 0     # messages of this run from anyone else (the attacker)
        self.threads = [DAEMON(target=self.talk)] + [
            DAEMON(target=self.listen, args=(n,)) for n in range(len(room))]

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        deadline = time.monotonic() + TALK_LAG * 2  # each message reaches all, or is late
        while time.monotonic() < deadline and not self.all_answered():
            time.sleep(0.05)
        self.done = True
        for thread in self.threads:  # so that none of them takes what comes next
            thread.join()

    def all_answered(self):
        delivered = sum(len(arrived) for arrived in self.arrived)
        return delivered + len(self.refusals) * len(self.room) >= (
            len(self.sent) * len(self.room))

    def talk(self):
        k = 0
        while not self.stop.wait(TALK_PACE / len(self.room)):
            text = f"{self.tag} talk {k}"
            self.sent[text] = time.monotonic()
            try:
                say(self.room[k % len(self.room)], text)
            except simple_websocket.ConnectionClosed:
                pass  # counted as not arrived
            k += 1

    def listen(self, n):
        ws = self.room[n]
        while not self.done:
            try:
                frame = ws.receive(timeout=0.2)
            except simple_websocket.ConnectionClosed:
                return
            if frame is None:
                continue
            data = as_dict(frame)
            text = text_of(frame)
            if "error" in data:
                self.refusals.append(data["error"])
            elif text and text.startswith(f"{self.tag} talk "):
                self.arrived[n][text] = time.monotonic()
            elif text and text.startswith(self.tag) and n == 0:
                self.others += 1

    def verdict(self):
        """(whether the room held, a sentence on how it fared)."""
        lags = [arrived[text] - when for text, when in self.sent.items()
                for arrived in self.arrived if text in arrived]
        missing = (len(self.sent) - len(self.refusals)) * len(self.room) - len(lags)
        slowest = max(lags, default=0)
        busy = sum("busy" in error for error in self.refusals)
        said = (f"the room's {len(self.room)} people sent {len(self.sent)} messages "
                f"meanwhile")
        if self.refusals:
            kind = "as busy" if busy == len(self.refusals) else "(" + self.refusals[0] + ")"
            return False, f"{said}, and {len(self.refusals)} of them were refused {kind}"
        if missing:
            return False, (f"{said}, and {missing} deliveries had not arrived "
                           f"{TALK_LAG * 2:.0f} s after the attack")
        if slowest > TALK_LAG:
            return False, (f"{said}: every one arrived, but the slowest took "
                           f"{slowest:.1f} s to reach everyone")
        return True, f"{said}: every one reached everyone, the slowest in {slowest:.1f} s"


def room_recovers(room, tag):
    """After an attack: does a message reach everyone within RECOVERY s? (held, a
    sentence)"""
    line = f"{tag} back to normal?"
    started = time.monotonic()
    say(room[0], line)
    answer = next((data for data in map(as_dict, leaked(room[0], line, wait=RECOVERY))
                   if "error" in data or data.get("message") == line), {})
    if "error" in answer:
        return False, f"a message right after it was refused (\"{answer['error']}\")"
    heard = answer and all(line in texts(collect(ws, tag, until=line, wait=RECOVERY))
                           for ws in room[1:])
    took = time.monotonic() - started
    if heard and took <= RECOVERY:
        return True, f"a message right after it reached everyone in {took:.1f} s"
    return False, f"a message right after it did not reach everyone within {RECOVERY} s"


def churn(url):
    """one address connects, sends 3 messages and leaves, again and again: is it held back?"""
    tag = new_tag()
    room = gather(url, ROOM, tag)
    frames = b"".join(FrameProtocol(client=True, extensions=[]).send_data(
        json.dumps({"name": "churn", "message": f"{tag} churn {n}"})) for n in range(3))
    stop_at = time.monotonic() + ATTACK_SECONDS
    visits = [0]

    def visit_again_and_again():
        while time.monotonic() < stop_at:
            try:
                s = quick_handshake(url)
                s.sendall(frames + GOODBYE)
                s.shutdown(socket.SHUT_WR)  # nothing more: the chat closes at once
                visits[0] += 1
                raw_read(s, wait=WAIT)  # until it has
                s.close()
            except OSError:
                pass

    with Conversation(room, tag) as talk, one_address():
        attackers = [DAEMON(target=visit_again_and_again) for _ in range(CHURN_THREADS)]
        for thread in attackers:
            thread.start()
        for thread in attackers:
            thread.join(ATTACK_SECONDS + WAIT)
    held, how = talk.verdict()
    back, after = room_recovers(room, tag) if held else (False, "")  # broken already
    close_all(room)
    got = talk.others / ATTACK_SECONDS
    most = (ADDRESS_BURST + ADDRESS_RATE * ATTACK_SECONDS) * 1.25 / ATTACK_SECONDS
    did = (f"one address connected {visits[0]} times in {ATTACK_SECONDS} s, 3 messages a "
           f"visit, and the room got {talk.others} of them ({got:.0f} a second)")
    if got > most:
        return False, (f"{did}: far more than the {ADDRESS_RATE} a second (after a burst "
                       f"of {ADDRESS_BURST}) the finished chat lets an address send; leaving "
                       f"and coming back must not buy a fresh allowance; {how}")
    if not held or not back:
        return False, f"{did}; but {how if not held else after}"
    return True, f"{did}, no more than its address may; {how}"


def busy(url):
    """one address's 64 connections send empty frames flat out: does the room stay quick?"""
    tag = new_tag()
    room = gather(url, ROOM, tag)
    opened = fill_the_address(url, ADDRESS_CONNECTIONS)
    empty = FrameProtocol(client=True, extensions=[]).send_data("") * 500
    stop_at = time.monotonic() + ATTACK_SECONDS

    def send_flat_out(sockets):
        for s in sockets:
            s.settimeout(0.05)
        while time.monotonic() < stop_at:
            for s in sockets:
                try:
                    s.sendall(empty)
                except OSError:  # full (timed out), or cut off
                    pass

    def read_everything():  # as a browser does: what it is sent never piles up
        while time.monotonic() < stop_at + 1:
            for s in opened:
                try:
                    s.recv(65536, socket.MSG_DONTWAIT)
                except OSError:
                    pass
            time.sleep(0.01)

    with Conversation(room, tag) as talk:
        threads = [DAEMON(target=send_flat_out, args=(opened[n::2],)) for n in range(2)]
        threads.append(DAEMON(target=read_everything))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(ATTACK_SECONDS + WAIT)
    held, how = talk.verdict()
    back, after = room_recovers(room, tag) if held else (False, "")  # broken already
    reset_all(opened)
    close_all(room)
    did = (f"one address's {len(opened)} connections sent empty messages flat out for "
           f"{ATTACK_SECONDS} s, each within every limit of its own")
    if not held:
        return False, (f"{did}; {how}: reading, parsing and answering the empty ones "
                       "took the room's turn")
    if not back:
        return False, f"{did}; {how}, but {after}: the chat was still busy with the attack"
    return True, f"{did}; {how}, and {after}"


def refused(url):
    """connections the chat refuses send megabytes anyway: does it read them all?"""
    tag = new_tag()
    room = gather(url, ROOM, tag)
    held_open = fill_the_address(url, ADDRESS_CONNECTIONS)
    empty = FrameProtocol(client=True, extensions=[]).send_data("") * (64 * 1024 // 6)
    stop_at = time.monotonic() + ATTACK_SECONDS
    counts = {"refused": 0, "let in": 0, "read whole": 0, "hung up": 0}

    def refused_and_sending():
        while time.monotonic() < stop_at:
            try:
                s, status, _ = raw_handshake(url)
            except OSError:
                continue
            if status == 101:  # a place came free (or opening fast was forgiven): hold it
                counts["let in"] += 1
                held_open.append(s)
                continue
            counts["refused"] += 1
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SEND_BUFFER)
            s.settimeout(REFUSED_PATIENCE)
            sent = 0
            try:
                while sent < REFUSED_BYTES and time.monotonic() < stop_at + WAIT:
                    sent += s.send(empty)
                if sent >= REFUSED_BYTES:
                    counts["read whole"] += 1  # the chat took every byte of it
            except OSError:  # the chat hung up (or took nothing for a while)
                counts["hung up"] += 1
            reset(s)

    with Conversation(room, tag) as talk, one_address():
        threads = [DAEMON(target=refused_and_sending) for _ in range(REFUSED_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(ATTACK_SECONDS + 2 * WAIT)
    held, how = talk.verdict()
    back, after = room_recovers(room, tag) if held else (False, "")  # broken already
    reset_all(held_open)
    close_all(room)
    did = (f"one address held {len(held_open)} connections, then opened "
           f"{counts['refused']} more that the chat refused, each sending 4 MiB of empty "
           "messages")
    if len(held_open) > ADDRESS_CONNECTIONS or not counts["refused"]:
        return False, (f"{len(held_open)} connections from one address got in (the chat "
                       f"refused {counts['refused']}): more than the {ADDRESS_CONNECTIONS} "
                       f"the finished chat lets an address hold; {how}")
    if counts["read whole"]:
        return False, (f"{did}, yet it read the whole 4 MiB of {counts['read whole']} of "
                       f"them, megabytes a second for nothing; {how}")
    if not held or not back:
        return False, f"{did}; but {how if not held else after}"
    return True, (f"{did}: it hung up on each before it had read its 4 MiB; {how}")


GOODBYE = bytes(FrameProtocol(client=True, extensions=[]).close(1000))
SMALL_SEND_BUFFER = 16 * 1024  # an attacker's: what it sends waits here, not in memory


def quick_handshake(url):
    """A websocket's handshake by hand, without waiting to see whether a refusal follows:
    the socket, once the response's head has come (a 101 or not)."""
    parts = urlsplit(url)
    s = socket.create_connection((parts.hostname, parts.port or 80), timeout=WAIT)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            s.close()
            raise OSError("the server closed the connection during the handshake")
        head += chunk
    return s


def fill_the_address(url, most):
    """Open websockets from one address until it is refused, or `most` are open. An
    earlier demonstration's connections may still be closing: wait for their places."""
    opened = []
    ready_by = time.monotonic() + WAIT
    with one_address():
        while len(opened) < most:
            try:
                s = raw_client(url)
            except Refused:
                if not opened and time.monotonic() < ready_by:
                    time.sleep(0.1)
                    continue
                break
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_SEND_BUFFER)
            opened.append(s)
    return opened


def reset_all(sockets):
    for s in sockets:
        reset(s)


# In the order the tutorial's steps fix them, but busy and refused (19-reader) last: they
# hold their address's 64 places, and the finished chat counts the connections an
# address opens a second, so swarm and churn, from the same address, would be refused
# right after them.
DEMOS = {"vanish": vanish, "race": race, "stall": stall, "garbage": garbage,
         "flood": flood, "origin": origin, "pause": pause, "crowd": crowd,
         "oversize": oversize, "swarm": swarm, "churn": churn, "spoof": spoof,
         "headers": headers, "busy": busy, "refused": refused}


# The clients.

def new_tag():
    """A word that marks this run's messages, so old ones (the history) don't count."""
    return "run" + base64.b32encode(os.urandom(5)).decode().lower()


def gather(url, count, tag):
    """Connect `count` clients one at a time, each heard by all before the next comes:
    a client that joins while a message goes out can trip a naive server (step 03)."""
    room = []
    for n in range(count):
        room.append(open_client(url))
        call = f"{tag} roll call {n}"
        say(room[-1], call)  # its own handler sends it: the server has it in the room
        if not all(call in texts(collect(ws, tag, until=call)) for ws in room):
            raise Misbehaved("our clients connected and never heard each other")
    return room


def open_client(url):
    return simple_websocket.Client.connect(url, thread_class=DAEMON)


def say(ws, message, name="break_it"):
    ws.send(json.dumps({"name": name, "message": message}))


def chat_line(tag, n, size):
    return f"{tag} {n} " + base64.b64encode(os.urandom(size * 3 // 4)).decode()


def text_of(frame):
    """The message text in a frame, or None for anything else (an error, a notice)."""
    try:
        data = json.loads(frame)
    except (ValueError, TypeError, RecursionError):
        return None
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"]
    return None


def as_dict(frame):
    """A frame's JSON object, or {} for anything else."""
    try:
        data = json.loads(frame)
    except (ValueError, TypeError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def texts(frames):
    return [t for t in map(text_of, frames) if t is not None]


def collect(ws, tag, until=None, until_quiet=False, wait=WAIT, quiet=QUIET):
    """This run's message frames for ws, until `until` arrives, it goes quiet, or time
    is up. Frames from before this run (history, notices) are skipped."""
    frames = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        timeout = quiet if until_quiet else deadline - time.monotonic()
        try:
            frame = ws.receive(timeout=max(0, min(timeout, deadline - time.monotonic())))
        except simple_websocket.ConnectionClosed:
            break
        if frame is None:
            if until_quiet:
                break
            continue
        text = text_of(frame)
        if text is None or not text.startswith(tag):
            continue
        if until is not None and text == until:
            frames.append(frame)
            break
        if " roll call " not in text:
            frames.append(frame)
    return frames


def leaked(ws, until, wait=WAIT):
    """Every frame ws receives until a message `until`: what else reached it?"""
    frames = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            frame = ws.receive(timeout=deadline - time.monotonic())
        except simple_websocket.ConnectionClosed:
            break
        if frame is None:
            break
        frames.append(frame)
        if until is not None and text_of(frame) == until:
            break
    return frames


def looks_like(sent, received):
    """Did the frame we sent come out the other side, as is or re-encoded?"""
    if isinstance(sent, bytes) or isinstance(received, bytes):
        return sent == received
    return received == sent or (len(sent) > 20 and sent[-20:-2] in received)


def count_errors(ws, until=None, wait=2):
    """Error frames ws receives until quiet (or until its message `until`); None if the
    connection closed first."""
    errors = 0
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            frame = ws.receive(timeout=0.5 if until is None else deadline - time.monotonic())
        except simple_websocket.ConnectionClosed:
            return None if until else errors
        if frame is None:
            if until is None:
                break
            continue
        try:
            data = json.loads(frame)
        except (ValueError, TypeError, RecursionError):
            continue
        if isinstance(data, dict) and "error" in data:
            errors += 1
        elif until is not None and text_of(frame) == until:
            return errors
    return errors if until is None else None


def wait_for_close(ws):
    """The close code, if the server closes ws within WAIT s; else None."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            ws.receive(timeout=deadline - time.monotonic())
        except simple_websocket.ConnectionClosed:
            return ws.close_reason
    return None


def room_still_talks(speaker, listeners, tag):
    line = f"{tag} still here?"
    try:
        say(speaker, line)
    except simple_websocket.ConnectionClosed:
        return False
    return all(line in texts(collect(ws, tag, until=line)) for ws in listeners)


def send_together(lines_of):
    """Each client sends its lines from a thread of its own, all at once; the number sent."""
    counts = [send_in_background(ws, lines, wait=False) for ws, lines in lines_of.items()]
    deadline = time.monotonic() + WAIT * 2
    for thread, _ in counts:
        thread.join(max(0, deadline - time.monotonic()))
    return sum(sent[0] for _, sent in counts)


def send_in_background(ws, lines, wait=True):
    """Send lines from a thread of their own: a frozen server may never take them all.
    Returns a one-item list, the number sent so far."""
    sent = [0]

    def send_all():
        for line in lines:
            try:
                say(ws, line)
            except (OSError, simple_websocket.ConnectionClosed):
                return
            sent[0] += 1

    thread = threading.Thread(target=send_all, daemon=True)
    thread.start()
    if not wait:
        return thread, sent
    thread.join(WAIT * 2)
    return sent


def send_numbered(url, tag, s, count, opened):
    ws = open_client(url)
    opened.append(ws)
    try:
        for n in range(count):
            say(ws, f"{tag} s{s} {n}")
            time.sleep(0.005)
    except simple_websocket.ConnectionClosed:
        pass  # cut off: the watchers will miss the rest


def close_all(clients):
    for ws in clients:
        try:
            ws.close()
        except (OSError, simple_websocket.ConnectionClosed):
            pass


class Refused(OSError):
    """The chat refused a websocket: a handshake answered with something other than 101,
    or accepted and closed at once with 1013 (Try Again Later)."""


def raw_client(url, receive_buffer=None):
    """A websocket client that does the handshake and nothing else, on a bare socket."""
    s, status, answer = raw_handshake(url, receive_buffer)
    if status != 101:
        s.close()
        raise Refused(f"the server refused the websocket: {status} {answer}")
    return s


def raw_handshake(url, receive_buffer=None, origin=None):
    """Ask for a websocket by hand: (the socket, the status, the reason given if refused)."""
    parts = urlsplit(url)
    s = socket.socket()
    if receive_buffer:  # a small one fills up soon, like a phone's on a bad line
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    s.settimeout(WAIT)
    s.connect((parts.hostname, parts.port or 80))
    key = base64.b64encode(os.urandom(16)).decode()
    page = f"Origin: {origin}\r\n" if origin else ""  # a browser names the page's site
    s.sendall((f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
               "Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{page}\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise OSError("the server closed the connection during the handshake")
        head += chunk
    status = int(head.split()[1])
    if status == 101:
        return (s, *refusal_after_accepting(s))
    length = next((int(line.split(b":")[1]) for line in head.lower().splitlines()
                   if line.startswith(b"content-length:")), 0)
    body = b""
    while len(body) < length:
        chunk = s.recv(length - len(body))
        if not chunk:
            break
        body += chunk
    return s, status, body.decode(errors="replace").strip()


def refusal_after_accepting(s):
    """(1013, the reason) if the chat closes the websocket at once with Try Again Later,
    which is how a chat refuses in words that a browser lets its page read; else (101, "")."""
    s.settimeout(REFUSAL_WAIT)
    try:
        head = s.recv(2, socket.MSG_PEEK)
    except socket.timeout:
        head = b""  # nothing yet: an empty room's welcome
    finally:
        s.settimeout(WAIT)
    if head[:1] != b"\x88" or len(head) < 2 or head[1] >= 126:
        return 101, ""
    frame = b""
    while len(frame) < 2 + head[1]:
        chunk = s.recv(2 + head[1] - len(frame))
        if not chunk:
            break
        frame += chunk
    code = int.from_bytes(frame[2:4], "big") if len(frame) >= 4 else 1005
    return code, frame[4:].decode(errors="replace")


def close_code(s, wait=WAIT * 4):
    """The code of the close frame the chat sends on a raw socket within `wait` s (it
    may read slowly), or None if it sends none."""
    parser = FrameProtocol(client=True, extensions=[])
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = s.recv(65536)
        except OSError:  # timed out, or reset
            return None
        if not data:
            return None
        parser.receive_bytes(data)
        try:
            for frame in parser.received_frames():
                if frame.opcode is Opcode.CLOSE:
                    return frame.payload[0]
        except ParseFailed:
            return None
    return None


def close_all_raw(sockets):
    for s in sockets:
        s.close()


def wait_for_raw_roll_call(speaker, raw_sockets, tag):
    """Wait until every raw socket has been sent a roll call: the server has them all.
    Returns what each of them received meanwhile."""
    received = [b"" for _ in raw_sockets]
    for attempt in range(5):
        call = f"{tag} raw roll call {attempt}".encode()
        say(speaker, call.decode())
        for n, s in enumerate(raw_sockets):
            received[n] += raw_read(s, until=call, wait=1)[0]
        if all(call in data for data in received):
            return received
    raise Misbehaved("our plain-socket clients never joined the room")


def raw_say(s, message, name="break_it"):
    """Say something on a raw socket: a client's frame, masked as RFC 6455 wants."""
    frame = json.dumps({"name": name, "message": message})
    s.sendall(FrameProtocol(client=True, extensions=[])
              .send_data(frame))


def raw_read(s, until=None, wait=WAIT, quiet=QUIET):
    """The bytes a raw socket receives until `until` is among them, nothing comes for
    `quiet` s, or `wait` s pass; and whether the server hung up meanwhile."""
    data = b""
    deadline = time.monotonic() + wait
    while (until is None or until not in data) and time.monotonic() < deadline:
        left = deadline - time.monotonic()
        s.settimeout(max(0.01, left if until else min(quiet, left)))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except OSError:  # reset
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def raw_heard(s, text, wait=1):
    return text.encode() in raw_read(s, until=text.encode(), wait=wait)[0]


def whole_messages(data):
    """The text messages in the bytes a raw client received, and what broke the stream,
    if anything did (a wsproto ParseFailed, with the close code a browser would use)."""
    parser = FrameProtocol(client=True, extensions=[])
    parser.receive_bytes(data)
    messages, text = [], ""
    try:
        for frame in parser.received_frames():
            if frame.opcode in (Opcode.TEXT, Opcode.CONTINUATION):
                text += frame.payload
                if frame.message_finished:
                    messages.append(text)
                    text = ""
    except ParseFailed as failure:
        return messages, failure
    return messages, None


def cut_frame(data):
    """The first frame in a server's bytes that stops short with the next frame's start
    inside it: (how many of its bytes came, how many it said it had), or None."""
    at = 0
    while at + 2 <= len(data):
        size, start = data[at + 1] & 0x7F, at + 2
        if size == 126:
            size, start = int.from_bytes(data[at + 2:at + 4], "big"), at + 4
        elif size == 127:
            size, start = int.from_bytes(data[at + 2:at + 10], "big"), at + 10
        payload = data[start:start + size]
        # A text frame of ours: 0x81, its length (7 or 7+16 bits), then '{"'.
        inside = re.search(rb'\x81(?:\x7e..|[\x02-\x7d])\{"', payload, re.DOTALL)
        if inside and data[at] == 0x81:
            return inside.start(), size
        at = start + size
    return None


def reset(s):
    """Close a socket with a TCP reset: it wakes a server blocked sending to it."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


if __name__ == "__main__":
    main()
