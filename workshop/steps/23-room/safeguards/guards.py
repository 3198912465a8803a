"""The door: what a request must pass before it becomes one of the chat's websockets.

websocket.py calls `refusal()` before each handshake it is asked for; `client_address()`
is the address every limit counts. None of this is the chat's story, but each keeps a
promise that the docs make:

- with CHAT_ALLOWED_HOSTS set, a page whose own name points at our address is refused
  (DNS rebinding: its Host and Origin both name the attacker's site);
- a malformed websocket handshake (no Host, a control character in a header, a key
  that is not 16 bytes in base64, ...) gets a 400 that says why, instead of a 500 and a
  traceback (simple-websocket leaves these checks to wsproto, which raises);
- another site's page cannot open the socket with our users' cookies (Origin);
- compression is declined (see decline_compression);
- behind CHAT_TRUSTED_PROXIES reverse proxies, each client's address is read from the
  X-Forwarded-For they add, so that the per-address limits see people, not the proxy.

Nothing here looks at a path: the checks run for the chat's websocket route, wherever an
app mounts it, and for nothing else of the app's. The two settings are the app's own
(settings.of_current_app()): two apps in one process may set them apart.

Relies on: Werkzeug's `request.host` and the environ keys HTTP_SEC_WEBSOCKET_EXTENSIONS
and HTTP_X_FORWARDED_FOR, which simple-websocket reads the handshake from.
"""
import base64
from urllib.parse import urlsplit

from flask import Response, request

from . import settings

# The headers a handshake is read from. Others (a cookie, say) may hold any text a
# browser sends: simple-websocket passes them on as UTF-8, which wsproto accepts.
HANDSHAKE_HEADERS = frozenset({
    "HTTP_HOST", "HTTP_ORIGIN", "HTTP_UPGRADE", "HTTP_CONNECTION", "HTTP_SEC_WEBSOCKET_KEY",
    "HTTP_SEC_WEBSOCKET_VERSION", "HTTP_SEC_WEBSOCKET_PROTOCOL", "HTTP_X_FORWARDED_FOR"})


def refusal():
    """A 400 or 403 response if this websocket handshake must not go on, else None."""
    malformed = header_error(request.environ) or handshake_error(request.headers)
    if malformed:
        return plain_error(400, malformed, {"Sec-WebSocket-Version": "13"})
    if not host_is_allowed():
        return plain_error(400, "This chat does not answer to that host name.")
    if not same_origin():
        return plain_error(403, "Only this chat's own page may open its socket.")
    decline_compression()
    return None


def host_is_allowed():
    allowed = settings.of_current_app().ALLOWED_HOSTS  # settings.py says what it is for
    return not allowed or request.host.rsplit(":", 1)[0].lower() in [
        host.strip().lower() for host in allowed.split(",")]


def header_error(environ):
    """Why these headers cannot make a handshake, or None. simple-websocket writes them out
    again for wsproto, which raises (a 500) on a missing Host or a control character, and
    a Host or key that is not ASCII fails before that, in Werkzeug or in base64."""
    if not environ.get("HTTP_HOST"):
        return "A websocket handshake needs a Host header (RFC 6455, 4.1)."
    for key, value in environ.items():
        if not key.startswith("HTTP_"):
            continue
        name = key[5:].replace("_", "-").title()
        if any(ord(char) < 0x20 and char != "\t" or ord(char) == 0x7f for char in value):
            return f"The {name} header holds a control character."
        if key in HANDSHAKE_HEADERS and not value.isascii():
            return f"The {name} header must be ASCII."
    return None


def handshake_error(headers):
    """Why this websocket handshake is malformed, or None if it is fine."""
    if headers.get("Sec-WebSocket-Version") != "13":
        return "Only websocket version 13 (RFC 6455) is spoken here."
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        if len(base64.b64decode(key, validate=True)) == 16:
            return None
    except ValueError:  # binascii.Error, or a character that is not ASCII
        pass
    return "Sec-WebSocket-Key must be 16 random bytes in base64 (RFC 6455, 4.1)."


def same_origin():
    """Another site's page must not open our socket with our users' cookies. Programs
    that are not browsers send no Origin, and may connect."""
    origin = request.headers.get("Origin")
    return origin is None or urlsplit(origin).netloc.lower() == request.host.lower()


def decline_compression():
    """Chat lines are ~100 bytes: compressing them for each client saves nothing, yet
    costs ~150 KB and several times the CPU per client. Browsers always offer it, and
    simple-websocket accepts whatever is offered, so we hide the offer from it."""
    request.environ.pop("HTTP_SEC_WEBSOCKET_EXTENSIONS", None)


def client_address():
    """The address the limits count: the peer's, or behind CHAT_TRUSTED_PROXIES proxies
    the one the outermost of them saw (as Werkzeug's ProxyFix reads it, for this request
    only: the rest of a host app keeps its own view)."""
    proxies = settings.of_current_app().TRUSTED_PROXIES
    forwarded = request.environ.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    if proxies and len(hops) >= proxies:
        return hops[-proxies]
    return request.remote_addr


def plain_error(status, text, extra_headers=None):
    return Response(text + "\n", status, extra_headers, mimetype="text/plain")
