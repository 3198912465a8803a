"""The settings a host may change, of two kinds.

The process's own (CHAT_CONNECTIONS_PER_ADDRESS and the other names below) are
environment variables, read once, at import: every app in the process shares them, as it
shares its addresses and its threads.

The chat's own belong to each app the chat is registered on: the app's config, each named
CHAT_ and the name of its constant in app.py (CHAT_HISTORY_SIZE, CHAT_ALLOWED_HOSTS, ...),
or, where the app sets none, an environment variable of that name. app.py reads them when
the chat is registered; the door's two (below) guards.py finds with of_current_app().

docs/limits.md lists them, with when to change each. A value that is not what a setting
takes stops the chat at start-up with a sentence naming it, rather than at the first
request that reads it. (The checkpoints of steps 18 to 22 read the door's two at their
first request: an error then, in the same words.)
"""
import os
from types import SimpleNamespace

from flask import current_app


def whole_number(name, default, least=0, most=None, config=None):
    """The setting `name`: from `config` (an app's) if it has it, else from the
    environment variable, else `default`; ValueError, in words, if out of its bounds."""
    value = looked_up(name, config)
    if value is None or isinstance(value, str) and value.strip() == "":
        return default
    try:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(value)  # True is 1 to Python, but not what anyone meant
        number = int(value)
    except ValueError:
        number = least - 1
    if most is not None and not least <= number <= most:
        raise ValueError(f"{name} must be a whole number from {least} to {most},"
                         f" not {value!r}.")
    if number < least:
        raise ValueError(f"{name} must be a whole number of at least {least},"
                         f" not {value!r}.")
    return number


def text(name, default=None, config=None):
    """The setting `name`, a line of text, looked up as whole_number() does."""
    value = looked_up(name, config)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name} must be text, not {value!r}.")
    if value is None or value.strip() == "":
        return default
    return value.strip()


def looked_up(name, config):
    if config is not None and config.get(name) is not None:
        return config[name]
    return os.environ.get(name)


def of_app(app):
    """The door's settings for `app` (guards.py), read from it once and kept with it."""
    door = app.extensions.get("chat.door")
    if door is None:
        door = app.extensions["chat.door"] = SimpleNamespace(
            # Behind a LAN or the internet, the host names the chat answers to, e.g.
            # "chat.example.org,192.168.1.20". Unset, any Host is served, as `flask run`
            # wants.
            ALLOWED_HOSTS=text("CHAT_ALLOWED_HOSTS", None, app.config),
            # How many reverse proxies stand in front of the chat, each adding
            # X-Forwarded-For: set it only where no client can reach the chat but through
            # them (docs/deploying.md). More than a few is a typo.
            TRUSTED_PROXIES=whole_number("CHAT_TRUSTED_PROXIES", 0, most=10,
                                         config=app.config))
    return door


def of_current_app():
    """The door's settings for the app serving this request."""
    return of_app(current_app)


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
# CHAT_SERVER_THREADS, gunicorn's threads per worker, is read by limits.py each time a
# websocket arrives: gunicorn.conf.py's hook sets it after the app is loaded.
