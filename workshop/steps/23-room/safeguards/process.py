"""What the standalone chat changes in the whole process: app.py's create_app() calls
`tune_for_many_websockets()`. Importing the chat, or mounting it in another app, changes
none of it; a host app may call it on purpose, with its trade-offs:

- the GIL's switch interval goes from 5 ms to SWITCH_INTERVAL. With a writer thread for
  each client (workshop steps 05 to 20), one message to thousands of people wakes
  thousands of threads, all queueing for the GIL; at 5 ms they pass it round so often
  that the broadcast takes seconds. (app.py starts a writer only for a client that falls
  behind; under load that can still be many.) The cost: while one thread computes
  for long, every other waits up to SWITCH_INTERVAL for its turn (a host route computing
  for 3 s made another of its routes take 1.2-1.5 s instead of 0.01-0.02 s). The chat's
  threads never compute for long; a host's may.
- the soft limit on open files goes up to the hard limit: each websocket needs a
  descriptor, and the usual soft limit of 1,024 holds about 900. The cost: none that we
  know, beyond what the process's other code may assume about its descriptors.
"""
import sys

try:
    import resource  # not on Windows
except ImportError:
    resource = None

SWITCH_INTERVAL = 0.5  # seconds


def tune_for_many_websockets():
    sys.setswitchinterval(SWITCH_INTERVAL)
    raise_fd_limit()


def raise_fd_limit():
    """Raise this process's soft limit on open files to its hard limit."""
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
