"""At start-up, check that the libraries' private parts the safeguards rely on are there.

app.py calls `verify()` when the chat is registered on an app, standalone or in a host:
if a new release of simple-websocket, Werkzeug or wsproto has moved one of them, the chat
refuses to start with a message naming the installed versions, rather than start and fail
later, one connection at a time, in a way no test here has seen.
"""
import inspect
from importlib import metadata

import simple_websocket.ws
import werkzeug.routing
import werkzeug.serving
from wsproto import WSConnection
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import FrameProtocol

LIBRARIES = ("simple-websocket", "flask-sock", "Werkzeug", "wsproto")
CHECKED_WITH = "simple-websocket 1.1.0, flask-sock 0.7.0, Werkzeug 3.1, wsproto 1.2 and 1.3"


def verify():
    """Raise RuntimeError, naming the versions installed, if anything relied on moved."""
    problems = [what for what, holds in CHECKS if not holds()]
    if problems:
        installed = ", ".join(f"{name} {version(name)}" for name in LIBRARIES)
        raise RuntimeError(
            "The chat relies on private parts of its libraries that have changed: "
            + "; ".join(problems) + f". Installed: {installed}. Checked with {CHECKED_WITH}:"
            " install the versions requirements.txt allows (pip install -r requirements.txt).")


def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def source(function):
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


def server_takes(*names):
    parameters = inspect.signature(simple_websocket.ws.Server.__init__).parameters
    return all(name in parameters for name in names)


def one_frame_encodes():
    return bytes(FrameProtocol(client=False, extensions=[]).send_data("hi")) == b"\x81\x02hi"


Base = simple_websocket.ws.Base
CHECKS = [
    ("simple_websocket.Server no longer takes ping_interval, max_message_size, "
     "thread_class and selector_class",
     lambda: server_takes("ping_interval", "max_message_size", "thread_class",
                          "selector_class")),
    ("simple-websocket no longer starts its reader as thread_class(target=self._thread)",
     lambda: "thread_class(target=self._thread)" in source(Base.__init__)),
    ("simple-websocket no longer uses its reader thread only for .name and .start(), which "
     "a refused connection's stand-in (websocket.NoReader) provides",
     lambda: "self.thread.name = self.thread.name" in source(Base.__init__)
     and "self.thread.start()" in source(Base.__init__)
     and all(source(method).count("self.thread") == 0 for method in
             (Base.close, Base.receive, Base.send, Base._thread, Base._handle_events))),
    ("simple-websocket no longer queues messages in ws.input_buffer, popped oldest first",
     lambda: "self.input_buffer = []" in source(Base.__init__)
     and "self.input_buffer.pop(0)" in source(Base.receive)
     and "self.input_buffer.append(" in source(Base._handle_events)),
    ("simple-websocket's reader no longer reads and writes through ws.sock",
     lambda: "self.sock.recv(" in source(Base._thread)
     and "self.sock.send(" in source(Base._handle_events)
     and "self.sock.send(" in source(Base.close)),
    ("simple-websocket no longer waits in receive() on ws.event and ws.connected",
     lambda: "self.event.wait(" in source(Base.receive)
     and "self.connected" in source(Base.receive)),
    ("simple-websocket no longer finds the socket in environ['werkzeug.socket'] and "
     "environ['gunicorn.socket'], nor says which in ws.mode",
     lambda: all(text in source(simple_websocket.ws.Server.__init__) for text in
                 ("'werkzeug.socket'", "'gunicorn.socket'", "self.mode = 'werkzeug'",
                  "self.mode = 'gunicorn'"))),
    ("simple-websocket no longer keeps its wsproto connection in ws.ws",
     lambda: "self.ws = WSConnection(" in source(Base.__init__)),
    ("wsproto's connection no longer has a state with ConnectionState.OPEN",
     lambda: hasattr(WSConnection, "state") and hasattr(ConnectionState, "OPEN")),
    ("wsproto's FrameProtocol(client=False, extensions=[]).send_data no longer encodes "
     "one text frame", one_frame_encodes),
    ("Werkzeug's development server no longer puts the socket in environ['werkzeug.socket']",
     lambda: "werkzeug.socket" in source(werkzeug.serving.WSGIRequestHandler.make_environ)),
    ("Werkzeug's Rule no longer takes websocket=True",
     lambda: "websocket" in inspect.signature(werkzeug.routing.Rule.__init__).parameters),
]
