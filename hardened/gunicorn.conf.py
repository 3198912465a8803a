"""gunicorn's settings for the hardened chat, from the folder that holds hardened/:
`gunicorn -c hardened/gunicorn.conf.py` serves the chat alone, and
`gunicorn -c hardened/gunicorn.conf.py 'myapp:create_app()'` your app with the chat
mounted in it: an app named on the command line is served instead (docs/deploying.md).

One worker, as the room lives in one process's memory (set CHAT_REDIS_URL for more); and
CHAT_SERVER_THREADS threads (100 unless set, or --threads). Each websocket holds a thread
for life, so the chat must know how many there are, to keep some free for pages (the
chat's, and your app's) and for telling newcomers that the chat is full: the hook below
tells it, and without it or CHAT_SERVER_THREADS the chat refuses its websockets under
gunicorn (safeguards/limits.py).

gunicorn loads this file by its path, not as a module of the package, so it reads the
variable itself rather than importing safeguards/settings.py.
"""
import os

wsgi_app = "hardened:create_app()"  # unless the command line names an app
workers = 1
threads = int(os.environ.get("CHAT_SERVER_THREADS", "").strip() or 100)
bind = "127.0.0.1:8000"  # behind a proxy, only it reaches the chat; -b to change it


def post_worker_init(worker):
    """Tell the chat how many threads this worker has, --threads included. To use your
    own config file instead of this one, copy this function into it."""
    os.environ["CHAT_SERVER_THREADS"] = str(worker.cfg.threads)
