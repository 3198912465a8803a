"""Make docs/screenshot.png: two people chatting, as seen in Ada's window.

Run it from the project's folder, with what the browser tests need (see test_browser.py):

    python docs/screenshot.py
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from test_browser import join_chat, launch_chromium, say, start_server, stop_server  # noqa: E402

CONVERSATION = [
    ("Ada", "Hi Bob! Can you see this?"),
    ("Bob", "Yes, it appeared in my window the moment you pressed Enter."),
    ("Ada", "Every message goes to everyone who has the page open."),
    ("Bob", "And when I reload, the last ten are still there. Nice!"),
    ("Ada", "<b>Markup</b> arrives as plain text, by the way."),
]


def main(path=ROOT / "docs" / "screenshot.png", width=720, scale=2):
    httpd = start_server()
    url = f"http://127.0.0.1:{httpd.server_port}/"
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        pages = {}
        for name in ("Ada", "Bob"):
            context = browser.new_context(viewport={"width": width, "height": 300},
                                          device_scale_factor=scale)
            pages[name] = join_chat(context.new_page(), url, name)
        for count, (name, message) in enumerate(CONVERSATION, start=1):
            say(pages[name], message)
            for page in pages.values():  # so the two people take turns
                expect(page.locator("#messages li")).to_have_count(count)
        ada = pages["Ada"]
        ada.fill("#message", "Shall we build it step by step?")
        # Exactly as tall as the chat: a full-page shot would misplace the sticky header.
        height = ada.evaluate("document.documentElement.scrollHeight")
        ada.set_viewport_size({"width": width, "height": height})
        ada.screenshot(path=path)
        browser.close()
    stop_server(httpd)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
