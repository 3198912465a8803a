"""The page's notices are not messages: they do not count among the ten it shows (issue
31), so the messages that arrive after a notice do not push it out.

In a real browser, as tests/test_browser.py runs it (and skipped, as those are, without
Debian's chromium and Playwright, unless REQUIRE_BROWSER=1); its fixtures and helpers are
used as they are.
"""
from chat_helpers import ROOM  # the room of the chat that test_browser's server serves
from test_browser import (FORGOTTEN, browser, expect, expect_messages, js_errors,  # noqa: F401
                          open_page, say, server)
from hardened import chat


def forget_and_reconnect(page):
    """Make the server forget what the page showed, as a restart would, and drop the
    page's connection: it reconnects, misses its last message and shows the notice."""
    page.clock.install()  # the page's timers now run only when the test says
    ROOM.history.clear()
    with ROOM.lock:
        for ws in ROOM.clients:
            chat.hang_up(ws)
    expect(page.locator("#status")).to_have_text("offline")
    page.clock.run_for(1000)  # the page's first retry
    expect(page.locator("#status")).to_have_text("online")
    page.clock.run_for(10_000)  # long past HISTORY_WAIT
    expect(page.locator("#messages .notice")).to_have_text(FORGOTTEN)


def test_a_notice_stays_while_ten_messages_and_more_arrive_after_it(open_page):
    ada = open_page("Ada")
    say(ada, "before the server forgot")
    expect_messages(ada, [("Ada", "before the server forgot")])
    forget_and_reconnect(ada)
    bob = open_page("Bob")
    for n in range(1, 11):
        say(bob, f"message {n}")
    expect_messages(ada, [("Bob", f"message {n}") for n in range(1, 11)])
    expect(ada.locator("#messages .notice")).to_have_text(FORGOTTEN)
    expect(ada.locator("#messages li")).to_have_count(11)  # ten messages and the notice
    # Past ten, the oldest message goes, and the notice still stays.
    say(bob, "message 11")
    expect_messages(ada, [("Bob", f"message {n}") for n in range(2, 12)])
    expect(ada.locator("#messages .notice")).to_have_text(FORGOTTEN)
    expect(ada.locator("#messages li")).to_have_count(11)
