"""How many people can the chat hold, how fast is it, and how does it compare?

    pip install -r bench/requirements-bench.txt
    python bench/bench.py            # the full run: about 11 minutes on two cores
    python bench/bench.py --quick    # about 6 minutes: smaller numbers, same scenarios
    python bench/bench.py --only card,hardened,relay --scenarios burst,rate
    python bench/bench.py --sweep    # only the sweep of idle clients

Starts each server in its own process on a free loopback port and drives it from this one
asyncio process with many websocket clients that behave like browsers: they offer
permessage-deflate and never stop reading (`max_queue=None`: a page's onmessage queue has
no limit, so a browser never pushes back on the server). The servers, in one run:

    card             the card's chat, the top-level app.py, under `flask run`, as a learner
                     runs it, with its limits as they are (every client sends within them)
    hardened         the hardened chat, hardened/, under `flask --app hardened run`, with
                     the limits it shares among one address's connections lifted
    naive            peers/naive_flask_sock.py: a set, a lock, ws.send() in the loop
    sio-threading    peers/socketio_threading.py: Flask-SocketIO, async_mode="threading"
    sio-gevent       peers/socketio_gevent.py: Flask-SocketIO on gevent, as its docs advise
    relay            peers/relay.py: a plain asyncio relay on the `websockets` library

Every frame received must be whole and valid; the bench counts corrupt frames and
connections closed abnormally. It prints markdown tables ready for docs/performance.md, each
chat's targets with met/MISSED, and (full run) draws the sweep to docs/bench-sweep.png.

The card's chat has three targets: no delivery lost, no corrupt frame, and a stuck reader
isolated (the healthy clients' p99 within 1.5x of the calm phase); its other figures are
printed as they are. The hardened chat has the targets of docs/performance.md.
"""
import argparse
import asyncio
import base64
import contextlib
import importlib.util
import json
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)  # where app.py and hardened/ are, and flask runs
PEERS = os.path.join(HERE, "peers")
CONNECT_BATCH = 100     # Werkzeug listens with a backlog of 128: connect fewer at once
OPEN_FILES = 20_000     # one socket per client, on both sides of the loopback
WAIT = 60               # seconds any one wait may take before the bench gives up
STALL = 20              # seconds without a single delivery: the server is stuck, move on
BUSY = 0.85             # of one core: the load generator, not the server, is the limit
TICKS = os.sysconf("SC_CLK_TCK")  # units of the CPU times in /proc/<pid>/stat

FULL = {"burst_clients": 100, "burst_messages": 15,
        # Every client stays under the card's limits: a burst of 15 (RATE_BURST 20), then
        # 2 and 4 messages a second (RATE_PER_SECOND 5), of at most 1,000 characters.
        "rate_clients": 200, "rate_senders": 50, "rate_per_second": 2, "rate_seconds": 10,
        # 50 healthy clients, all sending 1 KB 4 times a second: 6,000 messages, 6 MB
        # toward the stuck one in 30 s; far more than the kernel's buffers absorb.
        "stuck_healthy": 50, "stuck_calm_seconds": 10, "stuck_seconds": 30,
        "sweep": (250, 500, 1000, 2000, 5000)}
QUICK = {**FULL, "burst_clients": 50, "rate_seconds": 4,
         "stuck_calm_seconds": 4,  # the stuck phase stays: less, and the kernel absorbs it
         "sweep": (250, 500, 1000)}
SCENARIOS = ("burst", "rate", "stuck", "sweep")
NOISE_BYTES = 735  # the stuck reader's messages: 980 characters, the card takes 1,000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, about 6 minutes")
    parser.add_argument("--only", default=",".join(SERVERS), metavar="SERVERS",
                        help=f"comma-separated, of: {', '.join(SERVERS)}")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), metavar="NAMES",
                        help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--sweep", action="store_true", help="only the sweep of idle clients")
    parser.add_argument("--sizes", metavar="N,N,..", help="the sweep's sizes, e.g. 250,500")
    parser.add_argument("--picture", metavar="PNG",
                        help="draw the sweep here (default, full run: docs/bench-sweep.png)")
    parser.add_argument("--app", default=os.path.join(PROJECT, "hardened"),
                        help="the chat to measure as 'hardened' (default: hardened/)")
    args = parser.parse_args()
    sizes = dict(QUICK if args.quick else FULL)
    if args.sizes:
        sizes["sweep"] = tuple(int(n) for n in args.sizes.split(","))
    scenarios = ["sweep"] if args.sweep else args.scenarios.split(",")
    servers = args.only.split(",")
    for name in servers + scenarios:
        if name not in SERVERS and name not in SCENARIOS:
            parser.error(f"unknown server or scenario: {name}")
    picture = args.picture or (None if args.quick or args.sizes
                               else os.path.join(PROJECT, "docs", "bench-sweep.png"))
    SERVERS["hardened"]["command"] = flask_run_hardened(os.path.abspath(args.app))
    raise_open_files_limit()

    started = time.monotonic()
    results = {}
    for name in servers:
        missing = missing_modules(SERVERS[name]["needs"])
        if missing:
            progress(name, f"skipped: needs {', '.join(missing)} "
                           "(pip install -r bench/requirements-bench.txt)")
            continue
        results[name] = {}
        # The scenarios share one server process; the sweep gets a fresh one, so that its
        # memory is not what the earlier scenarios left behind.
        together = [s for s in scenarios if s != "sweep"]
        if together:
            with running(name) as (port, pid):
                measured = asyncio.run(run_scenarios(name, port, pid, together, sizes))
                results[name].update(measured)
        if "sweep" in scenarios:
            with running(name) as (port, pid):
                results[name]["sweep"] = asyncio.run(sweep(name, port, pid, sizes["sweep"]))
    progress("all", f"done in {time.monotonic() - started:.0f} s")
    print_report(results, sizes)
    if picture and any(r.get("sweep") for r in results.values()):
        draw_sweep(results, picture)


def raise_open_files_limit():
    """Thousands of sockets need thousands of descriptors; the servers inherit ours."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def progress(server, text):
    print(f"[{time.strftime('%H:%M:%S')}] {server:13} {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the servers

def flask_run(app):
    return [sys.executable, "-m", "flask", "--app", app, "run",
            "--host", "127.0.0.1", "--port", "{port}"]


# The card's chat as a learner starts it: `flask run` in the folder of app.py, which finds
# app.py and its create_app() by itself (FLASK_APP is removed from the environment).
CARD_RUN = [sys.executable, "-m", "flask", "run", "--host", "127.0.0.1", "--port", "{port}"]

# Every bench client comes from 127.0.0.1, where a real room's come from many addresses:
# lift the limits hardened/safeguards/limits.py shares among one address's connections (the
# per-connection limits in hardened/chat.py stay), then start `flask run` as the command line
# would.
HARDENED_RUN = ("import sys; from hardened.safeguards import limits; "
                "limits.CONNECTIONS_PER_ADDRESS = limits.MESSAGES_BURST = 10**9; "
                "limits.CONNECTS_BURST = 10**9; "
                "limits.READ_BYTES_BURST = 10**12; "
                "from flask.cli import main; sys.argv[0] = 'flask'; main()")


def flask_run_hardened(app):
    return [sys.executable, "-c", HARDENED_RUN, *flask_run(app)[3:]]


SERVERS = {
    "card": {"label": "card's chat (flask run)", "protocol": "plain", "needs": ["flask_sock"],
             "command": CARD_RUN},
    "hardened": {"label": "hardened chat (flask run)", "protocol": "plain",
                 "needs": ["flask_sock"],
                 "command": None},  # flask_run_hardened(--app), set in main()
    "naive": {"label": "naive flask-sock (flask run)", "protocol": "plain",
              "needs": ["flask_sock"], "app": os.path.join(PEERS, "naive_flask_sock.py")},
    "sio-threading": {"label": "Flask-SocketIO threading (flask run)", "protocol": "socketio",
                      "needs": ["flask_socketio", "simple_websocket"],
                      "app": os.path.join(PEERS, "socketio_threading.py")},
    "sio-gevent": {"label": "Flask-SocketIO gevent", "protocol": "socketio",
                   "needs": ["flask_socketio", "gevent", "geventwebsocket"],
                   "command": [sys.executable, os.path.join(PEERS, "socketio_gevent.py"),
                               "{port}"]},
    "relay": {"label": "websockets relay (asyncio)", "protocol": "plain",
              "needs": ["websockets"],
              "command": [sys.executable, os.path.join(PEERS, "relay.py"), "{port}"]},
}


def missing_modules(modules):
    return [m for m in modules if importlib.util.find_spec(m) is None]


@contextlib.contextmanager
def running(name):
    """Start a server in its own process on a free port; yield (port, pid); stop it."""
    server = SERVERS[name]
    port = free_port()
    command = server.get("command") or flask_run(server["app"])
    command = [part.replace("{port}", str(port)) for part in command]
    # Its log, thousands of join lines, goes to a file, kept if it holds errors.
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
    env = {k: v for k, v in os.environ.items() if k != "FLASK_APP"}  # card: app.py
    process = subprocess.Popen(command, cwd=PROJECT, env={**env, "FLASK_DEBUG": "0"},
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        progress(name, f"listening on 127.0.0.1:{port}, pid {process.pid}")
        yield port, process.pid
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.seek(0)
        errors = [line for line in log.read().decode(errors="replace").splitlines()
                  if "Traceback" in line or "ERROR" in line]
        log.close()
        if errors:
            progress(name, f"{len(errors)} errors in its log: see {log.name}")
        else:
            os.remove(log.name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, process):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the server exited with code {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("the server did not start listening in time")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def own_cpu_seconds():
    times = os.times()
    return times.user + times.system


def memory_and_threads(pid):
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f)
    return int(status["VmRSS"].split()[0]) * 1024, int(status["Threads"])


class Meter:
    """CPU used by the server and by this load generator, over wall time."""

    def __init__(self, pid):
        self.pid = pid
        self.server, self.own = cpu_seconds(pid), own_cpu_seconds()
        self.wall = time.perf_counter()

    def read(self, server, end=None):
        wall = (end or time.perf_counter()) - self.wall
        used = {"server": cpu_seconds(self.pid) - self.server,
                "bench": own_cpu_seconds() - self.own}
        busy = used["bench"] / wall
        if busy >= BUSY:
            progress(server, f"WARNING: the load generator used {busy:.0%} of a core: "
                             "it, not the server, may be the limit here")
        return used, {"server CPU %": used["server"] / wall * 100, "bench CPU %": busy * 100}


# ---------------------------------------------------------------- the two protocols

class Plain:
    """the card's chat, the hardened one, naive and the relay: one JSON object a frame."""
    path = "/ws"

    @staticmethod
    async def start(ws):
        pass

    @staticmethod
    def pack(data):
        return json.dumps(data)

    @staticmethod
    def unpack(ws, frame):
        data = json.loads(frame)  # raises ValueError on a corrupt frame
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return data


class SocketIO:
    """Engine.IO 4 over a raw websocket: open "0{..}", connect "40", event "42[..]"."""
    path = "/socket.io/?EIO=4&transport=websocket"

    @staticmethod
    async def start(ws):
        opened = await asyncio.wait_for(ws.recv(), WAIT)
        if not opened.startswith("0{"):
            raise ValueError(f"no Engine.IO open packet: {opened[:40]!r}")
        await ws.send("40")
        joined = await asyncio.wait_for(ws.recv(), WAIT)  # so no message slips before it
        if not joined.startswith("40"):
            raise ValueError(f"no Socket.IO connect packet: {joined[:40]!r}")

    @staticmethod
    def pack(data):
        return "42" + json.dumps(["message", data])

    @staticmethod
    def unpack(ws, frame):
        if frame == "2":  # the server's ping: answer, or it hangs up
            asyncio.ensure_future(ws.send("3"))
            return None
        if frame.startswith("42"):
            event = json.loads(frame[2:])
            if not (isinstance(event, list) and len(event) == 2
                    and event[0] == "message" and isinstance(event[1], dict)):
                raise ValueError("not a message event")
            return event[1]
        if frame[:2] in ("40", "41", "44") or frame[:1] in ("0", "1", "6"):
            return None  # connect, disconnect, error, open, close, noop
        raise ValueError("not an Engine.IO packet")


PROTOCOLS = {"plain": Plain, "socketio": SocketIO}


# ---------------------------------------------------------------- clients

class Tally:
    """Counts the frames of one scenario that reach the listening clients."""

    def __init__(self, tag, expected):
        self.tag, self.expected = tag, expected
        self.latencies, self.errors, self.last = [], 0, None
        self.done = asyncio.Event()

    def record(self, data, now):
        if "error" in data:
            self.errors += 1
        if data.get("name") != self.tag:
            return  # history or an earlier scenario's stragglers
        self.latencies.append(now - float(data["message"].split()[0]))
        self.last = now
        if len(self.latencies) >= self.expected:
            self.done.set()

    async def wait(self, server, what, began):
        """Until all arrived, or none arrived for STALL s, or WAIT s passed since began."""
        seen, since = 0, time.perf_counter()
        while not self.done.is_set():
            now = time.perf_counter()
            if len(self.latencies) > seen:
                seen, since = len(self.latencies), now
            if now - since > STALL or now - began > WAIT + STALL:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.done.wait(), 0.5)
        got = len(self.latencies)
        lost = self.expected - got
        ended = "" if not lost else (
            f", {lost:,} LOST: nothing delivered in {time.perf_counter() - began:.0f} s"
            if not got else f", {lost:,} LOST: none for {STALL} s")
        progress(server, f"{what}: {got:,} of {self.expected:,} delivered{ended}"
                 + (f", {self.errors} error frames" if self.errors else ""))
        return lost


class Health:
    """Frames that were not whole and valid, connections that ended without a goodbye, and
    messages the server refused in words (the card's rate limit, say)."""

    def __init__(self):
        self.corrupt, self.abnormal, self.refused, self.closing = 0, 0, 0, set()


current = Tally(None, 0)  # the scenario the listening clients report to
health = Health()


async def listen(ws, protocol):
    try:
        async for frame in ws:
            try:
                if not isinstance(frame, str):
                    raise ValueError("a binary frame")
                data = protocol.unpack(ws, frame)
            except (ValueError, KeyError, IndexError):
                health.corrupt += 1
                continue
            if data is not None:
                health.refused += "error" in data
                current.record(data, time.perf_counter())
    except ConnectionClosedOK:
        pass
    except Exception:  # a bad frame, a reset, 1006: not how a healthy chat ends
        if ws not in health.closing:
            health.abnormal += 1


async def open_clients(server, port, count, already=0):
    """Connect in batches, as the server's listen backlog allows, and listen on each."""
    protocol = PROTOCOLS[SERVERS[server]["protocol"]]
    clients = []

    async def one():
        # compression="deflate" offers permessage-deflate, as browsers do; max_queue=None
        # never stops reading, as browsers never do.
        ws = await connect(f"ws://127.0.0.1:{port}{protocol.path}", compression="deflate",
                           max_queue=None, ping_interval=None, open_timeout=WAIT,
                           close_timeout=2, max_size=None)
        await protocol.start(ws)
        return ws

    while len(clients) < count:
        batch = min(CONNECT_BATCH, count - len(clients))
        clients += await asyncio.wait_for(asyncio.gather(*(one() for _ in range(batch))), WAIT)
        if (already + len(clients)) % 1000 == 0 or len(clients) == count:
            progress(server, f"{already + len(clients):,} clients connected")
    for ws in clients:
        asyncio.ensure_future(listen(ws, protocol))
    await asyncio.sleep(0.5)  # the server registers each one and sends it the history
    return clients


async def close_clients(clients):
    health.closing.update(clients)
    for start in range(0, len(clients), CONNECT_BATCH):
        await asyncio.gather(*(ws.close() for ws in clients[start:start + CONNECT_BATCH]))


def abort_clients(clients):
    health.closing.update(clients)
    for ws in clients:
        ws.transport.abort()


def say(server, ws, tag, text=""):
    protocol = PROTOCOLS[SERVERS[server]["protocol"]]
    return ws.send(protocol.pack({"name": tag,
                                  "message": f"{time.perf_counter():.6f} {text}".strip()}))


def percentiles(latencies):
    ordered = sorted(latencies) or [float("nan")]
    return {"p50": ordered[len(ordered) // 2], "p99": ordered[int(len(ordered) * 0.99)],
            "max": ordered[-1]}


# ---------------------------------------------------------------- scenarios

async def run_scenarios(server, port, pid, scenarios, sizes):
    global health
    health = Health()
    result = {}
    # The stuck reader comes last: a chat that freezes stays frozen.
    for name, scenario in (("burst", burst), ("rate", chat_rate), ("stuck", stuck_reader)):
        if name in scenarios:
            result.update(await scenario(server, port, pid, sizes))
    result["corrupt frames"] = health.corrupt
    result["closed abnormally"] = health.abnormal
    result["refused (error frames)"] = health.refused
    if health.corrupt or health.abnormal:
        progress(server, f"{health.corrupt} corrupt frames, "
                         f"{health.abnormal} connections closed abnormally")
    return result


async def burst(server, port, pid, sizes):
    """Everyone sends a burst at once: how fast does the server fan it out?"""
    global current
    n, each = sizes["burst_clients"], sizes["burst_messages"]
    clients = await open_clients(server, port, n)
    current = Tally("burst", n * each * n)
    meter = Meter(pid)
    start = time.perf_counter()
    await asyncio.gather(*(say(server, ws, "burst") for ws in clients for _ in range(each)))
    lost = await current.wait(server, f"burst of {n} x {each}", start)
    delivered = len(current.latencies)
    used, busy = meter.read(server, current.last)
    await close_clients(clients)
    return {"burst deliveries/s": delivered / ((current.last or start + 1) - start),
            "burst CPU µs/delivery": used["server"] / max(delivered, 1) * 1e6,
            "burst bench CPU µs/delivery": used["bench"] / max(delivered, 1) * 1e6,
            **{f"burst {k}": v for k, v in busy.items()},
            **{f"burst latency {k}": v for k, v in percentiles(current.latencies).items()},
            "burst lost": lost}


async def chat_rate(server, port, pid, sizes):
    """A busy room at a steady pace: how long does each message take to arrive?"""
    global current
    n, senders = sizes["rate_clients"], sizes["rate_senders"]
    rate, seconds = sizes["rate_per_second"], sizes["rate_seconds"]
    clients = await open_clients(server, port, n)
    current = Tally("rate", senders * rate * seconds * n)
    progress(server, f"chat rate: {senders} of {n} clients send {rate}/s for {seconds} s")
    meter = Meter(pid)
    start = time.perf_counter() + 0.1
    await send_for(server, clients[:senders], "rate", start, rate, seconds)
    lost = await current.wait(server, "chat rate", start)
    used, busy = meter.read(server)
    await close_clients(clients)
    delivered = len(current.latencies)
    return {"chat-rate CPU µs/delivery": used["server"] / max(delivered, 1) * 1e6,
            **{f"chat-rate {k}": v for k, v in busy.items()},
            **{f"chat-rate latency {k}": v
               for k, v in percentiles(current.latencies).items()},
            "chat-rate lost": lost}


async def send_for(server, senders, tag, start, rate, seconds, text=""):
    """Each sender sends rate a second for seconds; bounded, in case the server froze."""
    async def steadily(ws, first):
        for k in range(rate * seconds):
            await asyncio.sleep(max(0, first + k / rate - time.perf_counter()))
            await say(server, ws, tag, text)

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(
            steadily(ws, start + random.random() / rate) for ws in senders)), seconds + WAIT)


async def stuck_reader(server, port, pid, sizes):
    """One client stops reading while megabytes head its way: do the others notice?"""
    global current
    n = sizes["stuck_healthy"]
    rate = 4  # 1 KB messages, under the card's 5 a second
    noise = base64.b64encode(os.urandom(NOISE_BYTES)).decode()  # does not compress
    clients = await open_clients(server, port, n)
    result = {}
    for phase, seconds in (("calm", sizes["stuck_calm_seconds"]),
                           ("stuck", sizes["stuck_seconds"])):
        stuck = stuck_client(port, SERVERS[server]["protocol"]) if phase == "stuck" else None
        await asyncio.sleep(0.5 if stuck else 0)
        current = Tally(phase, n * rate * seconds * n)
        megabytes = n * rate * seconds * (len(noise) + 50) / 1e6
        progress(server, f"stuck reader, {phase}: all {n} healthy clients send 1 KB {rate}/s "
                         f"for {seconds} s" + (f": {megabytes:.1f} MB toward one that never "
                                               "reads" if stuck else ""))
        start = time.perf_counter() + 0.1
        await send_for(server, clients, phase, start, rate, seconds, noise)
        lost = await current.wait(server, f"stuck reader, {phase}", start)
        result.update({f"stuck-reader {phase} latency {k}": v
                       for k, v in percentiles(current.latencies).items() if k != "max"})
        result[f"stuck-reader {phase} lost"] = lost
        if stuck:
            result["stuck-reader MB toward the stuck client"] = megabytes
            result["stuck-reader stuck client cut off"] = await cut_off(stuck)
    abort_clients(clients)  # a frozen server would never answer a goodbye
    return result


def stuck_client(port, protocol):
    """A client that completes the handshake (and Socket.IO's) and never reads again."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(WAIT)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {PROTOCOLS[protocol].path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += s.recv(1)
    if protocol == "socketio":
        s.recv(4096)  # the open packet, a small frame
        s.sendall(masked_text_frame(b"40"))
    return s


def masked_text_frame(payload):
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


async def cut_off(stuck):
    """Read what is waiting (a few seconds at most): did the server end the connection?"""
    def drain():
        stuck.settimeout(1)
        deadline = time.monotonic() + 5
        try:
            while time.monotonic() < deadline:
                if not stuck.recv(1 << 20):
                    return "yes"
        except socket.timeout:
            return "no"
        except OSError:
            return "yes"  # reset
        finally:
            stuck.close()
        return "no"
    return await asyncio.to_thread(drain)


async def sweep(server, port, pid, steps):
    """Ever more idle clients; at each size, one message must reach them all."""
    global current, health
    health = Health()
    result, clients = {}, []
    idle_rss, _ = memory_and_threads(pid)
    for step in steps:
        try:
            clients += await open_clients(server, port, step - len(clients), len(clients))
        except Exception as error:
            result[step] = {"failed": f"could not connect {step:,} within {WAIT} s "
                                      f"({type(error).__name__})"}
            progress(server, f"sweep {step:,}: {result[step]['failed']}")
            break
        await asyncio.sleep(1)  # history and greetings settle
        rss, threads = memory_and_threads(pid)
        current = Tally(f"sweep {step}", step)
        start = time.perf_counter()
        await say(server, clients[0], current.tag)
        lost = await current.wait(server, f"sweep, one message to {step:,}", start)
        result[step] = {"slowest": max(current.latencies, default=None), "lost": lost,
                        "rss": rss, "per client": (rss - idle_rss) / step,
                        "threads": threads}
        if lost:
            got = step - lost
            waited = time.perf_counter() - start
            result[step]["failed"] = (f"delivered nothing in {waited:.0f} s" if not got
                                      else f"{lost:,} of {step:,} never delivered")
            break  # a bigger room would only take longer to fail
    abort_clients(clients)  # the server stops next: no need to say goodbye to each
    result["corrupt frames"] = health.corrupt
    result["closed abnormally"] = health.abnormal
    return result


# ---------------------------------------------------------------- the report

def print_report(results, sizes):
    names = list(results)
    print_scenarios(results, names)
    print_sweep(results, names, sizes)
    print_targets(results)


def print_scenarios(results, names):
    metrics = []
    for name in names:
        metrics += [m for m in results[name] if m != "sweep" and m not in metrics]
    if not metrics:
        return
    print("\nScenarios (latencies in ms; server and bench CPU in % of one core):\n")
    print("| metric | " + " | ".join(SERVERS[n]["label"] for n in names) + " |")
    print("| --- |" + " ---: |" * len(names))
    for metric in metrics:
        cells = [show(metric, results[n].get(metric)) for n in names]
        print(f"| {metric} | " + " | ".join(cells) + " |")
    for name in names:
        for scenario in ("burst", "chat-rate"):
            busy = results[name].get(f"{scenario} bench CPU %", 0)
            if busy >= BUSY * 100:
                print(f"\nWARNING: in the {scenario} against {name} the load generator used "
                      f"{busy:.0f}% of a core: it, not the server, was probably the limit.")


def print_sweep(results, names, sizes):
    names = [n for n in names if results[n].get("sweep")]
    if not names:
        return
    tables = (("Slowest delivery of one message to all (ms)", slowest_cell),
              ("Server memory (RSS MB, and KB per client above the idle server)", memory_cell),
              ("Server threads", lambda r: f"{r['threads']:,}"))
    for title, cell in tables:
        print(f"\n{title}:\n")
        print("| clients | " + " | ".join(SERVERS[n]["label"] for n in names) + " |")
        print("| ---: |" + " ---: |" * len(names))
        for step in sizes["sweep"]:
            cells = []
            for name in names:
                row = results[name]["sweep"].get(step)
                cells.append("not tried" if row is None else
                             row["failed"] if "failed" in row and cell is slowest_cell else
                             "-" if "rss" not in row else cell(row))
            print(f"| {step:,} | " + " | ".join(cells) + " |")
    trouble = [f"{n}: {r['sweep']['corrupt frames']} corrupt frames, "
               f"{r['sweep']['closed abnormally']} closed abnormally"
               for n, r in results.items() if r.get("sweep") and
               (r["sweep"]["corrupt frames"] or r["sweep"]["closed abnormally"])]
    for line in trouble:
        print(f"\nIn the sweep, {line}.")


def slowest_cell(row):
    return f"{row['slowest'] * 1000:,.0f}"


def memory_cell(row):
    return f"{row['rss'] / 1e6:,.0f} ({row['per client'] / 1e3:,.0f} KB)"


def print_targets(results):
    print_card_targets(results)
    print_hardened_targets(results)


def target_table(title):
    print(f"\n{title}:\n")
    print("| target | measured | verdict |")
    print("| --- | --- | --- |")

    def row(target, measured, met, margin=""):
        verdict = "met" if met else "MISSED"
        print(f"| {target} | {measured} | {verdict}{', ' + margin if margin else ''} |")
    return row


def losses(chat):
    """Deliveries lost, corrupt frames and abnormal closes, over every scenario of a chat."""
    lost = sum(v for k, v in chat.items() if k.endswith("lost") and isinstance(v, int))
    lost += sum(step.get("lost", 0) for size, step in chat.get("sweep", {}).items()
                if isinstance(size, int))
    corrupt = chat.get("corrupt frames", 0) + chat.get("sweep", {}).get("corrupt frames", 0)
    abnormal = (chat.get("closed abnormally", 0)
                + chat.get("sweep", {}).get("closed abnormally", 0))
    return lost, corrupt, abnormal


def stuck_rows(chat, row, lost_row=True):
    """The stuck reader's targets: none lost (the hardened chat's own row), p99 within 1.5x."""
    if "stuck-reader stuck lost" not in chat:
        return
    if lost_row:
        row("stuck reader: no delivery lost to the healthy clients",
            f"{chat['stuck-reader stuck lost']:,} lost of "
            f"{chat['stuck-reader MB toward the stuck client']:.1f} MB sent toward it",
            chat["stuck-reader stuck lost"] == 0)
    calm = chat["stuck-reader calm latency p99"]
    stuck = chat["stuck-reader stuck latency p99"]
    value = stuck / calm
    row("stuck reader: healthy p99 <= 1.5x the same run without it",
        f"{value:.2f}x ({stuck * 1000:,.1f} vs {calm * 1000:,.1f} ms; the stuck client "
        f"cut off: {chat['stuck-reader stuck client cut off']})", value <= 1.5,
        margin(value, 1.5, False))


def print_card_targets(results):
    """The card's chat promises a classroom three things; its other figures are as they are."""
    card = results.get("card")
    if not card:
        return
    row = target_table("Targets (the card's chat, in this run)")
    lost, corrupt, abnormal = losses(card)
    where = [f"{k.split(' lost')[0]} {v:,}" for k, v in card.items()
             if k.endswith("lost") and isinstance(v, int) and v]
    where += [f"sweep {size:,}: {step['lost']:,}" for size, step in card.get("sweep", {}).items()
              if isinstance(size, int) and step.get("lost")]
    row("no delivery lost, anywhere", f"{lost:,} lost" + (f" ({'; '.join(where)})" if where
                                                         else ""), not lost)
    row("no corrupt frame, anywhere", f"{corrupt:,} corrupt", not corrupt)
    stuck_rows(card, row, lost_row=False)  # its losses are in the first row
    print(f"\nNot targets: {abnormal:,} closed abnormally, "
          f"{card.get('refused (error frames)', 0):,} messages refused with an error frame.")


def print_hardened_targets(results):
    hardened = results.get("hardened")
    if not hardened:
        return
    relay, gevent = results.get("relay", {}), results.get("sio-gevent", {})
    row = target_table("Targets (the hardened chat, in this run)")

    def ratio(metric, other, least=None, most=None, name="the relay"):
        if metric not in hardened or metric not in other:
            return
        value = hardened[metric] / other[metric] if other[metric] else float("inf")
        bound = least if least is not None else most
        met = value >= least if least is not None else value <= most
        sign = ">=" if least is not None else "<="
        scenario = metric.split()[0]
        capped = [who for who, result in (("the hardened chat", hardened), (name, other))
                  if result.get(f"{scenario} bench CPU %", 0) >= BUSY * 100
                  and "CPU" not in metric]  # the cost of a delivery stays true
        note = f"; the load generator capped {' and '.join(capped)}" if capped else ""
        row(f"{metric}: {sign} {bound:g}x {name}",
            f"{value:.2f}x ({show(metric, hardened[metric])} vs {show(metric, other[metric])})",
            met, margin(value, bound, least is not None) + note)

    ratio("burst deliveries/s", relay, least=1.2)
    ratio("burst deliveries/s", gevent, least=1.0, name="Flask-SocketIO gevent")
    ratio("burst CPU µs/delivery", relay, most=1.0)
    ratio("chat-rate latency p99", relay, most=1.5)
    ratio("chat-rate latency p99", gevent, most=1.0, name="Flask-SocketIO gevent")
    ratio("chat-rate CPU µs/delivery", relay, most=1.0)
    biggest = max(hardened.get("sweep", {}) or [0], key=lambda k: k if isinstance(k, int) else 0)
    if biggest:
        step = hardened["sweep"][biggest]
        if "failed" in step:
            row(f"{biggest:,} idle clients: one message reaches all in < 1 s",
                step["failed"], False)
        else:
            row(f"{biggest:,} idle clients: one message reaches all in < 1 s",
                f"{step['slowest'] * 1000:,.0f} ms", step["slowest"] < 1,
                f"{abs(step['slowest'] - 1) * 1000:,.0f} ms "
                + ("to spare" if step["slowest"] < 1 else "over"))
            theirs = relay.get("sweep", {}).get(biggest, {})
            if theirs.get("slowest") and "failed" not in theirs:
                value = step["slowest"] / theirs["slowest"]
                row(f"{biggest:,} idle clients: slowest delivery <= 1x the relay",
                    f"{value:.2f}x ({step['slowest'] * 1000:,.0f} vs "
                    f"{theirs['slowest'] * 1000:,.0f} ms)",
                    value <= 1, margin(value, 1, False))
            if "rss" in theirs:
                value = step["rss"] / theirs["rss"]
                row(f"{biggest:,} idle clients: RSS <= 1.5x the relay",
                    f"{value:.2f}x ({step['rss'] / 1e6:,.0f} vs "
                    f"{theirs['rss'] / 1e6:,.0f} MB)",
                    value <= 1.5, margin(value, 1.5, False))
    stuck_rows(hardened, row)
    lost, corrupt, abnormal = losses(hardened)
    row("no loss, no corrupt frame, no abnormal close, anywhere",
        f"{lost:,} lost, {corrupt:,} corrupt, {abnormal:,} closed abnormally",
        not (lost or corrupt or abnormal))


def margin(value, bound, at_least):
    """How far a ratio is from its bound, in words."""
    good = value >= bound if at_least else value <= bound
    if good:
        return f"{abs(value / bound - 1):.0%} to spare"
    if max(value / bound, bound / value) >= 2:
        return f"{max(value / bound, bound / value):.1f}x " + ("short" if at_least else "over")
    return f"{abs(value / bound - 1):.0%} " + ("short" if at_least else "over")


def show(metric, value):
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if "latency" in metric:
        return f"{value * 1000:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def draw_sweep(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    panels = (("slowest delivery, one message to all (ms)",
               lambda r: r["slowest"] * 1e3, "log"),
              ("server memory per client (KB)", lambda r: r["per client"] / 1e3, "linear"),
              ("server threads", lambda r: r["threads"], "log"))
    sizes = sorted({step for result in results.values()
                    for step in result.get("sweep", {}) if isinstance(step, int)})
    for ax, (title, value, scale) in zip(axes, panels):
        for name, result in results.items():
            # A size the server failed still has its memory and threads, not its speed.
            rows = [(step, row) for step, row in result.get("sweep", {}).items()
                    if isinstance(step, int) and "rss" in row
                    and ("failed" not in row or "slowest" not in title)]
            failed = [step for step, row in result.get("sweep", {}).items()
                      if isinstance(step, int) and "failed" in row]
            label = SERVERS[name]["label"] + (f" (failed at {failed[0]:,})" if failed else "")
            ax.plot([s for s, _ in rows], [value(r) for _, r in rows], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_yscale(scale)
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("idle clients")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    rows = 1 if len(labels) <= 4 else 2
    figure.legend(handles, labels, loc="lower center", ncol=-(-len(labels) // rows), fontsize=8)
    figure.suptitle("bench.py sweep: one message to N idle clients, each server alone "
                    f"on {os.cpu_count()} cores", fontsize=11)
    figure.tight_layout(rect=(0, 0.04 + 0.04 * rows, 1, 1))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path, dpi=100)
    progress("all", f"drew the sweep to {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
