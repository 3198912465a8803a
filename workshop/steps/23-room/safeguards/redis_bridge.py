"""One chat room across several processes, through Redis: app.py uses it when CHAT_REDIS_URL
is set.

It needs the redis package (requirements-redis.txt), imported only by start(): one
process needs no Redis at all. Each app's room has a Bridge of its own, with its stream
(CHAT_REDIS_STREAM), and its relay thread ends once the room is gone.

Every process adds the messages its clients send to one Redis stream, an append-only log
that Redis numbers in the order it stores them. Each process reads the stream on from the
number of the last message it delivered, and hands each message to its own clients with
app.py's deliver(). So every process delivers the same messages in the same order, once
each, and a process that lost Redis for a while carries on exactly where it stopped: there
is no subscription to renew and no moment in which a message can slip past.

Redis numbers a message with its clock in milliseconds (and a counter), always above the
last number in the stream. A Redis that restarts and forgets everything starts a new
stream, numbered from its clock: above every number before, so the processes carry on.
(If Redis's clock is set back, or Redis moves to a machine whose clock is behind, restart
the chat processes too: until its clock passes their last number, they would skip the
new messages.)

A message is stored before its sender's wait ends, or never: a paused Redis that wakes up
and finds a message whose sender has given up on it drops it. So a sender told that its
message was not delivered can trust that no one will ever see it, unless Redis froze in
the instant between storing it and answering (docs/deploying.md lists what cannot be promised).
"""
import logging
import threading
import time
import weakref

STREAM = "flask-websocket-chat:messages"  # a name of our own, to share a Redis server
STREAM_LENGTH = 10_000  # messages Redis keeps (~1 MB of chat lines, 63 MB at most): a
#                         process cut off from Redis while others send more misses some
TIMEOUT = 2         # seconds Redis may take to answer; a sender's thread waits that long
DEADLINE = 1        # seconds after sending in which Redis must store a message, or drop
#                     it: under TIMEOUT by more than an answer's trip back to us
READ_WAIT = 1       # seconds a read waits for new messages: under TIMEOUT, so that a
#                     quiet room is not taken for a silent Redis
RETRY_FIRST = 0.1   # seconds before reading again after Redis went away, doubling...
RETRY_MAX = 2       # ...up to this: chat is back within seconds of Redis coming back
NOT_DELIVERED = "The message could not be delivered; try again in a moment."

# KEYS: the stream. ARGV: the frame, the deadline in Redis's milliseconds, STREAM_LENGTH,
# who sent it. Returns whether it stored the frame, and Redis's clock in milliseconds.
PUBLISH_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if now > tonumber(ARGV[2]) then
    return {0, now}
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'frame', ARGV[1], 'from', ARGV[4])
return {1, now}
"""

log = logging.getLogger(__name__)
redis = None  # the redis package, imported by start(): no Redis, no import


def start(url, stream, room, deliver, history_size):
    """Connect to Redis, and from now on, for as long as `room` lives, hand every message
    in the stream to deliver(room, frame, sender). Return the Bridge to publish with."""
    global redis
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise RuntimeError("CHAT_REDIS_URL is set, but the redis package is not installed:"
                           " pip install -r requirements-redis.txt") from None
    # Fail at once instead of retrying: the sender is told, and can try again.
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=TIMEOUT,
                                  socket_connect_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0))
    bridge = Bridge(client, stream)
    # The relay holds the room weakly: a room whose app is gone has nobody to deliver to.
    threading.Thread(target=relay_forever, args=(bridge, weakref.ref(room), deliver,
                                                 history_size), daemon=True).start()
    return bridge


class Bridge:
    """One room's connection to Redis, and the stream its processes share."""

    def __init__(self, client, stream):
        self.client, self.stream = client, stream
        self.publish_script = client.register_script(PUBLISH_SCRIPT)
        self.clock_offset = None  # Redis's clock minus our monotonic one, in ms: a little
        #                           low if anything

    def publish(self, frame, sender=""):
        """Send a frame to every process, this one included; ConnectionError if Redis is
        away. `sender` (whose address it is) comes back with it to deliver()."""
        try:
            stored = self.store(frame, sender)
        except redis.RedisError as error:
            log.warning("Could not publish to Redis: %s", error)
            stored = False
        if not stored:
            raise ConnectionError(NOT_DELIVERED)

    def store(self, frame, sender):
        """Add the frame to the stream if Redis gets to it within DEADLINE; True if it did."""
        if self.clock_offset is None:
            seconds, microseconds = self.client.time()
            self.clock_offset = seconds * 1000 + microseconds // 1000 - milliseconds()
        deadline = milliseconds() + self.clock_offset + DEADLINE * 1000
        stored, now = self.publish_script(keys=[self.stream],
                                          args=[frame, deadline, STREAM_LENGTH, sender])
        # Redis read its clock before we heard it, so this is its clock now, or a little
        # less: deadlines come out early rather than late.
        self.clock_offset = now - milliseconds()
        if stored != 1:
            log.warning("Redis got to a message after its deadline, and dropped it")
        return stored == 1

    def read_after(self, last):
        """The messages numbered after `last`, waiting up to READ_WAIT for one to arrive."""
        reply = self.client.xread({self.stream: last}, block=READ_WAIT * 1000)
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3 answers {stream: [entries]}
            return reply[self.stream][0]
        return reply[0][1]  # RESP2 answers [[stream, entries]]


def milliseconds():
    return time.monotonic_ns() // 1_000_000


def relay_forever(bridge, room, deliver, history_size):
    """Deliver each message in the stream once and in order, whenever Redis is there,
    until the room (a weak reference) is gone."""
    last = None  # the number of the last message delivered; None until the first read
    failures = 0
    while room() is not None:
        try:
            if last is None:  # a newcomer's history: the newest messages, oldest first
                entries = bridge.client.xrevrange(bridge.stream, count=history_size)[::-1]
                last = "0-0"  # so an empty stream is read from its start
            else:
                entries = bridge.read_after(last)
            if failures:
                log.warning("Connected to Redis again")
            failures = 0
            for number, fields in entries:
                last = number
                if "frame" in fields:  # else not ours: another program's, skip it
                    hand_over(room, deliver, fields["frame"], fields.get("from", ""))
        except redis.RedisError as error:
            if not failures:
                log.warning("Lost Redis (%s); reading again when it is back", error)
            failures += 1
            time.sleep(min(RETRY_FIRST * 2 ** failures, RETRY_MAX))
    bridge.client.close()


def hand_over(room, deliver, frame, sender):
    """deliver() to the room if it still lives; holding it only meanwhile."""
    alive = room()
    if alive is not None:
        deliver(alive, frame, sender)
