"""Tests that run pytest in a process of its own (a step's folder, an exercise's), started
several at a time. Each such run spends most of its time waiting on its servers, clients
and timeouts, not computing: one after another they took 2 to 3 minutes of CI; a few at a
time, a third of it.

A parametrized test asks for `started(request, "name_of_the_test", "param", start)`: the
first to ask starts `start(value)` for every value that the session's tests of that name
take (only those selected, and not skipped), and each test then waits for its own.
"""
import concurrent.futures

# Runs at once: each needs a fraction of a core, and timing-sensitive tests inside them
# still need their turn on a 2-core CI machine.
AT_ONCE = 4

_pools = {}    # at_once -> its pool of threads
_started = {}  # (test name, param) -> {value: future}


def started(request, test_name, param, start, at_once=AT_ONCE):
    """{value: future of start(value)} for each value the session's `test_name` tests take."""
    key = (test_name, param)
    if key not in _started:
        values = [item.callspec.params[param] for item in request.session.items
                  if getattr(item, "originalname", None) == test_name
                  and hasattr(item, "callspec") and not item.get_closest_marker("skip")]
        if at_once not in _pools:
            _pools[at_once] = concurrent.futures.ThreadPoolExecutor(at_once)
        _started[key] = {value: _pools[at_once].submit(start, value) for value in values}
    return _started[key]
