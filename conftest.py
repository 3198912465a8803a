"""Shared by every test file: the marker for long fault tests, and websocket clients that
can never keep pytest running.

A learner's `pytest` stays under a minute: tests marked `slow` (real outages, running out
of file descriptors, floods that take tens of seconds) are skipped unless FULL_TESTS=1 is
set, as .ci/run does.
"""
import os
import threading

import pytest

FULL = os.environ.get("FULL_TESTS") == "1"

# Each checkpoint has an app.py and a test_app.py of its own, as an attendee's folder
# does: collected here, twenty modules named app and test_app would clash in pytest's
# module cache. tests/test_steps.py runs each step's tests in a process of its own.
collect_ignore_glob = ["workshop/*"]


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long fault test, run with FULL_TESTS=1 (CI does)")


def pytest_collection_modifyitems(config, items):
    if FULL:
        return
    skip = pytest.mark.skip(reason="long fault test: run with FULL_TESTS=1 (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


class DaemonThread(threading.Thread):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs, daemon=True)


@pytest.fixture(autouse=True)
def every_client_is_closed(monkeypatch):
    """Every simple-websocket client a test opens is closed when the test ends, passed or
    failed. Its reader thread is a daemon, too: the library starts it as an ordinary
    thread, and one client left open once kept pytest alive for 46 minutes after its
    last test, waiting for that thread at exit."""
    simple_websocket = pytest.importorskip("simple_websocket")
    opened = []
    original = simple_websocket.Client.__init__

    def opening(self, url, *args, thread_class=None, **kwargs):
        opened.append(self)
        original(self, url, *args, thread_class=thread_class or DaemonThread, **kwargs)

    monkeypatch.setattr(simple_websocket.Client, "__init__", opening)
    yield
    for ws in opened:
        try:
            ws.close()
        except Exception:  # closed already, by the test or the server, or never opened
            pass
