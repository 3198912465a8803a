"""More than the room can fan out, from senders each within every limit: does it hold?

    python bench/overload.py                     # 300 senders for 60 s: about 2 minutes
    python bench/overload.py --senders 100 --seconds 20
    python bench/overload.py --glibc-defaults    # without docs/deploying.md's tunable

Starts the hardened chat (hardened/) under `flask run`, with its default settings and
the environment docs/deploying.md advises (SERVER_ENVIRONMENT), and connects, each from an
address of its own on the loopback (127.0.1.1 onwards: no per-address limit applies), one
observer that sends nothing and `--senders` clients that each send the largest message
the chat accepts 5 times a second, its per-connection limit. 300 senders offer 1,500
messages a second, 450,000 deliveries a second: several times what one process fans out.

Most senders only drain what the server sends them, unparsed, as fast as their sockets
give it (a browser never stops reading), and answer its pings. A few, the samplers,
parse everything, to tell what became of each message they sent. The observer and the
samplers run in a second process, so that the drainers' work does not delay their clocks.

Prints every 5 s, then the figures and each bound of docs/reliability.md with met/MISSED
(exit status 1 if one is missed):
- the server's memory (RSS) stays within twice its RSS with everyone connected and idle;
- every message the room accepts reaches the observer within 5 s of its sending;
- every message a sampler sends is answered: delivered, or refused in words;
- nothing reaches the observer more than 5 s after its sender left.
Standard library only: the fault suite runs it (tests/test_faults.py).
"""
import argparse
import json
import os
import selectors
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PROJECT = os.path.dirname(HERE)  # where hardened/ is
RATE = 5                  # messages a second from each sender: the chat's RATE_PER_SECOND
MESSAGE_CHARS = 1000      # the chat's MAX_MESSAGE_CHARS: the largest message accepted
SAMPLERS = 10             # senders that parse everything, in the observer's process
LAG_BOUND = 5             # seconds from sending to the observer, at most
AFTER_LEAVING_BOUND = 5   # seconds a message may still be broadcast after its sender left
MEMORY_BOUND = 2          # times the RSS with everyone connected and idle
WATCH_AFTER = 10          # seconds the observer stays after the senders leave
PONG_EVERY = 10           # seconds: the library hangs up on a client silent for 25 s
WAIT = 30                 # seconds any connection or answer may take
# Each thread of glibc's malloc keeps freed blocks for itself (its tcache): with three
# threads a connection, 900 of them, the server's RSS grew to 3x idle here, levelling off.
# docs/deploying.md has servers started with this; the flag --glibc-defaults leaves it out.
SERVER_ENVIRONMENT = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"}
TICKS = os.sysconf("SC_CLK_TCK")  # units of the CPU times in /proc/<pid>/stat
# A client's frames must be masked; a key of zeros masks nothing, so a frame is its text.
PONG = b"\x8a\x80\x00\x00\x00\x00"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--app", default=os.path.join(PROJECT, "hardened"))
    parser.add_argument("--glibc-defaults", action="store_true",
                        help="start the server without SERVER_ENVIRONMENT")
    parser.add_argument("--observe", metavar="PORT", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.observe:
        return observe(args.observe)
    environment = {} if args.glibc_defaults else SERVER_ENVIRONMENT
    figures = run(args.app, args.senders, args.seconds, environment)
    print_figures(figures)
    return 0 if all(met for _, _, met in bounds(figures)) else 1


# ---------------------------------------------------------------- the run

def run(app, senders, seconds, environment):
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="overload-", suffix=".log", delete=False)
    server = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", app, "run", "--port", str(port)],
        cwd=PROJECT, env={**os.environ, **environment, "FLASK_DEBUG": "0"}, stdout=log,
        stderr=subprocess.STDOUT)
    observer = None
    try:
        wait_for_port(port, server)
        observer = subprocess.Popen(
            [sys.executable, __file__, "--observe", str(port)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        expect(observer, "ready")
        drainers = [connect(port, sender_address(n)) for n in range(SAMPLERS, senders)]
        for sock in drainers:
            sock.setblocking(False)
        progress(f"{senders} senders and an observer connected; idle for 3 s")
        time.sleep(3)
        idle = memory_and_threads(server.pid)[0]
        meter = Meter(server.pid, observer.pid)
        figures = {"senders": senders, "seconds": seconds, "environment": environment,
                   "idle RSS MB": idle / 1e6}
        figures.update(load(drainers, observer, server.pid, seconds, idle, meter))
        observer.stdin.write(f"stop {figures['left at']}\n")
        observer.stdin.flush()
        figures.update(json.loads(expect(observer, "{")))
        figures.update(meter.read())
        figures["errors in the log"] = errors_in(log.name)
        return figures
    finally:
        for process in (observer, server):
            if process is not None:
                process.kill()
                process.wait()
        log.close()
        os.remove(log.name)


def load(drainers, observer, pid, seconds, idle, meter):
    """Every sender sends RATE a second for `seconds`; then they all leave at once."""
    stop = threading.Event()
    drained = {"bytes": 0, "busy": 0, "cut": 0}
    reading = threading.Thread(target=drain, args=(drainers, stop, drained), daemon=True)
    reading.start()
    observer.stdin.write("go\n")
    observer.stdin.flush()
    started = time.monotonic()
    peak, threads, sent, behind = idle, 0, 0, 0
    pending = {sock: b"" for sock in drainers}  # what a socket did not take yet
    tick = 0
    while time.monotonic() < started + seconds:
        # One tenth of the senders every 1/(10 RATE) s: each sends RATE a second, spread.
        for k, sock in enumerate(drainers):
            if k % 10 == tick % 10:
                pending[sock] += client_frame(message(sock.getsockname()[0], tick // 10))
                sent += 1
                if tick % (10 * RATE * PONG_EVERY) < 10:
                    pending[sock] += PONG
        for sock, data in pending.items():
            pending[sock] = send_what_it_takes(sock, data)
        tick += 1
        if tick % (10 * RATE) == 0:
            rss, threads = memory_and_threads(pid)
            peak = max(peak, rss)
            behind = sum(1 for data in pending.values() if data)
            progress(f"{time.monotonic() - started:3.0f} s: RSS {rss / 1e6:.0f} MB"
                     f" (idle {idle / 1e6:.0f}), {threads} threads,"
                     f" {drained['bytes'] / 1e6:,.0f} MB drained,"
                     f" ~{drained['busy']:,} refusals seen, {behind} senders not read")
        time.sleep(max(0, started + tick / (10 * RATE) - time.monotonic()))
    stop.set()  # first: a socket closed under the reading thread would count as cut off
    reading.join()
    for sock in drainers:  # everyone leaves at once, without waiting for the server
        sock.close()
    left_at = time.monotonic()
    for _ in range(2 * WATCH_AFTER):  # memory after they left, as the room empties
        peak = max(peak, memory_and_threads(pid)[0])
        time.sleep(0.5)
    return {"left at": left_at, "peak RSS MB": peak / 1e6, "peak threads": threads,
            "drainers' messages sent": sent, "drainers cut off": drained["cut"],
            "drained MB": drained["bytes"] / 1e6,
            "refusals the drainers saw (about)": drained["busy"],
            "drainers the server was not reading at the end": behind}


def drain(drainers, stop, drained):
    """Read everything every drainer is sent, as fast as it comes, without parsing it."""
    buffer = bytearray(256 * 1024)
    with selectors.DefaultSelector() as selector:
        for sock in drainers:
            selector.register(sock, selectors.EVENT_READ)
        while not stop.is_set():
            for key, _ in selector.select(0.5):
                try:
                    size = key.fileobj.recv_into(buffer)
                except OSError:
                    size = 0
                if size == 0:  # the server hung up on a client that reads everything
                    drained["cut"] += 1
                    selector.unregister(key.fileobj)
                    continue
                drained["bytes"] += size
                drained["busy"] += buffer.count(b"room is busy", 0, size)


def send_what_it_takes(sock, data):
    """Send without waiting, as a page does: what the socket does not take waits."""
    if not data:
        return data
    try:
        return data[sock.send(data):]
    except BlockingIOError:
        return data
    except OSError:
        return b""  # cut off: drain() counts it


# ---------------------------------------------------------------- observer and samplers

def observe(port):
    """The second process: one observer and SAMPLERS senders, all parsing everything."""
    observer = Client(connect(port, "127.0.0.2"))
    samplers = [Client(connect(port, sender_address(n))) for n in range(SAMPLERS)]
    print("ready", flush=True)
    sys.stdin.readline()  # "go"
    commands = []
    threading.Thread(target=lambda: commands.append(sys.stdin.readline()),
                     daemon=True).start()
    everyone = [observer, *samplers]
    started, k = time.monotonic(), 0
    while not commands:  # senders send, everyone reads
        k += 1
        for sampler in samplers:
            sampler.say(k)
        until = started + k / RATE
        while time.monotonic() < until:
            read_all(everyone, until - time.monotonic())
    left_at = float(commands[0].split()[1])
    # The samplers wait for their answers, then leave; the observer watches a while.
    deadline = time.monotonic() + WAIT
    while any(s.waiting() for s in samplers) and time.monotonic() < deadline:
        read_all(everyone, 0.2)
    for sampler in samplers:
        sampler.leave()
    until = time.monotonic() + WATCH_AFTER
    while time.monotonic() < until:
        read_all([observer], 0.2)
    print(json.dumps(report(observer, samplers, left_at)), flush=True)


class Client:
    """A websocket that parses every frame it is sent; as a sampler, also sends."""

    def __init__(self, sock):
        self.sock, self.buffer, self.name = sock, bytearray(), sock.getsockname()[0]
        self.sent = []         # when each of its messages went, oldest first
        self.answers = []      # (what, how long after its sending), in the same order
        self.lags, self.last_after_leaving = [], {}  # the observer's
        self.left_at = None

    def say(self, k):
        self.sent.append(time.monotonic())
        self.sock.sendall(client_frame(message(self.name, k)))
        if k % (RATE * PONG_EVERY) == 0:
            self.sock.sendall(PONG)

    def waiting(self):
        return len(self.answers) < len(self.sent)

    def leave(self):
        self.sock.close()
        self.left_at = time.monotonic()

    def read(self):
        data = self.sock.recv(256 * 1024)
        if not data:
            raise ConnectionError(f"{self.name}: the server hung up")
        self.buffer += data
        now = time.monotonic()
        for opcode, payload in frames_in(self.buffer):
            if opcode == 0x9:  # ping: answer it, as every browser does
                self.sock.sendall(client_frame(payload, opcode=0xA))
            elif opcode == 0x1:
                self.receive(json.loads(payload), now)

    def receive(self, data, now):
        if "error" in data:  # only ever to the sender of the message it refuses
            what = "refused busy" if "busy" in data["error"] else "refused otherwise"
            self.answers.append((what, now - self.sent[len(self.answers)]))
            return
        sender, _, sent_at = data["message"].split()[:3]
        self.lags.append(now - float(sent_at))
        self.last_after_leaving[sender] = now
        if sender == self.name:
            self.answers.append(("delivered", now - self.sent[len(self.answers)]))


def read_all(clients, timeout):
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client.sock, selectors.EVENT_READ, client)
        for key, _ in selector.select(max(timeout, 0)):
            key.data.read()


def report(observer, samplers, left_at):
    lags = sorted(observer.lags) or [float("nan")]
    answers = [what for s in samplers for what, _ in s.answers]
    refused_after = sorted(after for s in samplers for what, after in s.answers
                           if what == "refused busy") or [float("nan")]
    # A drainer left at left_at; a sampler when it had its answers.
    left = {s.name: s.left_at for s in samplers}
    late = [arrived - left.get(sender, left_at)
            for sender, arrived in observer.last_after_leaving.items()]
    sent = sum(len(s.sent) for s in samplers)
    return {"delivered to the observer": len(observer.lags),
            "observer lag p50 s": lags[len(lags) // 2],
            "observer lag p99 s": lags[int(len(lags) * 0.99)],
            "observer lag max s": lags[-1],
            "samplers' messages sent": sent,
            "samplers' delivered": answers.count("delivered"),
            "samplers' refused busy": answers.count("refused busy"),
            "samplers' refused otherwise": answers.count("refused otherwise"),
            "samplers' unanswered": sent - len(answers),
            "busy refusal after max s": refused_after[-1],
            "latest delivery after its sender left s": max(late, default=0)}


# ---------------------------------------------------------------- websockets, by hand

def connect(port, address):
    """A websocket to the chat from `address`, its handshake done."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT,
                                    source_address=(address, 0))
    sock.sendall(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"{address}: no handshake answer")
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"{address}: {answer.splitlines()[0].decode()}")
    return sock


def client_frame(text, opcode=0x1):
    payload = text.encode() if isinstance(text, str) else bytes(text)
    size = len(payload)
    if size < 126:
        header = bytes([0x80 | opcode, 0x80 | size])
    else:
        header = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
    return header + b"\x00\x00\x00\x00" + payload


def frames_in(buffer):
    """Take the whole frames from the front of `buffer`: (opcode, payload) each."""
    while len(buffer) >= 2:
        size, start = buffer[1] & 0x7F, 2
        if size == 126:
            size, start = int.from_bytes(buffer[2:4], "big"), 4
        elif size == 127:
            size, start = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < start + size:
            return
        opcode, payload = buffer[0] & 0x0F, bytes(buffer[start:start + size])
        del buffer[:start + size]
        yield opcode, payload


def message(sender, k):
    head = f"{sender} {k} {time.monotonic():.6f} "
    text = head + "lorem ipsum dolor sit amet " * (MESSAGE_CHARS // 27 + 1)
    return json.dumps({"name": sender, "message": text[:MESSAGE_CHARS]})


def sender_address(n):
    return f"127.0.{1 + n // 250}.{1 + n % 250}"


# ---------------------------------------------------------------- measuring

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


def expect(process, start):
    line = process.stdout.readline()
    if not line.startswith(start):
        sys.exit(f"the observer's process said {line!r}, not {start!r}...")
    return line


def memory_and_threads(pid):
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.split(":", 1) for line in f)
    return int(status["VmRSS"].split()[0]) * 1024, int(status["Threads"])


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


class Meter:
    """CPU of the server and of the load generator (this process and the observer's)."""

    def __init__(self, server, observer):
        self.pids = {"server": server, "load generator": observer}
        self.start = self.used()
        self.wall = time.monotonic()

    def used(self):
        times = os.times()
        return {"server": cpu_seconds(self.pids["server"]),
                "load generator": cpu_seconds(self.pids["load generator"])
                + times.user + times.system}

    def read(self):
        wall, now = time.monotonic() - self.wall, self.used()
        return {f"{who} CPU %": (now[who] - self.start[who]) / wall * 100 for who in now}


def errors_in(path):
    with open(path, errors="replace") as f:
        return sum(1 for line in f if "Traceback" in line or "ERROR" in line)


def progress(text):
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the report

UNANSWERED = "samplers' unanswered"


def bounds(f):
    return [
        (f"peak RSS within {MEMORY_BOUND}x idle", f"{f['peak RSS MB']:.0f} MB",
         f["peak RSS MB"] <= MEMORY_BOUND * f["idle RSS MB"]),
        (f"observer lag within {LAG_BOUND} s", f"max {f['observer lag max s']:.2f} s",
         f["observer lag max s"] <= LAG_BOUND),
        ("every sampler's message answered", f"{f[UNANSWERED]} unanswered",
         f[UNANSWERED] == 0),
        (f"nothing broadcast {AFTER_LEAVING_BOUND} s after its sender left",
         f"latest {f['latest delivery after its sender left s']:.2f} s",
         f["latest delivery after its sender left s"] <= AFTER_LEAVING_BOUND),
        ("no drainer cut off", f"{f['drainers cut off']}", f["drainers cut off"] == 0),
        ("no error in the server's log", f"{f['errors in the log']}",
         f["errors in the log"] == 0),
    ]


def print_figures(figures):
    environment = " ".join(f"{k}={v}" for k, v in figures["environment"].items())
    print(f"\n{figures['senders']} senders x {RATE} messages of {MESSAGE_CHARS} characters"
          f" a second, for {figures['seconds']} s; the server's environment:"
          f" {environment or 'as it was'}\n")
    print("| figure | value |\n|---|---:|")
    for name, value in figures.items():
        if name in ("senders", "seconds", "environment", "left at"):
            continue
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        print(f"| {name} | {shown} |")
    print("\n| bound | figure | verdict |\n|---|---|---|")
    for name, value, met in bounds(figures):
        print(f"| {name} | {value} | {'met' if met else 'MISSED'} |")


if __name__ == "__main__":
    sys.exit(main())
