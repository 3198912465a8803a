"""The headers that let the browser defend the page: app.py's index() sends for_page(page).

They go with the chat's page only, never with a host app's other routes.

The Content-Security-Policy lets the page run its own inline script and style, and
nothing else: should a message ever get into the page as markup, its script would not
run. The page's script and style are allowed by their SHA-256 hashes, computed from
the page being sent, so chat.html can be edited freely (even under `flask run --debug`,
which does not restart for it).
"""
import base64
import hashlib
import re

POLICY = "; ".join([
    "default-src 'none'",  # nothing that is not allowed below
    "script-src {script}",
    "style-src {style}",
    # The chat's websocket. In CSP Level 3, 'self' also allows ws: and wss: to this very
    # host and port: wss: when the page came by https, even through a TLS proxy that
    # talks plain http to us, so we need not guess which one the browser uses.
    "connect-src 'self'",
    "img-src data:",  # the inline icon
    "base-uri 'none'",
    "form-action 'none'",  # the form is sent by the script, never by the browser
    "frame-ancestors 'self'",  # the app's own pages may frame it; no other site may
])


def for_page(page):
    """The headers to send with the HTML text `page`."""
    return {
        "Content-Security-Policy": POLICY.format(script=hashes(page, "script"),
                                                 style=hashes(page, "style")),
        "X-Content-Type-Options": "nosniff",  # a page is a page, never a guessed type
        "Referrer-Policy": "no-referrer",  # links elsewhere do not tell where from
    }


def hashes(page, tag):
    """'sha256-...' for each inline <tag> of the page, as CSP spells them."""
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
    return " ".join(
        "'sha256-{}'".format(base64.b64encode(hashlib.sha256(text.encode()).digest()).decode())
        for text in found) or "'none'"
