"""PEER, for bench.py: Flask-SocketIO on gevent, as its docs recommend for production.

gevent and gevent-websocket installed, the standard library monkey-patched first, and
socketio.run(), which then serves with gevent's WSGI server and websocket handler.
Run: python bench/peers/socketio_gevent.py PORT
"""
from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402  (after monkey-patching, as gevent requires)

from flask import Flask  # noqa: E402
from flask_socketio import SocketIO  # noqa: E402

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent")


@socketio.on("message")
def message(data):
    socketio.emit("message", data)


if __name__ == "__main__":
    socketio.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_output=False)
