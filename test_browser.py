"""The page in a real browser: Chromium, driven by Playwright, against the chat served on
a free loopback port, with several pages open at once as several people would.

They need Debian's chromium (`apt-get install chromium`) and Playwright for Python
(`pip install -r requirements-browser.txt`), and are skipped without them. Playwright
drives the system's chromium: its own browser download (`playwright install`) is not used.
"""
import os
import threading
from types import SimpleNamespace

import pytest
from werkzeug.serving import make_server

import app as chat
from test_app import wait_until

CHROMIUM = "/usr/bin/chromium"  # Debian's package
try:
    from playwright.sync_api import expect, sync_playwright
    MISSING = None if os.path.exists(CHROMIUM) else f"needs {CHROMIUM}: apt-get install chromium"
except ImportError:
    MISSING = "needs Playwright: pip install -r requirements-browser.txt"
if MISSING and os.environ.get("REQUIRE_BROWSER") == "1":  # CI: run them or fail, never skip
    pytest.fail(MISSING, pytrace=False)
if MISSING:
    pytest.skip(MISSING, allow_module_level=True)

CHROMIUM_ARGS = [
    "--no-sandbox",  # the sandbox cannot start as root, as in CI and containers
    "--disable-gpu",  # there is none; don't look for it
    # Talk to nothing but our server: no update checks, no sync, no downloads.
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
# Seconds any one wait may take. A browser is slow to start a page on a busy machine,
# and a page retries its websocket only every 5 s (MAX_RETRY_DELAY in chat.html).
# Passing tests never wait this long: only a failure does.
BROWSER_TIMEOUT = 20
REFUSED = "failed: Error in connection establishment: net::ERR_CONNECTION_REFUSED"

expect.set_options(timeout=BROWSER_TIMEOUT * 1000)  # milliseconds


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def start_server(port=0):
    """Serve the chat in this process, as `flask run` does, in a thread."""
    chat.history.clear()  # a server that starts remembers nothing
    httpd = make_server("127.0.0.1", port, chat.app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def stop_server(httpd):
    """Stop as a killed server would: refuse new connections, drop the open ones."""
    httpd.shutdown()
    httpd.server_close()
    with chat.clients_lock:
        for ws in chat.clients:
            chat.hang_up(ws)
    wait_until(lambda: not chat.clients, timeout=BROWSER_TIMEOUT)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def server(monkeypatch, caplog):
    """The chat on a free port: `server.url` to open; a test may replace `server.httpd`."""
    errors = []
    monkeypatch.setattr("threading.excepthook", errors.append)
    httpd = start_server()
    server = SimpleNamespace(httpd=httpd, url=f"http://127.0.0.1:{httpd.server_port}/")
    yield server
    stop_server(server.httpd)
    # No thread of the server died of an exception or logged an error.
    assert errors == []
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


@pytest.fixture
def js_errors():
    """What went wrong in any page: uncaught exceptions, console errors, dialogs."""
    return []


@pytest.fixture
def open_page(browser, server, js_errors):
    """Open the chat as a new person (own storage), online, with a name typed in."""
    contexts = []

    def open_page(name):
        context = browser.new_context()
        contexts.append(context)
        context.set_default_timeout(BROWSER_TIMEOUT * 1000)  # milliseconds
        page = context.new_page()
        watch_for_errors(page, name, js_errors)
        return join_chat(page, server.url, name)

    yield open_page
    for context in contexts:
        context.close()
    assert js_errors == [], "the pages had JavaScript errors"


def join_chat(page, url, name):
    page.goto(url)
    expect(page.locator("#status")).to_have_text("online")
    page.fill("#name", name)
    return page


def watch_for_errors(page, name, js_errors):
    def on_console(message):
        if message.type == "error":
            js_errors.append(f"{name}: {message.text}")

    def on_dialog(dialog):  # an alert() means a page ran code it was sent
        js_errors.append(f"{name}: a {dialog.type} dialog said {dialog.message!r}")
        dialog.dismiss()

    page.on("console", on_console)
    page.on("pageerror", lambda error: js_errors.append(f"{name}: {error}"))
    page.on("dialog", on_dialog)


def say(page, text):
    page.fill("#message", text)
    page.press("#message", "Enter")


def expect_messages(page, lines):
    """The page lists exactly these (name, message) lines, oldest first."""
    items = page.locator("#messages li")
    expect(items.locator(".name")).to_have_text([name for name, _ in lines])
    expect(items).to_have_text([name + message for name, message in lines])


def send_twelve(page, name):
    """Send twelve numbered messages; return the ten that the chat keeps showing."""
    for n in range(1, 13):
        say(page, f"message {n}")
    return [(name, f"message {n}") for n in range(3, 13)]


def test_a_message_shows_in_every_page_and_the_box_clears(open_page):
    pages = [open_page("Ada"), open_page("Bob"), open_page("Cleo")]
    say(pages[1], "hello, everyone")
    for page in pages:
        expect_messages(page, [("Bob", "hello, everyone")])
    expect(pages[1].locator("#message")).to_have_value("")


def test_markup_shows_as_text_and_runs_nothing(open_page):
    ada, bob = open_page("Ada"), open_page("Bob")
    markup = "<img src=x onerror=alert(1)>"
    ada.fill("#name", "<b>Ada</b>")
    say(ada, markup)
    for page in (ada, bob):
        expect_messages(page, [("<b>Ada</b>", markup)])
        expect(page.locator("#messages img, #messages b")).to_have_count(0)
    # An alert() would be in js_errors, which open_page checks at the end.


def test_each_page_lists_only_the_newest_ten(open_page):
    ada, bob = open_page("Ada"), open_page("Bob")
    newest_ten = send_twelve(ada, "Ada")
    for page in (ada, bob):
        expect_messages(page, newest_ten)


def test_a_page_opened_later_shows_the_last_ten_at_once(open_page):
    ada = open_page("Ada")
    newest_ten = send_twelve(ada, "Ada")
    expect_messages(ada, newest_ten)  # the server has them all now
    expect_messages(open_page("Bob"), newest_ten)


def test_a_too_long_message_shows_the_error_in_the_senders_page_only(open_page):
    ada, bob = open_page("Ada"), open_page("Bob")
    say(ada, "x" * (chat.MAX_MESSAGE_CHARS + 1))
    expect(ada.locator("#error")).to_have_text(
        f'"message" must be 1 to {chat.MAX_MESSAGE_CHARS} characters.')
    # The refused text comes back into the box, so the sender can shorten it.
    expect(ada.locator("#message")).to_have_value("x" * (chat.MAX_MESSAGE_CHARS + 1))
    # Bob would have had the error before this message, which he gets after it.
    say(ada, "short")
    for page in (ada, bob):
        expect_messages(page, [("Ada", "short")])
    expect(bob.locator("#error")).to_be_empty()


def test_pages_go_offline_and_back_when_the_server_restarts(server, open_page, js_errors):
    ada, bob = open_page("Ada"), open_page("Bob")
    for page in (ada, bob):
        page.evaluate("window.notReloaded = true")
    port = server.httpd.server_port

    stop_server(server.httpd)
    for page in (ada, bob):
        expect(page.locator("#status")).to_have_text("offline")
        # Let each page fail to reconnect at least once before the server is back.
        page.wait_for_event("console", lambda message: REFUSED in message.text)
    server.httpd = start_server(port)
    for page in (ada, bob):
        expect(page.locator("#status")).to_have_text("online")

    say(bob, "back again")
    for page in (ada, bob):
        expect_messages(page, [("Bob", "back again")])
        assert page.evaluate("window.notReloaded")
    # Chromium logs every refused websocket to the console and no script can stop it:
    # those, and only those, were expected while the server was down.
    refused = f"WebSocket connection to 'ws://127.0.0.1:{port}/ws' {REFUSED}"
    assert js_errors
    js_errors[:] = [error for error in js_errors if not error.endswith(f": {refused}")]


def test_errors_in_a_page_are_seen(open_page, js_errors):
    """open_page's check for JavaScript errors can fail."""
    page = open_page("Ada")
    with page.expect_event("pageerror"):
        page.evaluate("console.error('logged'); setTimeout(() => { throw new Error('thrown') })")
    assert js_errors == ["Ada: logged", "Ada: thrown"]
    js_errors.clear()
