"""Checks on a websocket handshake that simple-websocket leaves to wsproto, which raises
for them once the request has reached the library: a 500 and a traceback in the log for
what is the client's mistake. app.py calls `check()` first and answers 400 instead."""
import base64
import binascii


def check(headers):
    """Return why this websocket handshake is malformed, or None if it is fine."""
    if headers.get("Sec-WebSocket-Version") != "13":
        return "Only websocket version 13 (RFC 6455) is spoken here."
    key = headers.get("Sec-WebSocket-Key", "")
    try:
        if len(base64.b64decode(key, validate=True)) == 16:
            return None
    except binascii.Error:
        pass
    return "Sec-WebSocket-Key must be 16 random bytes in base64 (RFC 6455, 4.1)."
