"""gunicorn's settings for the chat: `gunicorn -c gunicorn.conf.py` (docs/deploying.md).

One worker, as the room lives in one process's memory (set REDIS_URL for more); and
CHAT_SERVER_THREADS threads (100 unless set), the same number the chat reads to know how
many websockets it can let in: each holds a thread for life, and a few stay free for the
page and for telling newcomers that the chat is full.
"""
from safeguards import settings

wsgi_app = "app:create_app()"
workers = 1
threads = settings.SERVER_THREADS
bind = "127.0.0.1:8000"  # behind a proxy, only it reaches the chat; -b to change it
