"""Shared by every test file: the marker for long fault tests.

A learner's `pytest` stays under a minute: tests marked `slow` (real outages, running out
of file descriptors, floods that take tens of seconds) are skipped unless FULL_TESTS=1 is
set, as .ci/run does.
"""
import os

import pytest

FULL = os.environ.get("FULL_TESTS") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long fault test, run with FULL_TESTS=1 (CI does)")


def pytest_collection_modifyitems(config, items):
    if FULL:
        return
    skip = pytest.mark.skip(reason="long fault test: run with FULL_TESTS=1 (CI does)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
