"""What the chat in app.py needs beyond its own story: workarounds for the libraries it
stands on, and the guards at its door. Each module says which private parts of
simple-websocket, flask-sock, Werkzeug or wsproto it relies on; selfcheck.py checks them
when the chat is registered, and refuses to start if they have moved.

- settings.py    the settings a host may change: its app's config, or environment variables
- websocket.py   the websocket route, with the chat's own socket options and checks
- frames.py      frames encoded once, and written whole
- reader.py      each connection's reader thread, with what the chat needs
- guards.py      the door: host names, malformed handshakes, Origin, proxies
- limits.py      what all connections from one address may do together
- text_rules.py  names and messages that would show as something they are not
- headers.py     the page's Content-Security-Policy
- redis_bridge.py  one room across several processes, when CHAT_REDIS_URL is set
- process.py     what the standalone chat changes in the whole process
- selfcheck.py   the check of the libraries' private parts
"""
