"""Each connection's reader thread, as simple-websocket runs it, with what the chat needs.

simple-websocket reads every connection in a thread of its own, which answers pings and
closes, and queues messages for `ws.receive()`. app.py passes `ReaderThread` and `Selector`
to it (SOCK_SERVER_OPTIONS) so that:

- the handler always learns that the connection is over. The library sets its "wake up"
  event before it marks the connection closed (after a 1009), or not at all (when the
  thread dies, e.g. of EMFILE), so `ws.receive()` could wait forever: a zombie holding
  its `clients` entry, its thread and its descriptor.
- `ws.receive()` returns when each message arrived, with the message: the rate limits
  count arrivals, not the moment the handler gets round to a message (it may have been
  held up, e.g. by a slow Redis).
- the bytes one address makes us read are bounded (limits.pace_reading), pings and other
  control frames included, which never reach the handler.
"""
import selectors
import threading
import time

import limits

# The library's default, epoll, costs a descriptor per connection on top of the socket,
# and creating it is what fails first when descriptors run out. poll() needs none.
Selector = getattr(selectors, "PollSelector", selectors.SelectSelector)


class ReaderThread(threading.Thread):
    def __init__(self, target):
        super().__init__(target=target)
        self.ws = target.__self__  # the simple_websocket.Server this thread reads
        address = self.ws.environ["REMOTE_ADDR"]
        self.ws.input_buffer = Arrivals()
        self.ws.sock = PacedSocket(self.ws.sock, address)

    def run(self):
        try:
            super().run()
        except Exception:  # e.g. OSError EMFILE creating the selector: the connection
            pass           # is over, and the finally below tells the handler so
        finally:
            self.ws.connected = False
            self.ws.event.set()  # now receive() raises ConnectionClosed


class Arrivals(list):
    """The queue `ws.receive()` pops from, each message stamped with when it arrived."""

    def append(self, message):
        super().append((time.monotonic(), message))


class PacedSocket:
    """The connection's socket, whose recv() charges what it reads to the address."""

    def __init__(self, sock, address):
        self.sock, self.address = sock, address

    def recv(self, size):
        data = self.sock.recv(size)
        limits.pace_reading(self.address, len(data))
        return data

    def __getattr__(self, name):  # everything else is the socket's own
        return getattr(self.sock, name)
