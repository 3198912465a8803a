"""workshop/check_setup.py, what attendees run before the day: in this virtual environment,
with what requirements.txt installs, every line is OK; a port that is taken is a PROBLEM
that says which port to use instead."""
import importlib.util
import pathlib
import socket
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).parent.parent / "workshop" / "check_setup.py"
TIMEOUT = 60  # seconds; it takes well under one, but CI machines get loaded


def run_check(port):
    return subprocess.run([sys.executable, str(SCRIPT), "--port", str(port)],
                          capture_output=True, text=True, timeout=TIMEOUT)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_this_environment_is_ready():
    port = free_port()
    result = run_check(port)
    lines = result.stdout.splitlines()
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines[-1] == "All set: see you at the workshop."
    checks = lines[:-1]
    assert all(line.startswith("OK ") for line in checks), result.stdout
    for name in ("Python 3.", "in a virtual environment", "flask 3.", "flask-sock 0.7.",
                 "simple-websocket 1.", "pytest ", f"port {port} on 127.0.0.1 is free"):
        assert any(name in line for line in checks), (name, result.stdout)


def test_a_port_that_is_taken_is_a_problem():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = run_check(port)
    assert result.returncode == 1, result.stdout + result.stderr
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(problems) == 1, result.stdout
    assert f"port {port} on 127.0.0.1 is taken" in problems[0]
    assert f"flask run --debug --port {port + 1}" in problems[0]
    assert f"--url ws://127.0.0.1:{port + 1}/ws" in problems[0]
    assert result.stdout.splitlines()[-1].startswith("1 problem(s)")


def test_a_version_out_of_range_is_a_problem():
    spec = importlib.util.spec_from_file_location("check_setup", SCRIPT)
    check_setup = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_setup)
    ok, text = check_setup.check_package("flask", "flask", (4, 0), (5, 0))
    assert not ok
    assert text.startswith("flask 3.") and "needs 4.0 or later, below 5.0" in text
    ok, text = check_setup.check_package("no-such-package", "no_such_module", (1, 0), (2, 0))
    assert not ok and "no-such-package is not installed" in text


def test_it_names_the_attendees_chat_folder_not_the_workshops():
    text = (pathlib.Path(__file__).parent.parent / "workshop" / "check_setup.py").read_text()
    assert "your chat folder" in text and "workshop folder" not in text
