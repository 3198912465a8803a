"""gunicorn's settings for the hardened chat, from the folder that holds hardened/:
`gunicorn -c hardened/gunicorn.conf.py` (docs/deploying.md).

One worker, as the room lives in one process's memory (set CHAT_REDIS_URL for more); and
CHAT_SERVER_THREADS threads (100 unless set), the same number the chat reads to know how
many websockets it can let in (safeguards/settings.py): each holds a thread for life, and
a few stay free for the page and for telling newcomers that the chat is full.

gunicorn loads this file by its path, not as a module of the package, so it reads the
variable itself rather than importing safeguards/settings.py.
"""
import os

wsgi_app = "hardened:create_app()"
workers = 1
threads = int(os.environ.get("CHAT_SERVER_THREADS", "").strip() or 100)
bind = "127.0.0.1:8000"  # behind a proxy, only it reaches the chat; -b to change it
