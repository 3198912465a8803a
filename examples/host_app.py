"""An app of your own, with the hardened chat added at /chat: its own pages at / and
/about, and a websocket of its own at /echo (made with flask-sock, whose options the
hardened chat neither reads nor changes).

Try it in a folder of its own, with the folder hardened/ copied beside it:

    mkdir ../my-app && cp examples/host_app.py ../my-app/app.py
    cp -r hardened ../my-app/
    cd ../my-app && flask run

then open http://127.0.0.1:5000/chat/ in two windows.
"""
from flask import Flask
from flask_sock import Sock

import hardened

app = Flask(__name__)
app.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": 5}  # for /echo; the chat has its own
sock = Sock(app)
app.register_blueprint(hardened.bp, url_prefix="/chat")


@app.get("/")
def home():
    return '<h1>My app</h1><p><a href="/chat/">Chat</a> · <a href="/about">About</a></p>'


@app.get("/about")
def about():
    return "<h1>About</h1><p>An app that was here before the chat.</p>"


@sock.route("/echo")
def echo(ws):
    while True:
        ws.send(ws.receive())
