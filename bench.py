"""How many people can the chat hold, and how fast is it?

    pip install -r requirements-bench.txt
    python bench.py            # a minute or two on two cores
    python bench.py --quick    # about half a minute: smaller numbers, same scenarios

Starts the chat under `flask run` on a free loopback port, drives it with many websocket
clients from this one asyncio process, then does the same against a plain asyncio relay
built on the `websockets` library (the yardstick, at the bottom of this file) and prints
our figures as ratios to it, then the absolute figures. Clients offer permessage-deflate,
as browsers do, and stay within the chat's rate limit.
"""
import argparse
import asyncio
import base64
import contextlib
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
from websockets.exceptions import ConnectionClosed

HERE = os.path.dirname(os.path.abspath(__file__))
CONNECT_BATCH = 100     # Werkzeug listens with a backlog of 128: connect fewer at once
OPEN_FILES = 20_000     # one socket per client, on both sides of the loopback
WAIT = 60               # seconds any one wait may take before the bench gives up
TICKS = os.sysconf("SC_CLK_TCK")  # units of the CPU times in /proc/<pid>/stat

FULL = {"burst_clients": 100, "burst_messages": 15,
        "rate_clients": 200, "rate_senders": 50, "rate_per_second": 2, "rate_seconds": 10,
        "stuck_healthy": 50, "stuck_senders": 10, "stuck_seconds": 5,
        "capacity_steps": (2000, 5000)}
QUICK = {**FULL, "burst_clients": 50, "rate_seconds": 4, "stuck_healthy": 20,
         "capacity_steps": (1000,)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run, under a minute")
    parser.add_argument("--app", default=os.path.join(HERE, "app.py"),
                        help="the chat to measure (default: app.py next to this file)")
    parser.add_argument("--relay", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    raise_open_files_limit()
    if args.relay:
        asyncio.run(relay(args.relay))
        return
    sizes = QUICK if args.quick else FULL
    started = time.monotonic()
    results = {}
    for server in ("ours", "relay"):
        with running(server, args.app) as (port, pid):
            results[server] = asyncio.run(run_scenarios(server, port, pid, sizes))
    progress("all", f"done in {time.monotonic() - started:.0f} s")
    print_tables(results, sizes)


def raise_open_files_limit():
    """Thousands of sockets need thousands of descriptors; the servers inherit ours."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def progress(server, text):
    print(f"[{time.strftime('%H:%M:%S')}] {server:5} {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the two servers

@contextlib.contextmanager
def running(server, app):
    """Start a server in its own process on a free port; yield (port, pid); stop it."""
    port = free_port()
    if server == "ours":
        command = [sys.executable, "-m", "flask", "--app", app, "run",
                   "--host", "127.0.0.1", "--port", str(port)]
    else:
        command = [sys.executable, os.path.abspath(__file__), "--relay", str(port)]
    # Its log, thousands of join lines, goes to a file, kept if it holds errors.
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{server}-", suffix=".log", delete=False)
    process = subprocess.Popen(command, cwd=os.path.dirname(app),
                               env={**os.environ, "FLASK_DEBUG": "0"},
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        progress(server, f"listening on 127.0.0.1:{port}, pid {process.pid}")
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
            progress(server, f"{len(errors)} errors in its log: see {log.name}")
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


def memory_and_threads(pid):
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f)
    return int(status["VmRSS"].split()[0]) * 1024, int(status["Threads"])


# ---------------------------------------------------------------- clients

class Tally:
    """Counts the frames of one scenario that reach the listening clients."""

    def __init__(self, tag, expected):
        self.tag, self.expected = tag, expected
        self.latencies, self.errors, self.last = [], 0, None
        self.done = asyncio.Event()

    def record(self, frame, now):
        data = json.loads(frame)
        if "error" in data:
            self.errors += 1
        if data.get("name") != self.tag:
            return  # history or an earlier scenario's stragglers
        self.latencies.append(now - float(data["message"].split()[0]))
        self.last = now
        if len(self.latencies) >= self.expected:
            self.done.set()

    async def wait(self, server, what):
        try:
            await asyncio.wait_for(self.done.wait(), WAIT)
        except asyncio.TimeoutError:
            progress(server, f"{what}: timed out")
        lost = self.expected - len(self.latencies)
        progress(server, f"{what}: {len(self.latencies):,} of {self.expected:,} delivered"
                 + (f", {lost:,} LOST" if lost else "")
                 + (f", {self.errors} error frames" if self.errors else ""))
        return lost


current = Tally(None, 0)  # the scenario the listening clients report to


async def listen(ws):
    try:
        async for frame in ws:
            current.record(frame, time.perf_counter())
    except Exception:  # closed under us: the tally reports what went missing
        pass


async def open_clients(server, port, count, already=0):
    """Connect in batches, as the server's listen backlog allows, and listen on each."""
    clients = []
    while len(clients) < count:
        batch = min(CONNECT_BATCH, count - len(clients))
        # compression="deflate" (the default) offers permessage-deflate as browsers do.
        clients += await asyncio.gather(*(
            connect(f"ws://127.0.0.1:{port}/ws", compression="deflate", ping_interval=None,
                    open_timeout=WAIT, max_size=None) for _ in range(batch)))
        if (already + len(clients)) % 1000 == 0 or len(clients) == count:
            progress(server, f"{already + len(clients):,} clients connected")
    for ws in clients:
        asyncio.ensure_future(listen(ws))
    await asyncio.sleep(0.5)  # the server registers each one and sends it the history
    return clients


async def close_clients(clients):
    for start in range(0, len(clients), CONNECT_BATCH):
        await asyncio.gather(*(ws.close() for ws in clients[start:start + CONNECT_BATCH]))


def say(ws, tag, text=""):
    return ws.send(json.dumps({"name": tag, "message": f"{time.perf_counter():.6f} {text}"}))


def percentiles(latencies):
    ordered = sorted(latencies) or [float("nan")]
    return {"p50": ordered[len(ordered) // 2], "p99": ordered[int(len(ordered) * 0.99)],
            "max": ordered[-1]}


# ---------------------------------------------------------------- scenarios

async def run_scenarios(server, port, pid, sizes):
    result = {}
    result.update(await burst(server, port, pid, sizes))
    result.update(await chat_rate(server, port, pid, sizes))
    result.update(await stuck_reader(server, port, sizes))
    result.update(await capacity(server, port, pid, sizes))
    return result


async def burst(server, port, pid, sizes):
    """Everyone sends a burst at once: how fast does the server fan it out?"""
    global current
    n, each = sizes["burst_clients"], sizes["burst_messages"]
    clients = await open_clients(server, port, n)
    current = Tally("burst", n * each * n)
    cpu_before, start = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(say(ws, "burst") for ws in clients for _ in range(each)))
    lost = await current.wait(server, f"burst of {n} x {each}")
    cpu = cpu_seconds(pid) - cpu_before
    delivered = len(current.latencies)
    await close_clients(clients)
    return {"burst deliveries/s": delivered / (current.last - start),
            "burst CPU µs/delivery": cpu / delivered * 1e6,
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
    cpu_before, start = cpu_seconds(pid), time.perf_counter() + 0.1
    await asyncio.gather(*(send_steadily(ws, "rate", start + random.random() / rate,
                                         rate, seconds) for ws in clients[:senders]))
    lost = await current.wait(server, "chat rate")
    cpu = cpu_seconds(pid) - cpu_before
    await close_clients(clients)
    return {"chat-rate CPU µs/delivery": cpu / len(current.latencies) * 1e6,
            **{f"chat-rate latency {k}": v
               for k, v in percentiles(current.latencies).items()},
            "chat-rate lost": lost}


async def send_steadily(ws, tag, start, rate, seconds, text=""):
    for k in range(rate * seconds):
        await asyncio.sleep(max(0, start + k / rate - time.perf_counter()))
        await say(ws, tag, text)


async def stuck_reader(server, port, sizes):
    """One client stops reading: do the others notice?"""
    global current
    n, senders, seconds = sizes["stuck_healthy"], sizes["stuck_senders"], sizes["stuck_seconds"]
    stuck = stuck_client(port)
    clients = await open_clients(server, port, n)
    rate = 4  # under the chat's 5 a second
    current = Tally("stuck", senders * rate * seconds * n)
    progress(server, f"stuck reader: {senders} of {n} healthy clients send 1 KB {rate}/s "
                     f"for {seconds} s")
    noise = base64.b64encode(os.urandom(735)).decode()  # does not compress: fills buffers
    start = time.perf_counter() + 0.1
    await asyncio.gather(*(send_steadily(ws, "stuck", start + random.random() / rate,
                                         rate, seconds, noise) for ws in clients[:senders]))
    lost = await current.wait(server, "stuck reader, healthy clients")
    stuck.close()
    await close_clients(clients)
    return {**{f"stuck-reader healthy latency {k}": v
               for k, v in percentiles(current.latencies).items() if k != "p50"},
            "stuck-reader lost": lost}


def stuck_client(port):
    """A client that completes the handshake and then never reads a byte."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(WAIT)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += s.recv(1)
    return s


async def capacity(server, port, pid, sizes):
    """A big idle room; one message must reach everyone."""
    global current
    result, clients = {}, []
    for step in sizes["capacity_steps"]:
        clients += await open_clients(server, port, step - len(clients), len(clients))
        rss, threads = memory_and_threads(pid)
        current = Tally(f"capacity {step}", step)
        await say(clients[0], current.tag)
        lost = await current.wait(server, f"capacity, one message to {step:,}")
        result[f"capacity {step:,} slowest delivery"] = max(current.latencies, default=WAIT)
        result[f"capacity {step:,} lost"] = lost
        result[f"capacity {step:,} server RSS MB"] = rss / 1e6
        result[f"capacity {step:,} server threads"] = threads
    for ws in clients:  # the server stops next: no need to say goodbye to each
        ws.transport.abort()
    return result


# ---------------------------------------------------------------- the report

TARGETS = {  # metric: (ours / relay must be at least, at most)
    "burst deliveries/s": (1.0, None),
    "chat-rate latency p99": (None, 2.0),
}


def print_tables(results, sizes):
    ours, relay = results["ours"], results["relay"]
    print("\nOurs as a ratio to the relay (ours ÷ relay; for deliveries/s higher is "
          "better, for everything else lower):\n")
    print("| metric | ratio | target |")
    print("| --- | ---: | --- |")
    for metric in ours:
        if "lost" in metric or "threads" in metric:
            continue
        ratio = ours[metric] / relay[metric] if relay[metric] else float("inf")
        low, high = TARGETS.get(metric, (None, None))
        target = ""
        if low is not None:
            target = f">= {low:.1f}x: {'met' if ratio >= low else 'MISSED'}"
        if high is not None:
            target = f"<= {high:.1f}x: {'met' if ratio <= high else 'MISSED'}"
        print(f"| {metric} | {ratio:.2f}x | {target} |")
    print("\nAbsolute figures (latencies in ms):\n")
    print("| metric | ours (flask run) | relay (websockets) |")
    print("| --- | ---: | ---: |")
    for metric in ours:
        print(f"| {metric} | {show(metric, ours[metric])} | {show(metric, relay[metric])} |")
    for step in sizes["capacity_steps"]:
        slowest = ours[f"capacity {step:,} slowest delivery"]
        held = ours[f"capacity {step:,} lost"] == 0
        verdict = "met" if held and slowest < 1 else "MISSED"
        print(f"\nCapacity (target 2,000, aim 5,000): {step:,} clients under flask run, "
              f"every one reached, slowest delivery under 1 s: {verdict} "
              f"({slowest * 1000:.0f} ms).")


def show(metric, value):
    if "latency" in metric or "slowest" in metric:
        return f"{value * 1000:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


# ---------------------------------------------------------------- the yardstick
# What someone would write instead: a plain asyncio relay on the `websockets` library,
# with its defaults (permessage-deflate on). No validation, rate limit or history.

async def relay(port):
    from websockets.asyncio.server import broadcast, serve
    connected = set()

    async def handler(ws):
        connected.add(ws)
        try:
            async for message in ws:
                broadcast(connected, message)
        except ConnectionClosed:
            pass  # the client vanished without a goodbye
        finally:
            connected.discard(ws)

    async with serve(handler, "127.0.0.1", port, max_size=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    main()
