"""Is this machine ready for the workshop? Run it before the day, in your chat folder (the
`chat` folder beside the kit, `chat-finished`):

    python ../chat-finished/workshop/check_setup.py

with the virtual environment active. Each line says OK, or PROBLEM and what to do; it exits
with status 0 only if every line is OK. It uses nothing but Python's standard library, and
talks to no one: the port check only tries to bind a port on this machine.
"""
import argparse
import importlib
import os
import re
import socket
import sys

OLDEST_PYTHON = (3, 9)
DEFAULT_PORT = 5000  # where `flask run` listens unless told otherwise
# On macOS, AirPlay Receiver often holds 5000: the chat then runs on the next port.
ACTIVATE = ". .venv/bin/activate (on Windows: .venv\\Scripts\\activate)"

# What the tutorial's requirements.txt installs: the package, the module it is imported
# as, the oldest version that fits, and the first that does not.
PACKAGES = [
    ("flask", "flask", (3, 0), (4, 0)),
    ("flask-sock", "flask_sock", (0, 7), (0, 8)),
    ("simple-websocket", "simple_websocket", (1, 1), (2, 0)),
    ("pytest", "pytest", (8, 0), (10, 0)),
]
INSTALL = "pip install -r requirements.txt, with the virtual environment active"


def check_python():
    version = "Python {}.{}.{}".format(*sys.version_info[:3])
    if sys.version_info[:2] >= OLDEST_PYTHON:
        return True, version
    return False, ("{}: the workshop needs Python 3.9 or newer; install one, then make"
                   " the virtual environment with it".format(version))


def check_virtual_environment():
    if sys.prefix != sys.base_prefix:
        return True, "in a virtual environment: " + sys.prefix
    if os.environ.get("CONDA_PREFIX") == sys.prefix:
        return True, "in a conda environment: " + sys.prefix
    return False, ("not in a virtual environment (this is " + sys.executable + "): in"
                   " your chat folder, run " + ACTIVATE + ", then run this again")


def version_tuple(version):
    """(3, 1) from "3.1.2" or "3.1rc1"; None if it does not start with two numbers."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def wanted(oldest, too_new):
    return "{}.{} or later, below {}.{}".format(*oldest, *too_new)


def check_package(name, module, oldest, too_new):
    from importlib import metadata  # Python 3.8 and later: checked above
    try:
        importlib.import_module(module)
        version = metadata.version(name)
    except Exception as error:  # missing, or broken by a half-finished install
        return False, "{} is not installed ({}): {}".format(
            name, type(error).__name__, INSTALL)
    found = version_tuple(version)
    if found is None or not oldest <= found < too_new:
        return False, "{} {}: the workshop needs {}: {}".format(
            name, version, wanted(oldest, too_new), INSTALL)
    return True, "{} {}".format(name, version)


def check_port(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if sys.platform != "win32":
            # As `flask run` binds: a port that a stopped server left behind is free.
            # (On Windows this option would let us share a port that is taken.)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as error:
            other = port + 1
            return False, (
                "port {} on 127.0.0.1 is taken ({}): run the chat with `flask run --debug"
                " --port {}`, open http://127.0.0.1:{}, and give break_it.py --url"
                " ws://127.0.0.1:{}/ws".format(port, error.strerror or error, other,
                                               other, other))
    return True, "port {} on 127.0.0.1 is free".format(port)


def run_checks(port):
    yield check_python()
    yield check_virtual_environment()
    if sys.version_info[:2] < (3, 8):  # no importlib.metadata to ask
        yield False, "packages not checked: install Python 3.9 or newer first"
    else:
        for name, module, oldest, too_new in PACKAGES:
            yield check_package(name, module, oldest, too_new)
    yield check_port(port)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help="the port the chat will use (default: %(default)s)")
    args = parser.parse_args()
    problems = 0
    for ok, text in run_checks(args.port):
        print(("OK       " if ok else "PROBLEM  ") + text)
        problems += not ok
    if problems:
        print("{} problem(s): fix each as its line says, then run this again.".format(
            problems))
        return 1
    print("All set: see you at the workshop.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
