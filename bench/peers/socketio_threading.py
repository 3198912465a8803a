"""PEER, for bench.py: Flask-SocketIO in threading mode, its chat example's shape.

Clients speak Socket.IO (Engine.IO 4 over a websocket); every "message" event goes to all.
Run: flask --app bench/peers/socketio_threading.py run
"""
from flask import Flask
from flask_socketio import SocketIO

app = Flask(__name__)
socketio = SocketIO(app, async_mode="threading")


@socketio.on("message")
def message(data):
    socketio.emit("message", data)
