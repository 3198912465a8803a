"""Tests of the Redis bridge: a real redis-server and two chat processes, all on loopback."""
import importlib.util
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import simple_websocket

from test_app import (TIMEOUT, assert_nothing_arrives, close, receive, receive_until, say,
                      send_numbered, wait_until)

HERE = Path(__file__).parent
RECOVERY_LIMIT = 20  # seconds chat may take to work again once Redis is back
NOT_DELIVERED = {"error": "The message could not be delivered; try again in a moment."}
# One chat process on a free port of 127.0.0.1, which it prints, as `flask run` serves it.
SERVE = ("import app, werkzeug.serving as serving; "
         "httpd = serving.make_server('127.0.0.1', 0, app.app, threaded=True); "
         "print(httpd.server_port, flush=True); httpd.serve_forever()")


def test_without_redis_url_redis_is_not_even_imported():
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    code = ("import sys, app; print(sorted(name for name in sys.modules "
            "if name.split('.')[0] in ('redis', 'redis_bridge')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=HERE, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def missing_redis():
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (apt-get install redis-server)"
    if importlib.util.find_spec("redis") is None:
        return "the redis package is not installed (pip install -r requirements-redis.txt)"
    return None


class RedisServer:
    """A redis-server of our own, which a test may stop and start again on its port."""

    def __init__(self, directory):
        self.directory = directory
        with socket.socket() as s:  # a free port: Redis cannot pick one and tell us
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.answers)

    def answers(self):
        import redis
        try:
            return redis.Redis(port=self.port, socket_timeout=1).ping()
        except redis.ConnectionError:
            return False

    def stop(self):
        self.process.kill()  # an outage, not a goodbye
        self.process.wait(TIMEOUT)

    def subscribers(self):
        import redis
        import redis_bridge
        client = redis.Redis(port=self.port, socket_timeout=1)
        return client.pubsub_numsub(redis_bridge.CHANNEL)[0][1]


@pytest.fixture
def redis_server(tmp_path):
    reason = missing_redis()
    if reason:
        pytest.skip(reason)
    server = RedisServer(tmp_path)
    yield server
    server.stop()


@pytest.fixture
def chats(redis_server, tmp_path):
    """Two chat processes sharing redis_server; their addresses."""
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0"}
    logs = [tmp_path / f"chat{i}.log" for i in range(2)]
    processes = [subprocess.Popen([sys.executable, "-c", SERVE], cwd=HERE, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=log.open("w"))
                 for log in logs]
    try:
        addresses = [f"127.0.0.1:{printed_port(process)}" for process in processes]
        wait_until(lambda: redis_server.subscribers() == 2)  # both listen to the channel
        yield addresses
        assert [process.poll() for process in processes] == [None, None], "a process died"
    finally:
        for process in processes:
            process.kill()
            process.wait(TIMEOUT)
    for log in logs:  # nothing crashed in any thread
        assert "Traceback" not in log.read_text(), log.read_text()


def printed_port(process):
    ready, _, _ = select.select([process.stdout], [], [], 30)  # importing Flask can be slow
    assert ready, "the chat process did not start"
    return int(process.stdout.readline())


def connect(address):
    return simple_websocket.Client.connect(f"ws://{address}/ws")


def all_listening(clients):
    """Return once every client is in the room: it sees a message sent after it."""
    say(clients[0], "start")
    for ws in clients:
        receive_until(ws, "start")


def receive_messages(ws, count):
    return [receive(ws)["message"] for _ in range(count)]


def start_senders(addresses, senders, count):
    """Threads sending `count` numbered messages each, through every address in turn."""
    threads = [threading.Thread(target=send_numbered,
                                args=(addresses[i % len(addresses)], i, count, f"s{i}"))
               for i in range(senders)]
    for thread in threads:
        thread.start()
    return threads


def test_a_message_reaches_the_clients_of_both_processes(chats):
    a, b = chats
    ada, bob, carol = connect(a), connect(b), connect(b)
    say(ada, "hello")
    for ws in (ada, bob, carol):
        assert receive(ws) == {"name": "Ada", "message": "hello"}  # and no number
    say(bob, "hi", name="Bob")
    for ws in (ada, bob, carol):
        assert receive(ws) == {"name": "Bob", "message": "hi"}
    assert_nothing_arrives(ada)
    for ws in (ada, bob, carol):
        close(ws)


def test_concurrent_senders_on_both_processes_are_seen_in_one_order(chats):
    watchers = [connect(address) for address in chats for _ in range(2)]
    all_listening(watchers)
    for thread in start_senders(chats, 6, 15):
        thread.join(TIMEOUT)
    seen = [receive_messages(ws, 6 * 15) for ws in watchers]
    assert all(order == seen[0] for order in seen)
    for i in range(6):  # and each sender's messages stay in the order it sent them
        assert [m for m in seen[0] if m.startswith(f"s{i} ")] == [f"s{i} {n}" for n in range(15)]
    for ws in watchers:
        assert_nothing_arrives(ws)
        close(ws)


def test_a_newcomer_on_either_process_gets_the_same_last_ten(chats):
    a, b = chats
    ada, bob = connect(a), connect(b)
    for n in range(12):  # from both processes, each received everywhere before the next
        say(ada if n % 2 else bob, f"message {n}")
        assert receive(ada)["message"] == receive(bob)["message"] == f"message {n}"
    for address in chats:
        carol = connect(address)
        assert receive_messages(carol, 10) == [f"message {n}" for n in range(2, 12)]
        assert_nothing_arrives(carol)
        close(carol)
    close(ada)
    close(bob)


def test_newcomers_on_both_processes_during_a_burst_get_no_gap_and_no_duplicate(chats):
    watcher = connect(chats[0])
    all_listening([watcher])
    senders = start_senders(chats, 4, 20)
    newcomers = []
    for n in range(6):
        time.sleep(0.02)
        newcomers.append(connect(chats[n % 2]))
    for thread in senders:
        thread.join(TIMEOUT)
    everything = ["start"] + receive_messages(watcher, 4 * 20)
    for ws in newcomers:
        seen = receive_until(ws, everything[-1])
        start = everything.index(seen[0])
        assert seen == everything[start:], "a gap, a duplicate or another order"
        assert len(seen) >= 10
        assert_nothing_arrives(ws)
        close(ws)
    close(watcher)


def page_is_served(address):
    with urllib.request.urlopen(f"http://{address}/", timeout=TIMEOUT) as response:
        return 'id="messages"' in response.read().decode()


def test_an_outage_keeps_the_chat_up_and_it_recovers_by_itself(chats, redis_server):
    a, b = chats
    ada, bob = connect(a), connect(b)
    say(ada, "before")
    assert receive(ada) == receive(bob) == {"name": "Ada", "message": "before"}

    redis_server.stop()
    assert all(page_is_served(address) for address in chats)
    say(ada, "lost")
    assert receive(ada) == NOT_DELIVERED  # to the sender only, who stays connected
    assert_nothing_arrives(bob)
    carol = connect(b)  # a newcomer is still let in, and shown what this process knows
    assert receive(carol)["message"] == "before"

    redis_server.start()
    deadline = time.monotonic() + RECOVERY_LIMIT
    for n in range(1000):  # ada tries again now and then, as the error frame says
        say(ada, f"again {n}")
        reply = receive(ada)
        if reply != NOT_DELIVERED:
            break
        assert time.monotonic() < deadline, "the chat did not recover"
        time.sleep(0.25)  # within the rate limit
    for ws in (ada, bob, carol):  # one got through, and everyone sees it
        assert (reply if ws is ada else receive(ws)) == {"name": "Ada", "message": f"again {n}"}
    say(bob, "and back", name="Bob")
    for ws in (ada, bob, carol):
        assert receive(ws) == {"name": "Bob", "message": "and back"}
        close(ws)
