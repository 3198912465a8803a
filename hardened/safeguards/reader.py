"""Each connection's reader thread, as simple-websocket runs it, with what the chat needs.

simple-websocket reads every connection in a thread of its own, which answers pings and
closes, and queues messages for `ws.receive()`. websocket.py gives it `ReaderThread` and
`Selector` for the chat's connections alone, so that:

- the handler always learns that the connection is over. The library sets its "wake up"
  event before it marks the connection closed (after a 1009), or not at all (when the
  thread dies, e.g. of EMFILE), so `ws.receive()` could wait forever: a zombie holding
  its `clients` entry, its thread and its descriptor.
- each message is stamped with when it arrived (websocket.arrival_time): the rate limits
  count arrivals, not the moment the handler gets round to a message (it may have been
  held up, e.g. by a slow Redis).
- the bytes one address makes us read are bounded (limits.pace_reading), pings and other
  control frames included, which never reach the handler, and each message counts as
  limits.MESSAGE_BYTES more; and the connection's shares of its address's allowances are
  given as it opens (limits.join), from what they hold then.

Relies on simple-websocket 1.1's private parts (selfcheck.py checks them): the thread is
made as `thread_class(target=ws._thread)`; `ws.input_buffer`, the list that `_thread`
appends messages to and `receive()` pops from the front of; `ws.sock`, looked up for every
read; `ws.event` and `ws.connected`, with which `receive()` waits.
"""
import collections
import logging
import selectors
import threading
import time
import weakref

from . import limits

log = logging.getLogger(__name__)

# The library's default, epoll, costs a descriptor per connection on top of the socket,
# and creating it is what fails first when descriptors run out. poll() needs none.
Selector = getattr(selectors, "PollSelector", selectors.SelectSelector)


class ReaderThread(threading.Thread):
    def __init__(self, target):
        super().__init__(target=target, daemon=True)  # never what keeps a process alive
        self.ws = target.__self__  # the simple_websocket.Server this thread reads
        self.address = self.ws.environ["REMOTE_ADDR"]
        self.ws.input_buffer = Arrivals(self.address, self.ws)
        limits.join(self.address, self.ws)
        self.ws.sock = PacedSocket(self.ws.sock, self.address, self.ws)

    def run(self):
        try:
            super().run()
        except OSError as error:  # e.g. EMFILE creating the selector: the connection is
            log.warning("%s: connection lost: %s", self.address, error)  # over, and...
        finally:
            self.ws.connected = False
            self.ws.event.set()  # ...now receive() raises ConnectionClosed


class Arrivals(list):
    """The messages `ws.receive()` pops from the front of, and when each arrived. Each is
    charged limits.MESSAGE_BYTES as it arrives: the reading slows for a connection that
    sends many small ones."""

    def __init__(self, address, connection):
        super().__init__()
        self.times = collections.deque()
        self.last_arrival = None  # of the message popped last
        self.address, self.connection = address, weakref.ref(connection)  # as PacedSocket

    def append(self, message):
        limits.pace_reading(self.address, self.connection(), limits.MESSAGE_BYTES)
        self.times.append(time.monotonic())  # once paced: it arrives when we take it
        super().append(message)

    def pop(self, index=-1):
        message = super().pop(index)  # raises IndexError when empty, as receive() expects
        if index != 0:
            raise RuntimeError("the library no longer reads messages oldest first")
        self.last_arrival = self.times.popleft()
        return message


class PacedSocket:
    """The connection's socket, whose recv() charges what it reads to the address."""

    def __init__(self, sock, address, connection):
        self.sock, self.address = sock, address
        # The websocket, whose shares are charged; weakly, as it holds this socket (and
        # its reader thread, the only one to call recv(), holds it).
        self.connection = weakref.ref(connection)

    def recv(self, size):
        data = self.sock.recv(size)
        limits.pace_reading(self.address, self.connection(), len(data))
        return data

    def __getattr__(self, name):  # everything else is the socket's own
        return getattr(self.sock, name)
