"""The hardened chat's page in a real browser: Chromium, driven by Playwright, against
the chat served on a free loopback port, with several pages open at once as several
people would.

They need Debian's chromium (`apt-get install chromium`) and Playwright for Python
(`pip install -r tests/requirements-browser.txt`), and are skipped without them. Playwright
drives the system's chromium: its own browser download (`playwright install`) is not used.
"""
import os
import threading
from types import SimpleNamespace

import pytest
from werkzeug.serving import make_server

from chat_helpers import CHAT_APP, ROOM, wait_until
from hardened import chat
from hardened.safeguards import limits

CHROMIUM = "/usr/bin/chromium"  # Debian's package
try:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect, sync_playwright
    MISSING = None if os.path.exists(CHROMIUM) else f"needs {CHROMIUM}: apt-get install chromium"
except ImportError:
    MISSING = "needs Playwright: pip install -r tests/requirements-browser.txt"
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
# and a page retries its websocket only every 5 s (MAX_RETRY_DELAY in hardened/chat.html).
# Passing tests never wait this long: only a failure does.
BROWSER_TIMEOUT = 20
FORGOTTEN = ("Reconnected. The server no longer has the messages shown before:"
             " it may have restarted.")
REFUSED = "failed: Error in connection establishment: net::ERR_CONNECTION_REFUSED"

expect.set_options(timeout=BROWSER_TIMEOUT * 1000)  # milliseconds


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def start_server(port=0):
    """Serve the chat in this process, as `flask run` does, in a thread."""
    ROOM.history.clear()  # a server that starts remembers nothing
    httpd = make_server("127.0.0.1", port, CHAT_APP, threaded=True)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    return httpd


def stop_server(httpd):
    """Stop as a killed server would: refuse new connections, drop the open ones."""
    httpd.shutdown()
    httpd.server_close()
    with ROOM.lock:
        for ws in ROOM.clients:
            chat.hang_up(ws)
    wait_until(lambda: not ROOM.clients, timeout=BROWSER_TIMEOUT)


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

    def open_page(name, wait_online=True, **context_options):
        context = browser.new_context(**context_options)
        contexts.append(context)
        context.set_default_timeout(BROWSER_TIMEOUT * 1000)  # milliseconds
        page = context.new_page()
        watch_for_errors(page, name, js_errors)
        if not wait_online:
            page.goto(server.url)
            return page
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
    items = page.locator("#messages li:not(.notice)")
    expect(items.locator(".name bdi")).to_have_text([name for name, _ in lines])
    expect(items.locator("p")).to_have_text([message for _, message in lines])


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


def test_the_message_box_shows_its_limit_and_stops_there(open_page):
    ada, bob = open_page("Ada"), open_page("Bob")
    # The page's limits are the server's.
    chosen = ROOM.settings
    expect(ada.locator("#message")).to_have_attribute("maxlength", str(chosen.MAX_MESSAGE_CHARS))
    expect(ada.locator("#name")).to_have_attribute("maxlength", str(chosen.MAX_NAME_CHARS))
    expect(ada.locator("#count")).to_have_text("1,000 characters left")
    ada.fill("#message", "x" * 990)
    expect(ada.locator("#count")).to_have_text("10 characters left")
    ada.fill("#message", "x" * (ROOM.settings.MAX_MESSAGE_CHARS + 1))
    expect(ada.locator("#message")).to_have_value("x" * ROOM.settings.MAX_MESSAGE_CHARS)
    expect(ada.locator("#count")).to_have_text("0 characters left")
    ada.press("#message", "Enter")
    for page in (ada, bob):
        expect_messages(page, [("Ada", "x" * ROOM.settings.MAX_MESSAGE_CHARS)])
    expect(ada.locator("#count")).to_have_text("1,000 characters left")


def test_a_refused_message_shows_the_error_in_the_senders_page_only(open_page):
    ada, bob = open_page("Ada"), open_page("Bob")
    say(ada, "\u200b\u200b")  # zero-width spaces: nothing to see
    expect(ada.locator("#error")).to_have_text("Your message has nothing visible in it.")
    # The refused text comes back into the box, so the sender can fix it.
    expect(ada.locator("#message")).to_have_value("\u200b\u200b")
    # Bob would have had the error before this message, which he gets after it.
    say(ada, "short")
    for page in (ada, bob):
        expect_messages(page, [("Ada", "short")])
    expect(bob.locator("#error")).to_be_empty()


def test_your_own_messages_are_marked_in_your_page_only(open_page):
    ada, bob = open_page("Ada"), open_page("Bob")
    say(ada, "mine")
    expect_messages(bob, [("Ada", "mine")])
    say(bob, "mine")  # the same words from someone else are not Ada's
    for page in (ada, bob):
        expect_messages(page, [("Ada", "mine"), ("Bob", "mine")])
    # On the right, tinted, and in words: "(you)".
    expect(ada.locator("#messages li")).to_have_class(["own", ""])
    expect(bob.locator("#messages li")).to_have_class(["", "own"])
    expect(ada.locator("#messages .name")).to_have_text(["Ada (you)", "Bob"])
    expect(bob.locator("#messages .name")).to_have_text(["Ada", "Bob (you)"])
    boxes = [item.bounding_box() for item in ada.locator("#messages li").all()]
    assert boxes[0]["x"] > boxes[1]["x"]


def test_a_reversing_name_is_refused_and_shown_nowhere(open_page):
    ada, bob = open_page("Ada"), open_page("Bob")
    ada.fill("#name", "\u202eevil")  # would show as "live"
    say(ada, "hello")
    expect(ada.locator("#error")).to_contain_text("reverses text (U+202E)")
    expect(ada.locator("#message")).to_have_value("hello")
    ada.fill("#name", "evil")
    ada.press("#message", "Enter")
    for page in (ada, bob):
        expect_messages(page, [("evil", "hello")])
        expect(page.locator("#messages")).not_to_contain_text("live")


def visual_order(page, selector):
    """The left edges of the characters of the last text in `selector`, as drawn."""
    return page.eval_on_selector(selector, """element => {
        const text = element.lastChild, range = document.createRange(), lefts = [];
        for (let i = 0; i < text.length; i++) {
            range.setStart(text, i);
            range.setEnd(text, i + 1);
            lefts.push(range.getBoundingClientRect().left);
        }
        return lefts;
    }""")


def test_a_name_cannot_reorder_the_text_beside_it(open_page):
    ada = open_page("Ada")
    # As a server without these checks would send it: "evil" then an override that
    # would run on into " (you)" and show it as ")uoy( ", but for the <bdi>.
    ada.evaluate("showMessage('evil\u202e', 'a message', true)")
    expect(ada.locator("#messages .name")).to_have_text("evil\u202e (you)")
    lefts = visual_order(ada, "#messages .name")
    assert lefts == sorted(lefts), "' (you)' was drawn right to left"


def test_each_message_runs_in_its_own_direction(open_page):
    ada, bob = open_page("Ada"), open_page("Bob")
    say(ada, "مرحبا يا بوب")  # Arabic: right to left
    expect(bob.locator("#messages p")).to_have_count(1)  # so it is the first of three
    say(bob, "\u202egnp.exe")  # accepted in a message, and kept inside it
    say(bob, "hello")
    expect(ada.locator("#messages p")).to_have_count(3)
    directions = ada.eval_on_selector_all(
        "#messages p", "items => items.map(item => getComputedStyle(item).direction)")
    assert directions == ["rtl", "ltr", "ltr"]
    lefts = visual_order(ada, "#messages li:last-child p")
    assert lefts == sorted(lefts), "the override ran on into the next message"


def test_pages_go_offline_and_back_when_the_server_restarts(server, open_page, js_errors):
    ada, bob = open_page("Ada"), open_page("Bob")
    say(ada, "before the restart")
    for page in (ada, bob):
        expect_messages(page, [("Ada", "before the restart")])
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

    # The restarted server has forgotten the history, and the pages say so.
    for page in (ada, bob):
        expect(page.locator("#messages .notice")).to_have_text(FORGOTTEN)
    say(bob, "back again")
    for page in (ada, bob):
        expect_messages(page, [("Bob", "back again")])
        assert page.evaluate("window.notReloaded")
    # Chromium logs every refused websocket to the console and no script can stop it:
    # those, and only those, were expected while the server was down.
    refused = f"WebSocket connection to 'ws://127.0.0.1:{port}/ws' {REFUSED}"
    assert js_errors
    js_errors[:] = [error for error in js_errors if not error.endswith(f": {refused}")]


def test_a_server_that_remembers_gets_no_notice(open_page):
    """After a dropped connection, the history has what the page showed last: no notice."""
    ada = open_page("Ada")
    ada.clock.install()  # the page's timers now run only when the test says
    say(ada, "still here")
    expect_messages(ada, [("Ada", "still here")])
    with ROOM.lock:
        for ws in ROOM.clients:
            chat.hang_up(ws)
    expect(ada.locator("#status")).to_have_text("offline")
    ada.clock.run_for(1000)  # the page's first retry
    expect(ada.locator("#status")).to_have_text("online")
    expect_messages(ada, [("Ada", "still here")])  # the history, with what it showed last
    ada.clock.run_for(10_000)  # long past HISTORY_WAIT
    expect(ada.locator("#messages .notice")).to_have_count(0)


def test_the_page_is_sent_with_a_strict_content_security_policy(server, browser):
    page = browser.new_page()
    response = page.goto(server.url)
    policy = dict(rule.split(" ", 1) for rule in
                  response.headers["content-security-policy"].split("; "))
    assert policy.pop("default-src") == "'none'"
    for kind in ("script-src", "style-src"):  # the page's own, by hash: one each
        sources = policy.pop(kind).split()
        assert len(sources) == 1 and sources[0].startswith("'sha256-")
    assert policy == {
        "connect-src": "'self'", "img-src": "data:", "base-uri": "'none'",
        "form-action": "'none'", "frame-ancestors": "'self'",
    }
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    page.close()


INJECT = """kind => new Promise(resolve => {
    // Settles either way: with the policy's refusal, or with what the markup did.
    document.addEventListener("securitypolicyviolation",
        event => resolve(event.effectiveDirective), { once: true });
    window.injected = resolve;
    if (kind === "script") {
        const script = document.createElement("script");
        script.textContent = "injected('the script ran')";
        document.body.append(script);
    } else if (kind === "handler") {
        const image = document.createElement("img");
        image.setAttribute("src", "data:,");
        image.setAttribute("onerror", "injected('the handler ran')");
        document.body.append(image);
    } else {
        const style = document.createElement("style");
        style.textContent = "body { display: none }";
        document.head.append(style);
        if (getComputedStyle(document.body).display === "none") resolve("the style applied");
    }
})"""


@pytest.mark.parametrize("kind, directive", [
    ("script", "script-src-elem"), ("handler", "script-src-attr"), ("style", "style-src-elem"),
])
def test_injected_markup_is_blocked_and_the_chat_still_works(open_page, js_errors, kind,
                                                             directive):
    ada, bob = open_page("Ada"), open_page("Bob")
    # As if a message had got into the page as markup, which showMessage never lets happen.
    assert ada.evaluate(INJECT, kind) == directive
    expect(ada.locator("body")).to_be_visible()
    say(ada, "still working")
    for page in (ada, bob):
        expect_messages(page, [("Ada", "still working")])
    # The browser logs each refusal to the console: that one, and only that one.
    assert len(js_errors) == 1 and "Content Security Policy" in js_errors[0]
    js_errors.clear()


SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def audit(page, state):
    """axe-core finds nothing wrong with the page as it is now, at any impact."""
    results = Axe().run(page)
    assert results.violations_count == 0, f"{state}:\n{results.generate_report()}"


# A learner's run audits the desktop in the light; CI (FULL_TESTS=1) all four.
@pytest.mark.parametrize("size, scheme", [
    ("desktop", "light"),
    pytest.param("desktop", "dark", marks=pytest.mark.slow),
    pytest.param("phone", "light", marks=pytest.mark.slow),
    pytest.param("phone", "dark", marks=pytest.mark.slow),
])
def test_the_page_passes_an_accessibility_audit_in_every_state(server, open_page, js_errors,
                                                               size, scheme):
    options = {"color_scheme": scheme, "viewport": SIZES[size]}
    ada, bob = open_page("Ada", **options), open_page("Bob", **options)
    # Screen readers read out what is added to the list: axe does not check that.
    expect(ada.locator("#messages")).to_have_attribute("aria-live", "polite")
    audit(ada, "empty")
    for n in range(3):  # names in several colours, our own messages and others'
        say(ada, f"message {n} from Ada")
        say(bob, f"message {n} from Bob")
    expect(ada.locator("#messages li")).to_have_count(6)
    audit(ada, "with messages")
    say(ada, "\u200b")
    expect(ada.locator("#error")).not_to_be_empty()
    audit(ada, "with an error")
    port = server.httpd.server_port
    stop_server(server.httpd)
    expect(ada.locator("#status")).to_have_text("offline")
    audit(ada, "offline")
    server.httpd = start_server(port)
    expect(ada.locator("#messages .notice")).to_have_text(FORGOTTEN)
    audit(ada, "back, with the notice")
    js_errors[:] = [error for error in js_errors if REFUSED not in error]


def test_the_page_follows_the_systems_colour_scheme(open_page):
    light, dark = open_page("Ada"), open_page("Bob", color_scheme="dark")
    background = "getComputedStyle(document.body).backgroundColor"
    assert light.evaluate(background) == "rgb(238, 240, 245)"
    assert dark.evaluate(background) == "rgb(11, 16, 32)"


def test_errors_in_a_page_are_seen(open_page, js_errors):
    """open_page's check for JavaScript errors can fail."""
    page = open_page("Ada")
    with page.expect_event("pageerror"):
        page.evaluate("console.error('logged'); setTimeout(() => { throw new Error('thrown') })")
    assert js_errors == ["Ada: logged", "Ada: thrown"]
    js_errors.clear()


def test_a_message_sent_as_the_connection_drops_stays_in_the_box(open_page, monkeypatch):
    """The server goes away after the page sent a message and before it was broadcast:
    the box keeps it, the page says so, and Enter sends it once the page is back."""
    ada = open_page("Ada")

    def crash(room, message):  # the server dies with the message, unbroadcast
        with ROOM.lock:
            for ws in ROOM.clients:
                chat.hang_up(ws)

    monkeypatch.setattr(chat, "broadcast", crash)
    say(ada, "lost in the crash?")
    said = 'Your last message may not have gone out: "\u2068lost in the crash?\u2069".'
    expect(ada.locator("#error")).to_contain_text(said)
    expect(ada.locator("#message")).to_have_value("lost in the crash?")
    monkeypatch.undo()  # the server is back
    expect(ada.locator("#status")).to_have_text("online")
    expect(ada.locator("#error")).to_contain_text(said)  # still said: it may be unsent
    ada.press("#message", "Enter")
    expect_messages(ada, [("Ada", "lost in the crash?")])
    expect(ada.locator("#message")).to_have_value("")
    expect(ada.locator("#error")).to_have_text("")


def test_a_message_typed_while_offline_stays_in_the_box(server, open_page, js_errors):
    ada = open_page("Ada")
    port = server.httpd.server_port
    stop_server(server.httpd)
    expect(ada.locator("#status")).to_have_text("offline")
    say(ada, "typed while the server restarts")
    expect(ada.locator("#error")).to_contain_text("You are offline")
    expect(ada.locator("#message")).to_have_value("typed while the server restarts")
    server.httpd = start_server(port)
    expect(ada.locator("#status")).to_have_text("online")
    ada.press("#message", "Enter")
    expect_messages(ada, [("Ada", "typed while the server restarts")])
    expect(ada.locator("#message")).to_have_value("")
    refused = f"WebSocket connection to 'ws://127.0.0.1:{port}/ws' {REFUSED}"
    js_errors[:] = [error for error in js_errors if not error.endswith(f": {refused}")]


def test_a_refused_page_says_why_and_waits_before_trying_again(open_page, monkeypatch):
    monkeypatch.setattr(limits, "CONNECTIONS_PER_ADDRESS", 1)
    open_page("Ada")
    attempts = []
    admit = limits.admit
    monkeypatch.setattr(limits, "admit", lambda *args: attempts.append(args) or admit(*args))
    bob = open_page("Bob", wait_online=False)
    expect(bob.locator("#error")).to_have_text(
        "Too many connections from your address (at most 1); close one and try again.")
    expect(bob.locator("#status")).to_have_text("offline")
    bob.wait_for_timeout(4000)  # a page that retried at once would have tried 4 times
    assert len(attempts) == 1
