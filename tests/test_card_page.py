"""The card's page, chat.html, on its error paths, in Chromium with two people: a message
the server refuses comes back to its box with the words why, and only its sender sees
them; a connection cut without a close frame (a restart, a hang-up) is no error to show.
Skipped without Chromium and Playwright, as tests/test_close_in_browser.py is, whose
browser and pages these use.
"""
import pytest

from test_close_in_browser import (CARD_APP, browser, card, expect,  # noqa: F401
                                   hang_up_card, open_page, serve)


@pytest.fixture
def card_url():
    card.history.clear()
    url, httpd = serve(CARD_APP)
    yield url
    httpd.shutdown()
    httpd.server_close()
    hang_up_card()


def send(page, text):
    page.fill("#message", text)
    page.press("#message", "Enter")


def test_a_refused_message_comes_back_to_its_box_with_words(open_page, card_url):
    ada, bob = open_page(card_url), open_page(card_url)
    too_long = "x" * (card.MAX_MESSAGE_CHARS + 1)
    ada.evaluate("document.getElementById('message').removeAttribute('maxlength')")
    send(ada, too_long)
    expect(ada.locator("#error")).to_contain_text("yours has 1,001")
    expect(ada.locator("#message")).to_have_value(too_long)  # nothing typed is lost
    send(ada, "hello")
    for page in (ada, bob):
        expect(page.locator("#messages li")).to_have_count(1)
        expect(page.locator("#messages li")).to_contain_text("hello")
    expect(bob.locator("#error")).to_have_text("")  # the refusal was Ada's alone


def test_a_connection_cut_without_a_close_frame_shows_no_error(open_page, card_url):
    page = open_page(card_url)
    with card.clients_lock:  # as a restart does: no close frame, just the end
        for ws, _ in card.clients:
            card.hang_up(ws)
    page.wait_for_function("window.closes.length > 0")
    assert page.evaluate("window.closes[0][0]") == 1006
    expect(page.locator("#status")).to_have_text("online")  # it connected again
    expect(page.locator("#error")).to_have_text("")
