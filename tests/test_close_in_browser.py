"""A close the server sends reaches the browser as a close, with its code and reason, on
each of the project's two pages (issue 30): the card's chat.html, served by app.py, and
the hardened chat's. Under Werkzeug, a handler that returns has `HTTP/1.1 200 OK` written
after its close frame; Chromium then reports "Invalid frame header", the page's onclose
gets 1006 and no reason, and the page shows nothing. A Python client that stops reading
at the close frame never sees it: only a browser does.

Each test serves its chat on a free loopback port, as `flask run` does, opens its page in
Chromium, has the server close the page's connection with a code and a reason, and reads
them on the page and in the close event, and the console for "Invalid frame header".

They need Debian's chromium and Playwright for Python, as tests/test_browser.py does, and
are skipped without them, unless REQUIRE_BROWSER=1 (CI), where they fail.
"""
import threading

import pytest
from flask import Flask
from werkzeug.serving import make_server

import app as card
from chat_helpers import CHAT_APP, ROOM, wait_until
from hardened import chat as hardened
from hardened.safeguards import limits
from test_browser import BROWSER_TIMEOUT, browser, expect  # noqa: F401

LONGEST_FIRST_RETRY = 1.5  # seconds: a page that retried after a 1008 would have by then
CARD_APP = card.create_app()  # the card's chat, as `flask run` serves it

# Before the page's own script: every close event's code and reason, in window.closes.
RECORD_CLOSES = """
window.closes = [];
const PageSocket = window.WebSocket;
window.WebSocket = class extends PageSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("close", (event) => window.closes.push([event.code, event.reason]));
  }
};
"""

def serve(wsgi_app):
    """Serve the app in this process, as `flask run` does, on a free port: its URL, and
    the server to stop."""
    httpd = make_server("127.0.0.1", 0, wsgi_app, threaded=True)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_port}/", httpd


@pytest.fixture
def open_page(browser):
    """Open a page as a new person; `open_page.console` is every console line of them all."""
    contexts, console = [], []

    def open_page(url, wait_online=True):
        context = browser.new_context()
        contexts.append(context)
        context.set_default_timeout(BROWSER_TIMEOUT * 1000)  # milliseconds
        page = context.new_page()
        page.add_init_script(RECORD_CLOSES)
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
        page.goto(url)
        if wait_online:
            expect(page.locator("#status")).to_have_text("online")
        return page

    open_page.console = console
    yield open_page
    for context in contexts:
        context.close()


def first_close(page):
    page.wait_for_function("window.closes.length > 0")
    return page.evaluate("window.closes[0]")


def test_the_card_page_shows_a_1009_close_and_its_reason(open_page, monkeypatch):
    errors = []
    monkeypatch.setattr("threading.excepthook", errors.append)
    url, httpd = serve(CARD_APP)
    try:
        page = open_page(url)
        # As the guide has the room do it, in the page's console (F12).
        page.evaluate(f"socket.send('x'.repeat({card.MAX_FRAME_BYTES + 1}))")
        expect(page.locator("#error")).to_have_text("Disconnected: 1009 Message is too big")
        assert first_close(page) == [1009, "Message is too big"]
        expect(page.locator("#status")).to_have_text("online")  # and it connects again
    finally:
        httpd.shutdown()
        httpd.server_close()
        hang_up_card()
    assert not [line for line in open_page.console if "Invalid frame header" in line]
    assert errors == []


def test_the_hardened_page_shows_a_refusal_and_its_reason(open_page, monkeypatch):
    errors = []
    monkeypatch.setattr("threading.excepthook", errors.append)
    monkeypatch.setattr(limits, "CONNECTIONS_PER_ADDRESS", 1)
    ROOM.history.clear()
    url, httpd = serve(CHAT_APP)
    reason = "Too many connections from your address (at most 1); close one and try again."
    try:
        open_page(url)  # Ada's tab takes the one place of 127.0.0.1
        bob = open_page(url, wait_online=False)
        expect(bob.locator("#error")).to_have_text(reason)
        assert first_close(bob) == [1013, reason]
        expect(bob.locator("#status")).to_have_text("offline")
    finally:
        httpd.shutdown()
        httpd.server_close()
        hang_up_all(ROOM)
    assert not [line for line in open_page.console if "Invalid frame header" in line]
    assert errors == []


def hang_up_card():
    with card.clients_lock:
        for ws, _ in card.clients:
            card.hang_up(ws)
    wait_until(lambda: not card.clients, timeout=BROWSER_TIMEOUT)


def hang_up_all(room):
    with room.lock:
        for ws in room.clients:
            hardened.hang_up(ws)
    wait_until(lambda: not room.clients, timeout=BROWSER_TIMEOUT)


def test_the_hardened_page_shows_a_refused_login_and_stops_trying(open_page):
    """A host's login (CHAT_ALLOW) that no longer lets the person in, say their session
    ended: the socket is closed with 1008 and the reason, which the page shows; it does not
    knock again every few seconds, as it does after a drop or a 1013."""
    allowed = [True]
    app = Flask(__name__)
    app.config["CHAT_ALLOW"] = lambda: allowed[0]
    app.register_blueprint(hardened.bp)
    room = hardened.room_of(app)
    url, httpd = serve(app)
    try:
        page = open_page(url)
        allowed[0] = False  # logged out elsewhere; the connection drops, the page reconnects
        hang_up_all(room)
        expect(page.locator("#error")).to_have_text(hardened.NOT_ALLOWED)
        assert first_close(page)[0] == 1006  # the cut
        page.wait_for_function("window.closes.length > 1")
        assert page.evaluate("window.closes[1]") == [1008, hardened.NOT_ALLOWED]
        page.wait_for_timeout(LONGEST_FIRST_RETRY * 1000)
        assert page.evaluate("window.closes.length") == 2  # no third try
        expect(page.locator("#status")).to_have_text("offline")
    finally:
        httpd.shutdown()
        httpd.server_close()
        hang_up_all(room)
