"""The settings a host may change, each an environment variable read once, at import.

docs/limits.md lists them, with when to change each. A value that is not what a setting
takes stops the chat at start-up with a sentence naming it, rather than at the first
request that reads it.
"""
import os


def whole_number(name, default, least=0, most=None):
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if most is not None and not least <= value <= most:
        raise ValueError(f"{name} must be a whole number from {least} to {most}, not {text!r}.")
    if value < least:
        raise ValueError(f"{name} must be a whole number of at least {least}, not {text!r}.")
    return value


# Behind a LAN or the internet, the host names the chat answers to, e.g.
# "chat.example.org,192.168.1.20". Unset, any Host is served, as `flask run` wants.
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS")
# How many reverse proxies stand in front of the chat, each adding X-Forwarded-For: set
# it only where no client can reach the chat but through them (docs/deploying.md).
TRUSTED_PROXIES = whole_number("TRUSTED_PROXIES", 0)
# Several processes as one room, through Redis: safeguards/redis_bridge.py.
REDIS_URL = os.environ.get("REDIS_URL")
# A classroom behind one NAT (venue Wi-Fi, a school), or everyone behind a proxy that is
# not trusted, shares one address: room for a class of 50, and their spare tabs.
CONNECTIONS_PER_ADDRESS = whole_number("CHAT_CONNECTIONS_PER_ADDRESS", 64, least=1)
# Messages a second that all of one address's connections may send together: 64 people
# at one message every two seconds, with room to spare. When it runs short, each
# connection still gets its even share of it (limits.py).
MESSAGES_PER_SECOND_PER_ADDRESS = whole_number("CHAT_MESSAGES_PER_SECOND_PER_ADDRESS", 40,
                                               least=1)
# How many leading bits of an IPv6 address the limits count as one address. A home or a
# phone is given a /64, so 64 holds each to one share; but whoever holds a /48 (every
# 6to4 address does) has 65,536 /64s, so where scripts come from such networks, 48 or 56
# (a home's usual delegations) holds a whole site to one share, its people included.
IPV6_PREFIX = whole_number("CHAT_IPV6_PREFIX", 64, least=32, most=128)
# Under gunicorn, the threads of each worker, which gunicorn.conf.py gives it: each
# websocket holds one for life, so the chat lets in that many less SPARE_THREADS.
SERVER_THREADS = whole_number("CHAT_SERVER_THREADS", 100, least=2)
