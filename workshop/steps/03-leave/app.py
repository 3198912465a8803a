"""A chat room: every message sent to the websocket goes to everyone connected.

Run it with `flask run`, then open http://127.0.0.1:5000 in two windows.
"""
from flask import Flask, send_file
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)

clients = set()


@app.get("/")
def index():
    return send_file("chat.html")


@sock.route("/ws")
def chat(ws):
    clients.add(ws)
    try:
        while True:
            message = ws.receive()
            for client in clients:
                client.send(message)
    finally:  # however the connection ended
        clients.discard(ws)
