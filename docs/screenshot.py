"""Make the screenshots in docs/: two people chatting in the hardened chat (hardened/), as
seen in Ada's window, in the light and the dark scheme, at desktop and at phone size.

Run it from the project's folder, with what the browser tests need
(tests/requirements-browser.txt, and chromium: see tests/test_browser.py):

    python docs/screenshot.py
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from test_browser import SIZES, join_chat, launch_chromium, say, start_server, stop_server  # noqa: E402,E501

CONVERSATION = [
    ("Ada", "Hi Bob! Can you see this?"),
    ("Bob", "Yes, it appeared in my window the moment you pressed Enter."),
    ("Ada", "Every message goes to everyone who has the page open."),
    ("Bob", "And when I reload, the last ten are still there. Nice!"),
    ("Ada", "<b>Markup</b> arrives as plain text, by the way."),
]
SHOTS = {  # file: (scheme, size, pixels per CSS pixel)
    "screenshot.png": ("light", "desktop", 1),
    "screenshot-dark.png": ("dark", "desktop", 1),
    "screenshot-phone.png": ("light", "phone", 2),
    "screenshot-phone-dark.png": ("dark", "phone", 2),
}


def shoot(browser, url, path, scheme, size, scale):
    pages = {}
    for name in ("Ada", "Bob"):
        context = browser.new_context(viewport=SIZES[size], device_scale_factor=scale,
                                      color_scheme=scheme)
        pages[name] = join_chat(context.new_page(), url, name)
    for count, (name, message) in enumerate(CONVERSATION, start=1):
        say(pages[name], message)
        for page in pages.values():  # so the two people take turns
            expect(page.locator("#messages li")).to_have_count(count)
    ada = pages["Ada"]
    ada.fill("#message", "Shall we build it step by step?")
    ada.screenshot(path=path)
    for page in pages.values():
        page.context.close()
    print(f"saved {path}")


def main():
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        for file, (scheme, size, scale) in SHOTS.items():
            httpd = start_server()  # each shot starts from an empty room
            shoot(browser, f"http://127.0.0.1:{httpd.server_port}/", ROOT / "docs" / file,
                  scheme, size, scale)
            stop_server(httpd)
        browser.close()


if __name__ == "__main__":
    main()
