from flask import Flask, send_file
from flask_sock import Sock

app = Flask(__name__)
sock = Sock(app)


@app.get("/")
def index():
    return send_file("chat.html")


@sock.route("/ws")
def echo(ws):
    while True:
        ws.send(ws.receive())
