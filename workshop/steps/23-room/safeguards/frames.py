"""Frames encoded once, and written whole on a socket that the library writes on too.

app.py encodes each message with text_frame() once for everyone, writes it to a client
with send_now() when that needs no waiting, and otherwise leaves it to the client's writer,
which sends with send_whole(); websocket.py calls share_socket() on each connection as it
opens.

Why not simple-websocket's ws.send()? It encodes the frame again for every client, and
writes it with sock.send(): with a send timeout (SO_SNDTIMEO) a send that times out
part-way returns a short count, the rest of the frame is silently dropped, and the next
frame follows: the client's stream is corrupt. The library's own reader thread also
writes on the socket (pongs, pings, close frames), with no lock; two writers interleaving
corrupt the stream as well. So every write on the socket, ours and the library's, goes
through one lock and goes out whole, or the connection is cut with nothing after it.

Upstream: simple-websocket #45 (the partial send), flask-sock #85 (sends from several
threads); neither is fixed in simple-websocket 1.1.0 and flask-sock 0.7.0.

Relies on (selfcheck.py checks them): simple-websocket looking up `ws.sock` for each of
its writes, which are all `sock.send(data)`; `ws.ws`, its wsproto connection, whose
`state` leaves ConnectionState.OPEN before the library builds a close frame; wsproto's
FrameProtocol(client=False, extensions=[]).send_data(text), which encodes one frame.
"""
import socket
import threading

from wsproto.connection import ConnectionState
from wsproto.frame_protocol import FrameProtocol


def text_frame(text):
    """The bytes of a server's text frame: unmasked, as servers send, so fit for anyone."""
    # A new FrameProtocol each time: it keeps state, and many threads encode at once.
    return bytes(FrameProtocol(client=False, extensions=[]).send_data(text))


def share_socket(ws):
    """Make every write on ws's socket whole and one at a time; call it before writing."""
    # Our frames are never compressed, and shared by every client. RFC 7692 allows
    # that even where compression was agreed, but this server declines it (app.py
    # hides the offer; the library agrees only to what is offered): check, not assume.
    if ws.environ.get("HTTP_SEC_WEBSOCKET_EXTENSIONS"):
        raise RuntimeError("frames.py needs connections without extensions")
    ws.sock = WholeWrites(ws.sock)  # the library looks ws.sock up for every write


def send_now(ws, frames):
    """Write the frames if that needs no waiting: True if the socket took them all at once.

    False if another write holds the socket, the socket has no room, the connection is
    closing, or it failed (then it is cut). The caller then queues the frames for its
    writer, whose next send_whole() calls must begin with them: if the socket took part,
    that part is not sent again, and a write of the library's in between finishes the
    frame begun first. On Windows (no MSG_DONTWAIT) it is always False.
    """
    return ws.sock.write_now(ws.ws, b"".join(frames))


def send_whole(ws, frames):
    """Write the frames in one go; False (and nothing written) if the connection is closing.

    If the socket fails part-way (SEND_TIMEOUT passed, reset, ...), it is cut before the
    exception is raised: nothing can follow the part-written bytes.
    """
    return ws.sock.write_frames(ws.ws, frames)


# A send that returns at once, whatever room the socket has; Windows has no such flag.
DONT_WAIT = getattr(socket, "MSG_DONTWAIT", None)


class WholeWrites:
    """A socket whose writes each go out whole, one at a time."""

    def __init__(self, sock):
        self.sock = sock
        self.lock = threading.Lock()
        # When write_now() wrote only part of its data, the rest goes first in the next
        # write, whoever makes it, and our next writes skip the data's length.
        self.rest, self.skip = b"", 0

    def write_now(self, connection, data):
        if DONT_WAIT is None or not self.lock.acquire(blocking=False):
            return False  # someone is writing: the frame waits its turn
        try:
            if connection.state is not ConnectionState.OPEN or self.skip:
                return False
            sent = self.sock.send(data, DONT_WAIT)
            if sent < len(data):  # kept under the lock: nothing may come in between
                self.rest, self.skip = data[sent:], len(data)
            return sent == len(data)
        except BlockingIOError:
            return False  # no room at all
        except OSError:  # reset, or cut already: the connection is over
            self.cut()
            return False
        finally:
            self.lock.release()

    def write_frames(self, connection, frames):
        with self.lock:
            # The library moves wsproto out of OPEN before it builds its close frame, so
            # checked under the lock, no data frame ever follows a close frame.
            if connection.state is not ConnectionState.OPEN:
                return False
            data = b"".join(frames)
            skipped = min(self.skip, len(data))  # begun by write_now(): only its rest goes
            self.skip -= skipped
            self.write(data[skipped:])
            return True

    def send(self, data):
        """The library's writes: pongs, pings, close frames."""
        with self.lock:
            self.write(data)
        return len(data)

    def write(self, data):
        """Write data whole, after the rest of a frame begun, if any."""
        try:
            self.sock.sendall(self.rest + data)  # each send() inside waits at most SO_SNDTIMEO
            self.rest = b""
        except BaseException:  # cut it before the lock is let go: nothing may follow
            self.cut()
            raise

    def cut(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed

    def close(self):
        # Waits for a write in progress: the file descriptor must not be closed and
        # reused by another connection while sendall() still writes to it.
        with self.lock:
            self.sock.close()

    def __getattr__(self, name):  # recv, fileno, shutdown, setsockopt: the socket's own
        return getattr(self.sock, name)
