"""The chat's websocket route: flask-sock's `@sock.route`, with the chat's own options.

app.py registers its handler with `@websocket.route(bp, "/ws", SOCKET_OPTIONS)`. Why not
flask-sock's decorator? It builds every connection from `SOCK_SERVER_OPTIONS` in the whole
app's config: mounted in a host app that has websockets of its own, the chat's reader
thread and limits would reach the host's routes, and the host's options the chat's. Here
the options belong to the route, and so do the door's checks (guards.py) and the count of
connections per address (limits.py): wherever an app mounts the chat, they come with it,
and nothing else of the app's is touched.

Each connection the handler gets is ready for the chat: its reader thread is reader.py's,
and every write on it goes out whole (frames.py). `arrival_time(ws)` says when the
message `ws.receive()` last returned reached us.

A refused connection costs next to nothing: no thread reads it, and after the close
that refuses it, at most LEFTOVER_AFTER_REFUSAL bytes of what its client sends are read
(counted in its address's allowance of bytes, limits.py) before the connection is cut.

Relies on (selfcheck.py checks them at start-up):
- simple_websocket.Server(environ, **options), which takes the socket from
  environ["werkzeug.socket"] or environ["gunicorn.socket"], and `close()`;
  ConnectionClosed, which `receive()` raises once the connection is over;
- how flask-sock 0.7 ends a websocket request: under gunicorn a response that raises
  StopIteration, so gunicorn writes nothing more; under Werkzeug, see NothingMore;
- simple_websocket.Server making its reader as `thread_class(target=...)`, and using it
  only to set its `name` and call its `start()`, which NoReader does not start;
- Werkzeug and gunicorn using the request's socket by its file descriptor to the end
  of the request, and taking a write that fails with EPIPE as a client gone (see cut()).
"""
import functools
import os
import socket
import time

from flask import Response, request
from simple_websocket import ConnectionClosed, Server

from . import frames, guards, limits, reader

TRY_AGAIN_LATER = 1013  # the close code of a refusal (RFC 6455, 7.4.1; IANA registry)
LEFTOVER_READS = 1000  # of 64 KiB: what a closed websocket's client had sent, thrown away
LEFTOVER_QUIET = 0.1   # seconds of silence after which nothing more is on its way
# After the close that refuses a connection, a browser sends its own close frame (at most
# 131 bytes) and nothing else: read that much and some, so that the connection ends
# cleanly, and cut it then. Nothing more: a script that goes on sending (4 MiB of empty
# frames after each refusal, from 16 threads, made the server read 80 MB a second, and
# burn a core parsing it) is cut off, and what it sent is thrown away unread.
LEFTOVER_AFTER_REFUSAL = 4096  # bytes, at most; and at most what the address has left
REFUSAL_LINGER = 1             # seconds, at most, for the client's answer to the close


def route(bp, rule, options):
    """Register `handler(ws)` as `bp`'s websocket at `rule`, its connections made with
    `options` (simple_websocket.Server's keywords), read anew for each connection."""
    def decorator(handler):
        @functools.wraps(handler)
        def endpoint():
            refused = guards.refusal()
            if refused is not None:
                return refused
            # From here on, request.remote_addr is the client's, even behind proxies
            # (Werkzeug reads it once from the environ, simple-websocket from the environ).
            address = request.remote_addr = guards.client_address()
            request.environ["REMOTE_ADDR"] = address
            # gunicorn gives each websocket one of its threads for as long as it is open.
            refused = limits.admit(address, "gunicorn.socket" in request.environ)
            if refused is not None:
                return refuse_in_words(refused)
            try:
                ws = accept(**{"thread_class": reader.ReaderThread,
                               "selector_class": reader.Selector, **options})
                if ws is not None:
                    serve(handler, ws)
            finally:
                limits.release(address)
            return nothing_more()

        bp.route(rule, websocket=True)(endpoint)
        return handler
    return decorator


def refuse_in_words(reason):
    """Accept, then close with 1013 (Try Again Later) and the reason: a browser shows its
    page nothing of a refused handshake (a 429 or 503 is only a failed connection), but
    it hands the page a close frame's code and reason. Then read a little of what the
    client sends, and cut the connection."""
    ws = accept(thread_class=NoReader)
    if ws is not None:
        try:
            ws.close(TRY_AGAIN_LATER, reason)
            throw_away_leftover(request.remote_addr, server_socket())
        except (ConnectionClosed, OSError):
            pass  # gone
    return nothing_more()


class NoReader:
    """The thread simple-websocket would read a refused connection in: it never starts.
    Nothing the client sends is parsed; throw_away_leftover() reads a little of it."""
    name = "not started"

    def __init__(self, target):
        pass

    def start(self):
        pass


def server_socket():
    """The request's socket, as the server (Werkzeug or gunicorn) knows it."""
    environ = request.environ
    return environ.get("werkzeug.socket") or environ["gunicorn.socket"]


def throw_away_leftover(address, sock):
    """Read what the client of a refused connection sends, LEFTOVER_AFTER_REFUSAL bytes
    at most and no more than its address's allowance holds, until it has closed or gone
    quiet; then cut the connection."""
    allowed = limits.reserve_leftover(address, LEFTOVER_AFTER_REFUSAL)
    read, deadline = 0, time.monotonic() + REFUSAL_LINGER
    try:
        while read < allowed:
            sock.settimeout(max(min(LEFTOVER_QUIET, deadline - time.monotonic()), 0.001))
            data = sock.recv(allowed - read)
            read += len(data)
            if not data or time.monotonic() >= deadline:
                break
    except OSError:
        pass  # quiet, or gone
    limits.give_back_leftover(address, allowed - read)
    cut(sock)


def cut(sock):
    """End the connection now, and throw away unread what its client sent (a reset), yet
    leave the server a socket to finish the request on: its descriptor now holds one
    whose other end has left, which reads nothing and takes no write (EPIPE). Werkzeug
    and gunicorn take that as a client gone away; they read nothing more (gunicorn would
    read up to 64 KiB more, Werkzeug all the kernel holds) and write nothing."""
    stand_in, other_end = socket.socketpair()
    other_end.close()
    try:
        os.dup2(stand_in.fileno(), sock.fileno())  # closes the connection's descriptor
    except OSError:  # Windows cannot dup2 a socket: a plain shutdown, then
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    finally:
        stand_in.close()


def accept(**options):
    """The handshake: the connection, every write on it whole from now on; or None if the
    client left during it (a reset as the 101 went out was a 500 and a traceback)."""
    try:
        ws = Server(request.environ, **options)
    except OSError:
        return None
    frames.share_socket(ws)
    return ws


def serve(handler, ws):
    try:
        handler(ws)
    except ConnectionClosed:
        pass
    except OSError:  # the library's reader closes the socket when the client resets it:
        pass         # under gunicorn, often before the handler has even tuned it (EBADF)
    try:
        ws.close()  # the close frame, if the handler did not send one
    except (ConnectionClosed, OSError):
        pass  # the client closed first (the library has answered it), or is gone


def arrival_time(ws):
    """When the message that `ws.receive()` returned last reached us (time.monotonic())."""
    return ws.input_buffer.last_arrival


def nothing_more():
    """The response to a websocket's request: the server must write nothing more."""
    if "werkzeug.socket" in request.environ:  # looked for first, as simple-websocket does
        return NothingMore()
    if "gunicorn.socket" in request.environ:
        return GunicornDone()
    return Response()  # no other server is tested here


class GunicornDone(Response):
    def __call__(self, environ, start_response):
        raise StopIteration()  # gunicorn's own sign that the app wrote the response itself


class NothingMore(Response):
    """Under `flask run`, Werkzeug writes "HTTP/1.1 200 OK" onto the socket after the
    websocket's close frame: garbage to the client (flask-sock does not prevent it).
    Werkzeug writes nothing for a client that went away, so make it so."""

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
