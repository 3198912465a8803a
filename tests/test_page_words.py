"""The hardened chat's page, hardened/chat.html, on its own in Chromium: it takes the
server's settings from its <body> (the server's index() writes them there), and when the
connection drops before the server answered some of its messages, it says which.

The server here is a stub on a free loopback port: it serves the page with its headers
(safeguards/headers.py), as a server with the settings a test gives would write it, and
answers each message with its echo, or, when a test says, with nothing at all. Skipped, as
tests/test_browser.py is, without Debian's chromium and Playwright.
"""
import html
import json
import pathlib
import re
import socket
import threading
from types import SimpleNamespace

import pytest
from flask import Flask
from flask_sock import Sock
from werkzeug.serving import make_server

from chat_helpers import wait_until
from test_browser import (BROWSER_TIMEOUT, browser, expect, expect_messages,  # noqa: F401
                          say, watch_for_errors)
from hardened import bp
from hardened.safeguards import headers

PAGE = (pathlib.Path(__file__).parent.parent / "hardened" / "chat.html").read_text(
    encoding="utf-8")


def quoted(text):
    """A message as the page quotes it: in quotes, isolated from the sentence around it."""
    return f'"\u2068{text}\u2069"'


def page_with(settings):
    """The page as a server with these settings sends it: each a data- attribute of its
    <body>, such as {"history-size": 3}."""
    page = PAGE
    for name, value in settings.items():
        attribute = f'data-{name}="{html.escape(str(value))}"'
        page = re.sub(rf' data-{name}="[^"]*"', "", page)  # the page's own value, if any
        page = page.replace("<body", f"<body {attribute}", 1)
    return page


def stub_app(stub):
    """A server that serves the page and echoes each message to its sender, while
    stub.answering; it sends each newcomer stub.history first, and notes every message."""
    app = Flask("stub")

    @app.get("/")
    def index():
        page = page_with(stub.settings)
        return page, headers.for_page(page)

    @Sock(app).route("/ws")
    def chat(ws):
        stub.sockets.append(ws.sock)
        stub.connections.append(ws)
        for frame in stub.history:
            ws.send(frame)
        while True:
            message = json.loads(ws.receive())
            stub.received.append(message)
            if stub.answering:
                name = stub.settings.get("speaker") or message["name"] or "anonymous"
                ws.send(json.dumps({"name": name, "message": message["message"]}))

    return app


def drop(stub):
    """Cut every connection without a word, as a server that restarts does."""
    for sock in stub.sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # closed already
    stub.sockets.clear()


@pytest.fixture
def stub():
    """The stub, served on a free port: a test sets its settings before opening a page."""
    stub = SimpleNamespace(settings={}, history=[], answering=True, received=[], sockets=[],
                           connections=[])
    httpd = make_server("127.0.0.1", 0, stub_app(stub), threaded=True)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    stub.url = f"http://127.0.0.1:{httpd.server_port}/"
    yield stub
    httpd.shutdown()
    drop(stub)
    httpd.server_close()


@pytest.fixture
def open_page(browser, stub):  # noqa: F811
    """Open the stub's page as a new person, online; no page may log an error."""
    contexts, errors = [], []

    def open_page(name="Ada"):
        context = browser.new_context()
        contexts.append(context)
        context.set_default_timeout(BROWSER_TIMEOUT * 1000)  # milliseconds
        page = context.new_page()
        watch_for_errors(page, name, errors)
        page.goto(stub.url)
        expect(page.locator("#status")).to_have_text("online")
        if page.locator("#name").is_visible():
            page.fill("#name", name)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == [], "the pages had JavaScript errors"


def send_unanswered(stub, page, texts):
    """Send messages that the stub takes and does not answer, as a server that goes down
    under them."""
    stub.answering = False
    before = len(stub.received)
    for text in texts:
        say(page, text)
    wait_until(lambda: len(stub.received) == before + len(texts), timeout=BROWSER_TIMEOUT)


def test_the_page_says_which_of_its_messages_may_not_have_gone_out(stub, open_page):
    ada = open_page()
    say(ada, "answered")
    expect_messages(ada, [("Ada", "answered")])
    send_unanswered(stub, ada, ["on its way", "right behind it"])
    drop(stub)
    said = ('Your last 2 messages may not have gone out: '
            f'{quoted("on its way")}, {quoted("right behind it")}.'
            ' The connection dropped before the chat answered.'
            f' {quoted("right behind it")} is in the box: press Enter to send it again'
            ' once online.')
    expect(ada.locator("#error")).to_have_text(said)
    expect(ada.locator("#message")).to_have_value("right behind it")
    expect(ada.locator("#status")).to_have_text("online")  # back, and still says it
    expect(ada.locator("#error")).to_have_text(said)
    expect_messages(ada, [])  # the stub has no history: the words are no message


def test_an_unanswered_message_comes_back_to_an_empty_box(stub, open_page):
    ada = open_page()
    send_unanswered(stub, ada, ["lost?"])
    ada.fill("#message", "")  # emptied since
    drop(stub)
    expect(ada.locator("#message")).to_have_value("lost?")
    expect(ada.locator("#error")).to_have_text(
        f'Your last message may not have gone out: {quoted("lost?")}. The connection'
        f' dropped before the chat answered. {quoted("lost?")} is in the box: press Enter'
        ' to send it again once online.')
    stub.answering = True
    expect(ada.locator("#status")).to_have_text("online")
    ada.fill("#message", "something else")
    ada.press("#message", "Enter")  # sending again is the page's answer: the words go
    expect(ada.locator("#error")).to_have_text("")


def test_a_refused_message_comes_back_to_an_empty_box(stub, open_page):
    ada = open_page()
    send_unanswered(stub, ada, ["too fast?"])
    ada.fill("#message", "")  # emptied since
    stub.connections[-1].send(json.dumps({"error": "You are sending too fast; wait a moment."}))
    expect(ada.locator("#error")).to_have_text("You are sending too fast; wait a moment.")
    expect(ada.locator("#message")).to_have_value("too fast?")


def test_many_unanswered_messages_are_named_in_short(stub, open_page):
    ada = open_page()
    long = "a long message that says far more than a notice has room to quote"
    send_unanswered(stub, ada, [long] + [f"number {n}" for n in range(2, 8)])
    ada.fill("#message", "typed since")
    drop(stub)
    expect(ada.locator("#error")).to_have_text(
        'Your last 7 messages may not have gone out: '
        f'{quoted(long[:39] + "…")}, {quoted("number 2")}, {quoted("number 3")},'
        f' {quoted("number 4")}, {quoted("number 5")}, and 2 more.'
        ' The connection dropped before the chat answered.')  # the box holds none of them
    expect(ada.locator("#message")).to_have_value("typed since")


def test_the_box_and_the_list_follow_the_servers_settings(stub, open_page):
    stub.settings = {"max-message-chars": 20, "max-name-chars": 5, "history-size": 3}
    stub.history = [json.dumps({"name": "Bob", "message": f"old {n}"}) for n in range(1, 6)]
    ada = open_page()
    expect_messages(ada, [("Bob", "old 3"), ("Bob", "old 4"), ("Bob", "old 5")])
    expect(ada.locator("#message")).to_have_attribute("maxlength", "20")
    expect(ada.locator("#count")).to_have_text("20 characters left")
    expect(ada.locator("#name")).to_have_value("Ada")
    ada.fill("#name", "Adalbert")
    expect(ada.locator("#name")).to_have_value("Adalb")
    ada.fill("#name", "Ada")
    ada.fill("#message", "x" * 25)
    expect(ada.locator("#message")).to_have_value("x" * 20)
    say(ada, "new")
    expect_messages(ada, [("Bob", "old 4"), ("Bob", "old 5"), ("Ada", "new")])


def test_a_speaker_named_by_the_host_has_no_name_box_and_sends_that_name(stub, open_page):
    stub.settings = {"speaker": "Ada Lovelace"}
    ada = open_page()
    expect(ada.locator("#name")).to_be_hidden()
    say(ada, "hello")
    expect(ada.locator("#messages .name")).to_have_text(["Ada Lovelace (you)"])
    assert stub.received == [{"name": "Ada Lovelace", "message": "hello"}]
    stub.settings = {}  # a page for nobody in particular: the box is there to type in
    expect(open_page("Bob").locator("#name")).to_be_visible()


def test_an_apps_settings_reach_its_page_through_the_real_chat(open_page, stub):
    """Not the stub: the chat itself, on an app whose config sets the limits, writes them
    on the page it serves."""
    app = Flask("a_host")
    app.config.update(CHAT_MAX_MESSAGE_CHARS=20, CHAT_HISTORY_SIZE=3)
    app.register_blueprint(bp, url_prefix="/chat")
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    stub.url = f"http://127.0.0.1:{httpd.server_port}/chat/"  # where open_page goes
    try:
        ada = open_page()
        expect(ada.locator("#message")).to_have_attribute("maxlength", "20")
        for n in range(1, 5):
            say(ada, f"message {n}")
        expect_messages(ada, [("Ada", f"message {n}") for n in range(2, 5)])
    finally:  # open_page closes the page, and its websocket with it
        httpd.shutdown()
        httpd.server_close()
