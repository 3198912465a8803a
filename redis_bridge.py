"""One chat room across several processes, through Redis: app.py uses it when REDIS_URL is set.

Every process publishes the messages its clients send to one Redis channel, and hands
every message it hears on that channel to its own clients with app.py's deliver(). So a
message reaches everyone, whichever process they are connected to.

Redis also keeps the last messages in a list, for newcomers. One Lua script numbers each
message, adds it to the list and publishes it, in one step that nothing can interleave
with: the list and the channel carry the same messages in the same order. A process that
connects (or reconnects after Redis was away) subscribes first, then reads the list, and
delivers only what is numbered after the last message it delivered: nothing is missed or
repeated.
"""
import itertools
import logging
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

# Names of our own, so that other programs sharing the Redis server do not collide.
CHANNEL = "flask-websocket-chat"               # every message is published here...
HISTORY_KEY = "flask-websocket-chat:history"   # ...and kept here as "number frame"
NUMBER_KEY = "flask-websocket-chat:number"     # the number of the newest message
TIMEOUT = 2         # seconds Redis may take to answer; a sender's thread waits that long
RETRY_FIRST = 0.1   # seconds before reconnecting after Redis went away, doubling...
RETRY_MAX = 2       # ...up to this: chat is back within seconds of Redis coming back
QUIET_LIMIT = 10    # seconds of silence before we ping Redis: finds a vanished server
NOT_DELIVERED = "The message could not be delivered; try again in a moment."

# KEYS: NUMBER_KEY, HISTORY_KEY. ARGV: the frame, the history size, CHANNEL.
# A number is Redis's clock in microseconds, or one more than the last number if that is
# larger: numbers keep growing even when Redis restarts and has forgotten the last one.
PUBLISH_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local number = math.max(now, (tonumber(redis.call('GET', KEYS[1])) or 0) + 1)
number = string.format('%d', number)
redis.call('SET', KEYS[1], number)
local entry = number .. ' ' .. ARGV[1]
redis.call('RPUSH', KEYS[2], entry)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('PUBLISH', ARGV[3], entry)
"""

log = logging.getLogger(__name__)
client = None          # set by start()
publish_script = None  # set by start()
history_size = None    # set by start()


def start(url, deliver, size):
    """Connect to Redis, and from now on hand everything published to deliver()."""
    global client, publish_script, history_size
    # Fail at once instead of retrying: the sender is told, and can try again.
    client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=TIMEOUT,
                                  socket_connect_timeout=TIMEOUT, retry=Retry(NoBackoff(), 0))
    publish_script = client.register_script(PUBLISH_SCRIPT)
    history_size = size
    threading.Thread(target=relay_forever, args=(deliver,), daemon=True).start()


def publish(frame):
    """Send a frame to every process, this one included; ConnectionError if Redis is away."""
    try:
        publish_script(keys=[NUMBER_KEY, HISTORY_KEY], args=[frame, history_size, CHANNEL])
    except redis.RedisError as error:
        log.warning("Could not publish to Redis: %s", error)
        raise ConnectionError(NOT_DELIVERED) from None


def relay_forever(deliver):
    """Deliver each published frame once and in order, reconnecting whenever Redis is away."""
    newest = 0  # the number of the newest frame delivered
    failures = 0
    while True:
        pubsub = client.pubsub()
        try:
            subscribe(pubsub)
            # Subscribed first: a frame published from now on is on the channel, so
            # none falls between the list and the channel.
            missed = client.lrange(HISTORY_KEY, 0, -1)
            if failures:
                log.warning("Connected to Redis again")
            failures = 0
            for entry in itertools.chain(missed, published(pubsub)):
                number, frame = entry.split(" ", 1)
                if int(number) > newest:  # else it was both in the list and on the channel
                    deliver(frame)
                    newest = int(number)
        except (redis.RedisError, ValueError) as error:  # ValueError: not our entry
            if not failures:
                log.warning("Lost Redis (%s); reconnecting", error)
            failures += 1
            time.sleep(min(RETRY_FIRST * 2 ** failures, RETRY_MAX))
        finally:
            pubsub.close()


def subscribe(pubsub):
    pubsub.subscribe(CHANNEL)
    # Redis confirms before anything published on the channel reaches us.
    reply = pubsub.get_message(timeout=TIMEOUT)
    if not reply or reply["type"] != "subscribe":
        raise redis.TimeoutError("Redis did not confirm the subscription")


def published(pubsub):
    """Yield each entry published on the channel, until Redis stops answering."""
    heard = time.monotonic()
    while True:
        message = pubsub.get_message(timeout=QUIET_LIMIT)
        if message is not None:
            heard = time.monotonic()
            if message["type"] == "message":
                yield message["data"]
        elif time.monotonic() - heard > QUIET_LIMIT + TIMEOUT:
            raise redis.TimeoutError("Redis stopped answering pings")
        else:
            pubsub.ping()  # its answer, a "pong" message, is something heard
