"""Per-address limits: one address cannot take the room down by opening many connections.

app.py limits each connection; the limits here count what every connection from one
address does together, so a flood spread over a hundred connections buys nothing more than
one connection would. websocket.py calls `admit()` before a websocket handshake and
`release()` after it; app.py calls `take_message()` for each message, and reader.py
`pace_reading()` for every read.

Everyone behind one NAT shares an address, and behind a reverse proxy everyone has the
proxy's address unless TRUSTED_PROXIES is set (see guards.py and docs/deploying.md).
"""
import threading
import time

try:
    import resource  # not on Windows
except ImportError:
    resource = None

CONNECTIONS_PER_ADDRESS = 20     # a household's tabs and phones; more is a script
MESSAGES_BURST = 60              # messages one address may send at once...
MESSAGES_PER_SECOND = 15         # ...and on average: three people at app.py's own rate
# Every frame costs CPU to parse, pings and other control frames included, and those
# never reach app.py's message limits: 10 connections sending pings flat out took a
# whole core. So bound the bytes an address's connections may make the server read:
# 64 KiB/s is ten times the largest chat message at the message rate, yet only ~11,000
# empty pings a second, a tenth of a core here.
READ_BYTES_BURST = 256 * 1024    # four of the largest frames app.py accepts
READ_BYTES_PER_SECOND = 64 * 1024
# Descriptors kept free for what is not a websocket: listening socket, log files, page
# requests, Redis. Websockets beyond the process limit minus these are refused, so
# accept() never fails for want of a descriptor (Werkzeug's loop then spins at 100%).
SPARE_FDS = 100


class Bucket:
    """A token bucket: bursts up to `size`, `rate` a second on average."""

    def __init__(self, size, rate):
        self.size, self.rate = size, rate
        self.tokens, self.last = size, time.monotonic()

    def take(self, amount, now):
        """Take `amount` tokens, going into debt if need be; return the tokens left."""
        # Frames are stamped by several threads: never let time run backwards.
        if now > self.last:
            self.tokens = min(self.size, self.tokens + (now - self.last) * self.rate)
            self.last = now
        self.tokens -= amount
        return self.tokens

    def is_full(self, now):
        return self.tokens + (now - self.last) * self.rate >= self.size


addresses = {}  # address -> {"connections", "messages", "bytes"} while it matters
lock = threading.Lock()  # every connection's threads use it


def max_connections():
    """Websockets this process can hold before it runs out of file descriptors."""
    if resource is None:
        return 1_000_000  # Windows has no such limit on sockets
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1_000_000
    return max(soft - SPARE_FDS, 1)  # each websocket costs one descriptor (see reader.py)


def admit(address):
    """Count one more websocket from `address`; return why it is refused (a sentence for
    the person whose page it is), or None."""
    now = time.monotonic()
    with lock:
        forget_idle(now)
        if sum(a["connections"] for a in addresses.values()) >= max_connections():
            return "The chat is full; try again later."
        record = addresses.setdefault(address, {
            "connections": 0,
            "messages": Bucket(MESSAGES_BURST, MESSAGES_PER_SECOND),
            "bytes": Bucket(READ_BYTES_BURST, READ_BYTES_PER_SECOND)})
        if record["connections"] >= CONNECTIONS_PER_ADDRESS:
            return (f"Too many connections from your address (at most"
                    f" {CONNECTIONS_PER_ADDRESS}); close one and try again.")
        record["connections"] += 1
        return None


def release(address):
    with lock:
        addresses[address]["connections"] -= 1


def forget_idle(now):
    # An address with no connection is kept until its buckets are full again: leaving
    # and coming back must not buy a fresh burst.
    for address, record in list(addresses.items()):
        if (record["connections"] == 0 and record["messages"].is_full(now)
                and record["bytes"].is_full(now)):
            del addresses[address]


def take_message(address, arrival):
    """Count a message from `address` that arrived at `arrival`; False if over the rate."""
    with lock:
        bucket = addresses[address]["messages"]
        if bucket.take(1, arrival) >= 0:
            return True
        bucket.tokens += 1  # a refused message costs nothing
        return False


def pace_reading(address, size):
    """Charge `size` bytes read to `address`; sleep off any debt (the caller is a
    connection's reader thread, so only this address's connections slow down)."""
    with lock:
        tokens = addresses[address]["bytes"].take(size, time.monotonic())
    if tokens < 0:
        time.sleep(-tokens / READ_BYTES_PER_SECOND)
