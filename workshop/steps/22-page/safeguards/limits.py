"""Per-address limits: one address cannot take the room down by opening many connections.

app.py limits each connection; the limits here count what every connection from one
address does together, so a flood spread over many connections buys nothing more than its
share, and closing and opening again buys nothing at all. websocket.py calls `admit()`
before a websocket handshake and `release()` after it, and after a refusal
`reserve_leftover()` and `give_back_leftover()`; reader.py calls `join()` as a connection
opens and `pace_reading()` for every read; app.py calls `take_message()` for each message.

Everyone behind one NAT shares an address (a classroom on venue Wi-Fi), and behind a
reverse proxy everyone has the proxy's address unless CHAT_TRUSTED_PROXIES is set. So an
address's allowance is shared fairly: while it lasts, anyone may use it; when it runs
short, each connection still gets its even share, and what is refused or slowed falls on
the connections taking more than theirs. An IPv6 address counts with its whole /64, which
one home or phone is given, unless CHAT_IPV6_PREFIX says otherwise (settings.py).

An allowance belongs to the address, over time: a connection's share starts with no more
than the address's pool holds when it opens (never a fresh burst), and an address opens
websockets at a bounded rate, so that connect, send, close, again, gets no more than
staying does.

Under gunicorn, each websocket holds one of its threads for life, so the chat must know
how many a worker has: CHAT_SERVER_THREADS says, set by hand or by the post_worker_init
hook in gunicorn.conf.py, from gunicorn's own setting.
"""
import ipaddress
import logging
import threading
import time
import weakref

from . import settings

try:
    import resource  # not on Windows
except ImportError:
    resource = None

CONNECTIONS_PER_ADDRESS = settings.CONNECTIONS_PER_ADDRESS  # 64 unless set: settings.py
MESSAGES_PER_SECOND = settings.MESSAGES_PER_SECOND_PER_ADDRESS  # 40 unless set
IPV6_PREFIX = settings.IPV6_PREFIX  # 64 unless set: an IPv6 address counts with its /64
MESSAGES_BURST = 100             # an address's messages at once: a class saying hi together
SHARE_BURST = 3                  # messages a connection may send at once on its share
# Every frame costs CPU to parse, pings and other control frames included, and those
# never reach app.py's message limits: 10 connections sending pings flat out took a
# whole core. So bound the bytes an address's connections may make the server read:
# 64 KiB/s is ten times the largest chat message at the message rate, yet only ~11,000
# empty pings a second, a tenth of a core here.
READ_BYTES_BURST = 256 * 1024    # four of the largest frames app.py accepts
READ_BYTES_PER_SECOND = 64 * 1024
SHARE_BYTES_BURST = 8 * 1024     # a connection's share: its largest message, whole
# Every message costs the chat a parse and an answer (its broadcast, or an error), however
# few its bytes: 64 connections sending empty frames flat out, within the byte rate
# (11,000 frames a second), buried the room's sender in error replies, and a class's
# messages lagged 2.2 s. So a message is also charged bytes: reading slows down at twice
# the message rate, which no one within it reaches.
MESSAGE_BYTES = READ_BYTES_PER_SECOND // (2 * MESSAGES_PER_SECOND)
# Each websocket let in gets a share of the allowances above: an address may open them at
# a bounded rate, or closing and opening again would buy more. The burst lets a class of
# 35 behind one NAT join at once and every one of them reload, with room to spare; after
# it, a few a second are plenty for people, whose page tries again only after 30 s when
# refused.
CONNECTS_BURST = 100
CONNECTS_PER_SECOND = 5
# Descriptors kept free for what is not a websocket: listening socket, log files, page
# requests, Redis. Websockets beyond the process limit minus these are refused, so
# accept() never fails for want of a descriptor (Werkzeug's loop then spins at 100%).
SPARE_FDS = 100
# Under gunicorn each websocket holds one of its threads for life: with all of them held,
# the page and every handshake wait in its queue, unanswered (a newcomer cannot even be
# told the chat is full), and so do the pages of an app the chat is mounted in. Keep
# these for them; and with few threads, half of them.
SPARE_THREADS = 10
# gunicorn's environ does not say how many threads it has, so the chat is told: by
# CHAT_SERVER_THREADS, which gunicorn.conf.py's hook sets from gunicorn's setting. Not
# told, it refuses its websockets under gunicorn rather than guess (a guess of 100 let 4
# tabs take every thread of a host's `gunicorn --threads 4`, and its pages froze). Nor
# can gunicorn's sync worker hold one: it serves one request at a time.
NOT_SET_UP = "This chat is not set up for this server yet; try again later."
THREADS_UNKNOWN = (
    "The chat refuses its websockets under gunicorn until it knows how many threads each"
    " worker has: set CHAT_SERVER_THREADS to gunicorn's --threads, or give gunicorn the"
    " chat's post_worker_init hook (run it with -c hardened/gunicorn.conf.py and your"
    " app after it, or copy the hook into your own config file); see docs/deploying.md.")
ONE_AT_A_TIME = (
    "The chat refuses its websockets under gunicorn's sync worker: it serves one request"
    " at a time, and a websocket would hold it for as long as it is open. Run gunicorn"
    " with threads (--threads 100, or -c hardened/gunicorn.conf.py); see"
    " docs/deploying.md.")
log = logging.getLogger(__name__)


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


class SharedAllowance:
    """What all of an address's connections may use together: a pool any of them may draw
    on while it lasts, and for each connection an even share of its rate, which it keeps
    however the others use the pool."""

    def __init__(self, size, rate, share_size):
        self.pool = Bucket(size, rate)
        self.share_size = share_size
        self.shares = weakref.WeakKeyDictionary()  # connection -> Bucket, while it lives

    def join(self, connection, now):
        """Give a new connection its share: at most what the pool holds now, for the
        share is the address's, not the connection's (closing and opening again must
        not buy a fresh one)."""
        share = self.shares.get(connection)
        if share is None:
            share = self.shares[connection] = Bucket(self.share_size, 0)
            share.tokens = min(self.share_size, max(self.pool.take(0, now), 0))
            share.last = now
        return share

    def take(self, connection, amount, now, connections):
        """Charge `amount` to the pool and to the connection's share; return the debt
        the connection is in, in seconds of its share (0 if it is within its rights)."""
        share = self.join(connection, now)
        share.rate = self.pool.rate / max(connections, 1)
        own = share.take(amount, now)
        share.tokens = max(own, -self.share_size)  # owe at most one burst
        pooled = self.pool.take(amount, now)
        self.pool.tokens = max(pooled, -self.pool.size)
        if pooled >= 0 or own >= 0:
            return 0
        return -own / share.rate

    def give_back(self, connection, amount):
        """Undo a take(): what is refused costs nothing."""
        self.pool.tokens += amount
        self.shares[connection].tokens += amount

    def is_full(self, now):
        return self.pool.is_full(now)


addresses = {}  # key(address) -> what record_of() makes, while it matters
lock = threading.Lock()  # every connection's threads use it


def key(address):
    """What the limits count an address as: itself, or for IPv6 its network of
    IPV6_PREFIX bits (its /64 unless set)."""
    try:
        ip = ipaddress.ip_address(address.split("%")[0])  # without a link-local zone
    except ValueError:
        return address  # not an IP address (a Unix socket's peer, say): itself
    if ip.version == 6:
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/{IPV6_PREFIX}", strict=False))
    return str(ip)


def server_threads():
    """gunicorn's threads in this worker, as CHAT_SERVER_THREADS says; None if unsaid.
    Read when asked, not at import: gunicorn.conf.py's hook sets it once the worker has
    loaded the app."""
    return settings.whole_number("CHAT_SERVER_THREADS", None, least=1)


server_threads()  # a value that is no number stops the chat at start-up, as any setting's


def websockets_for(threads):
    """Of a gunicorn worker's threads, how many websockets may hold: all but
    SPARE_THREADS, or with few threads, half of them."""
    return max(threads - SPARE_THREADS, threads // 2)


def max_connections(threads_for_life=False):
    """Websockets this process can hold before it runs out of file descriptors, or, if a
    websocket holds one of the server's threads for life (gunicorn), of threads."""
    most = 1_000_000  # Windows has no limit on sockets
    if resource is not None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            most = max(soft - SPARE_FDS, 1)  # a websocket costs a descriptor (reader.py)
    if threads_for_life:
        most = min(most, websockets_for(server_threads()))
    return most


def admit(address, threads_for_life=False):
    """Count one more websocket from `address`; return why it is refused (a sentence for
    the person whose page it is), or None."""
    if threads_for_life:
        misfit = server_misfit()
        if misfit is not None:
            warn_once(misfit)
            return NOT_SET_UP
    now = time.monotonic()
    with lock:
        forget_idle(now)
        if (sum(a["connections"] for a in addresses.values())
                >= max_connections(threads_for_life)):
            return "The chat is full; try again later."
        record = record_of(address)
        if record["connections"] >= CONNECTIONS_PER_ADDRESS:
            return (f"Too many connections from your address (at most"
                    f" {CONNECTIONS_PER_ADDRESS}); close one and try again.")
        # Each websocket let in costs one; one refused costs nothing (websocket.py sees
        # to that), nor does a wait: whoever waits is let in.
        if record["connects"].take(0, now) < 1:
            return "You are connecting too often; wait a moment."
        record["connects"].take(1, now)
        record["connections"] += 1
        return None


def record_of(address):
    """What `address` has used, kept while it matters. Hold `lock`."""
    return addresses.setdefault(key(address), {
        "connections": 0,
        "connects": Bucket(CONNECTS_BURST, CONNECTS_PER_SECOND),
        "messages": SharedAllowance(MESSAGES_BURST, MESSAGES_PER_SECOND, SHARE_BURST),
        "bytes": SharedAllowance(READ_BYTES_BURST, READ_BYTES_PER_SECOND,
                                 SHARE_BYTES_BURST)})


def server_misfit():
    """Why gunicorn, as it runs, cannot hold the chat's websockets (a sentence for the
    log), or None."""
    if threading.current_thread() is threading.main_thread():
        return ONE_AT_A_TIME  # the sync worker serves each request on its main thread
    if server_threads() is None:
        return THREADS_UNKNOWN
    return None


told = set()  # the sentences logged: each once, as it is the same every time


def warn_once(sentence):
    if sentence not in told:
        told.add(sentence)
        log.warning(sentence)


def release(address):
    with lock:
        addresses[key(address)]["connections"] -= 1


def forget_idle(now):
    # An address with no connection is kept until its allowances are full again: leaving
    # and coming back must not buy a fresh burst.
    for address, record in list(addresses.items()):
        if (record["connections"] == 0 and record["connects"].is_full(now)
                and record["messages"].is_full(now) and record["bytes"].is_full(now)):
            del addresses[address]


def join(address, connection):
    """A connection of `address`'s opens: it gets its shares of the address's allowances,
    at most what they hold now."""
    now = time.monotonic()
    with lock:
        record = record_of(address)
        record["messages"].join(connection, now)
        record["bytes"].join(connection, now)


def take_message(address, arrival, connection):
    """Count a message that `connection` from `address` sent at `arrival`; False if it
    is over the address's rate and over the connection's share of it."""
    with lock:
        record = record_of(address)
        messages = record["messages"]
        if messages.take(connection, 1, arrival, record["connections"]) == 0:
            return True
        messages.give_back(connection, 1)
        return False


def pace_reading(address, connection, size):
    """Charge `size` bytes read on `connection` to `address`; sleep off the connection's
    debt, if it has taken more than its share while the address's allowance ran short (the
    caller is the connection's reader thread, so only that connection slows down)."""
    with lock:
        record = record_of(address)
        debt = record["bytes"].take(connection, size, time.monotonic(), record["connections"])
    if debt:
        time.sleep(debt)


def reserve_leftover(address, most):
    """How many bytes, `most` at the very most, a refused connection from `address` may
    make us read, taken from the address's allowance of bytes now; give back what is not
    read with give_back_leftover()."""
    with lock:
        pool = record_of(address)["bytes"].pool
        reserved = int(min(most, max(pool.take(0, time.monotonic()), 0)))
        pool.tokens -= reserved
        return reserved


def give_back_leftover(address, unread):
    with lock:
        pool = record_of(address)["bytes"].pool
        pool.tokens = min(pool.tokens + unread, pool.size)
