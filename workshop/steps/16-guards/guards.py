"""Checks on each request before it reaches the chat, and one repair after it.

app.py calls `install(app)` once. None of this is the chat's story, but each keeps a
promise that the README makes:

- a malformed websocket handshake gets a 400 that says why, instead of a 500 and a
  traceback (simple-websocket leaves these checks to wsproto, which raises);
- with ALLOWED_HOSTS set, a page whose own name points at our address is refused
  (DNS rebinding: its Host and Origin both name the attacker's site);
- one address cannot fill the room with connections (limits.py counts them);
- behind TRUSTED_PROXIES reverse proxies, each client's address is read from the
  X-Forwarded-For they add, so that the per-address limits see people, not the proxy;
- under `flask run`, nothing is written after a websocket's close frame.
"""
import base64
import binascii
import os
import socket

from flask import Response, g, request
from werkzeug.middleware.proxy_fix import ProxyFix

import limits

# Behind a LAN or the internet, the host names the chat answers to, e.g.
# "chat.example.org,192.168.1.20". Unset, any Host is served, as `flask run` wants.
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS")
# How many reverse proxies stand in front of the chat, each adding X-Forwarded-For.
TRUSTED_PROXIES = int(os.environ.get("TRUSTED_PROXIES", "0"))
WEBSOCKET_PATH = "/ws"
LEFTOVER_READS = 1000  # of 64 KiB: what a closed websocket's client had sent, thrown away
LEFTOVER_QUIET = 0.1   # seconds of silence after which nothing more is on its way


def install(app):
    if TRUSTED_PROXIES:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=TRUSTED_PROXIES)
    app.before_request(refuse_other_hosts)
    app.before_request(refuse_bad_handshakes)
    app.before_request(limit_connections_per_address)
    app.teardown_request(release_the_address)
    app.after_request(write_nothing_after_the_close)


def refuse_other_hosts():
    if ALLOWED_HOSTS and request.host.rsplit(":", 1)[0].lower() not in [
            host.strip().lower() for host in ALLOWED_HOSTS.split(",")]:
        return plain_error(400, "This chat does not answer to that host name.")


def refuse_bad_handshakes():
    if request.path == WEBSOCKET_PATH:
        refusal = handshake_error(request.headers)
        if refusal:
            return plain_error(400, refusal, {"Sec-WebSocket-Version": "13"})


def handshake_error(headers):
    """Why this websocket handshake is malformed, or None if it is fine."""
    if headers.get("Sec-WebSocket-Version") != "13":
        return "Only websocket version 13 (RFC 6455) is spoken here."
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        if len(base64.b64decode(key, validate=True)) == 16:
            return None
    except binascii.Error:
        pass
    return "Sec-WebSocket-Key must be 16 random bytes in base64 (RFC 6455, 4.1)."


def limit_connections_per_address():
    if request.path == WEBSOCKET_PATH:
        refusal = limits.admit(request.remote_addr)
        if refusal:
            return plain_error(*refusal)
        g.admitted = True


def release_the_address(error):
    if g.pop("admitted", False):
        limits.release(request.remote_addr)


def write_nothing_after_the_close(response):
    """Under `flask run`, flask-sock lets Werkzeug write "HTTP/1.1 200 OK" onto the
    socket after the websocket's close frame: garbage to the client. Werkzeug writes
    nothing for a client that went away, so after a websocket, say that it did."""
    # flask-sock's own response is a 200; our refusals above are not, and must be sent.
    if (request.path == WEBSOCKET_PATH and response.status_code == 200
            and "werkzeug.socket" in request.environ):
        return NothingMore()
    return response


class NothingMore(Response):
    def __call__(self, environ, start_response):
        # What the client had sent already (the rest of a frame over the limit, say)
        # is thrown away, or Werkzeug would read it as a request and answer it. Some
        # of it may still be on its way: read until the client closes or goes quiet.
        # Then the socket is shut, or Werkzeug would wait on it for another request.
        sock = environ["werkzeug.socket"]
        try:
            sock.settimeout(LEFTOVER_QUIET)
            for _ in range(LEFTOVER_READS):
                if not sock.recv(65536):
                    break
        except OSError:
            pass  # quiet, or already gone
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        # Werkzeug's write of the status line now fails with BrokenPipeError, which it
        # takes quietly for a client that went away. Raising here instead would reach
        # `flask run --debug`'s debugger, which writes its error page onto the socket.
        return super().__call__(environ, start_response)


def plain_error(status, text, extra_headers=None):
    return Response(text + "\n", status, extra_headers, mimetype="text/plain")
