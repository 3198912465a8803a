"""The workshop's checkpoints: every step runs and keeps its promise, and each of
break_it.py's demonstrations breaks the step before its fix and holds from the fix on.

A checkpoint is the folder workshop/steps/NN-name/, and the last one is the project
itself. A step's folder is complete, as an attendee's own folder is at that point: the
files that step changes, and copies of the others as they were at the step before. From
step 17 on, that includes safeguards/, the project's package, one module at a time.
"""
import ast
import contextlib
import importlib.util
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import simple_websocket
import wsproto.frame_protocol
from werkzeug.serving import make_server

from chat_helpers import Client, raw_handshake
from side_runs import started

HERE = pathlib.Path(__file__).parent.parent  # the project
WORKSHOP = HERE / "workshop"
# The finished chat, the last checkpoint's files as a package: its chat.py is a step's
# app.py, which imports the package's safeguards/ relatively (see normalised()).
HARDENED = HERE / "hardened"
FINAL_NAMES = {"app.py": "chat.py"}
STEPS = sorted(p.name for p in (WORKSHOP / "steps").iterdir() if p.is_dir()) + ["final"]
# What an attendee's folder holds; the modules of safeguards/ arrive from step 17 on,
# copied whole.
FILES = ("app.py", "chat.html", "safeguards/__init__.py", "safeguards/frames.py",
         "safeguards/settings.py", "safeguards/guards.py", "safeguards/limits.py",
         "safeguards/reader.py",
         "safeguards/websocket.py", "safeguards/process.py", "safeguards/text_rules.py",
         "safeguards/headers.py", "safeguards/selfcheck.py", "safeguards/redis_bridge.py")
TIMEOUT = 10  # seconds any single wait may take (generous: CI machines get loaded)

# Each demonstration, and the step whose one change makes it hold.
FIXED_BY = {
    "vanish": "03-leave",
    "race": "04-lock",
    "stall": "05-writer",
    "garbage": "07-validate",
    "flood": "08-rate-limit",
    "origin": "12-origin",
    "pause": "17-whole-frames",
    "crowd": "18-guards",
    "refused": "19-reader",
    "busy": "19-reader",
    "swarm": "20-limits",
    "churn": "20-limits",
    "spoof": "21-text-rules",
    "headers": "22-page",
}
# Demonstrations that hold at every step that has what they try: `oversize` (do closed
# connections give their address its places back?) holds from 18-guards on, which
# brings the places, because the card's handler wakes twice a second and hears the close.
HOLDS_THROUGHOUT = ["oversize"]


# What each step changes, as the table in workshop/steps/README.md says: every other file
# in its folder is a copy of the step before's.
CHANGES = {
    "01-echo": {"app.py"},  # the page is written at step 02
    "02-broadcast": {"app.py", "chat.html"},
    "03-leave": {"app.py"},
    "04-lock": {"app.py"},
    "05-writer": {"app.py"},
    "06-history": {"app.py"},
    "07-validate": {"app.py"},
    "08-rate-limit": {"app.py"},
    "09-stuck": {"app.py"},
    "10-ping": {"app.py"},
    "11-log": {"app.py"},
    "12-origin": {"app.py"},
    "13-page": {"chat.html"},
    "14-blueprint": {"app.py"},
    "15-clean-close": {"app.py"},
    "16-speed": {"app.py"},
    "17-whole-frames": {"app.py", "safeguards/__init__.py", "safeguards/frames.py"},
    "18-guards": {"app.py", "safeguards/settings.py", "safeguards/guards.py",
                  "safeguards/limits.py"},
    "19-reader": {"app.py", "safeguards/reader.py", "safeguards/websocket.py"},
    "20-limits": {"app.py", "safeguards/process.py"},
    "21-text-rules": {"app.py", "safeguards/text_rules.py"},
    "22-page": {"app.py", "chat.html", "safeguards/headers.py", "safeguards/selfcheck.py"},
    "23-room": {"app.py", "safeguards/redis_bridge.py"},
}


def folder_of(step):
    return HARDENED if step == "final" else WORKSHOP / "steps" / step


def path_at(step, name):
    """A file of the chat at that step, by the name a checkpoint gives it."""
    return folder_of(step) / (FINAL_NAMES.get(name, name) if step == "final" else name)


def files_at(step):
    """The chat's files at that step (its folder is complete), by name."""
    return {name: path_at(step, name) for name in FILES if path_at(step, name).exists()}


def normalised(path):
    """A file's text with its import lines as a checkpoint has them: the package's
    chat.py imports `.safeguards`, a flat folder's app.py `safeguards`. The names an
    import of safeguards takes in parentheses go on one line: their continuation lines
    are indented to the parenthesis, one column apart in the two."""
    text = path.read_text(encoding="utf-8").replace("from .safeguards import",
                                                    "from safeguards import")
    return re.sub(r"^from safeguards import \(([^)]*)\)",
                  lambda names: f"from safeguards import ({' '.join(names[1].split())})",
                  text, flags=re.MULTILINE)


def kit_files(step):
    """Every file of a step's folder that an attendee copies, by name."""
    folder = folder_of(step)
    return {path.relative_to(folder).as_posix(): path
            for pattern in ("*.py", "*.html") for path in folder.rglob(pattern)
            if "__pycache__" not in path.parts}


def assemble(step, folder):
    """A flat folder as an attendee's is at that step: the finished chat's too."""
    for file_name, path in files_at(step).items():
        (folder / file_name).parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py":
            (folder / file_name).write_text(normalised(path), encoding="utf-8")
        else:
            shutil.copy(path, folder / file_name)


def imported_modules(path):
    """The files of safeguards/ that a Python file imports, as FILES names them."""
    for node in ast.walk(ast.parse(normalised(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 1:  # inside the package
            names = [f"safeguards.{node.module or alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "safeguards":
            names = [f"safeguards.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            if name.startswith("safeguards."):
                yield name.replace(".", "/") + ".py"


def app_of(module):
    """The app a checkpoint's app.py serves: from step 20 on, create_app() makes it."""
    return module.create_app() if hasattr(module, "create_app") else module.app


# A checkpoint in a process of its own, as an attendee runs it: for the demonstrations,
# which leave the naive steps with threads stuck for good.
SERVE = """
from werkzeug.serving import make_server
import app
chat = app.create_app() if hasattr(app, "create_app") else app.app  # as app_of() does
server = make_server("127.0.0.1", 0, chat, threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


@contextlib.contextmanager
def served_in_a_process(step, folder):
    assemble(step, folder)
    env = {k: v for k, v in os.environ.items() if k != "CHAT_REDIS_URL"}
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-c", SERVE], cwd=folder, env=env,
                                  stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        port = server.stdout.readline().strip()
        assert port, (folder / "server.log").read_text()
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.kill()
        server.wait()


def break_it(demo, url):
    """Run a demonstration as an attendee does; (exit status, what it printed)."""
    result = subprocess.run([sys.executable, str(WORKSHOP / "break_it.py"), demo, "--url", url],
                            capture_output=True, text=True, timeout=180)
    return result.returncode, result.stdout + result.stderr


# A checkpoint in this process, for the quick checks of each step's promise. It runs
# with its own safeguards/ (copies of the project's: see the test below), as imported
# from its folder: several checkpoints, and the project, each have theirs.
SERVED = {}  # a checkpoint module's name -> (its app, its safeguards modules by short name)


def app_served(module):
    return SERVED[module.__name__][0]


def limits_of(module):
    """The limits.py a checkpoint counts with: its own."""
    return SERVED[module.__name__][1]["limits"]


def clients_of(module):
    """A checkpoint's connected clients: its globals, until step 23 gives each app a room."""
    if hasattr(module, "room_of"):
        return module.room_of(app_served(module)).clients
    return module.clients


def is_safeguards(name):
    return name == "safeguards" or name.startswith("safeguards.")


@contextlib.contextmanager
def own_safeguards(folder):
    """While a checkpoint is imported, `safeguards` is its folder's. Afterwards
    sys.modules holds the project's again, for test_app.py and the other test files; the
    checkpoint's modules go on working through the names that imported them. Yields a
    dict it fills with them, by short name ("limits", ...)."""
    project = {name: sys.modules.pop(name)
               for name in list(sys.modules) if is_safeguards(name)}
    sys.path.insert(0, str(folder))
    importlib.invalidate_caches()
    checkpoints = {}
    try:
        yield checkpoints
    finally:
        sys.path.remove(str(folder))
        for name in [name for name in sys.modules if is_safeguards(name)]:
            checkpoints[name.rpartition(".")[2]] = sys.modules.pop(name)
        sys.modules.update(project)


@pytest.fixture
def no_address_limits(monkeypatch):
    """Every test comes from 127.0.0.1: lift the limits per address but where tested.
    Yields what lifts them in a checkpoint's own limits.py."""
    lifted = []

    def lift(limits):
        limits.addresses.clear()
        monkeypatch.setattr(limits, "MESSAGES_BURST", 10**9)
        monkeypatch.setattr(limits, "READ_BYTES_BURST", 10**12)
        lifted.append(limits)

    yield lift
    # A connection's thread may still be leaving: let it, so the next test starts clean.
    deadline = time.monotonic() + TIMEOUT
    while any(a["connections"] for limits in lifted for a in limits.addresses.values()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)


@pytest.fixture
def serve(tmp_path, no_address_limits):
    servers = []

    def start(step):
        folder = tmp_path / step
        folder.mkdir()
        assemble(step, folder)
        name = f"checkpoint_{step.replace('-', '_')}"
        spec = importlib.util.spec_from_file_location(name, folder / "app.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # Flask finds chat.html beside the module through it
        with own_safeguards(folder) as safeguards:
            spec.loader.exec_module(module)
            app = app_of(module)
        SERVED[name] = app, safeguards
        if "limits" in safeguards:
            no_address_limits(safeguards["limits"])
        httpd = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
        servers.append((httpd, name))
        return f"127.0.0.1:{httpd.server_port}", module

    yield start
    for httpd, name in servers:
        httpd.shutdown()
        sys.modules.pop(name, None)
        SERVED.pop(name, None)


def connect(address):
    # test_app's Client: it parses the frames that come with the handshake's response
    # (simple-websocket 1.1.0's leaves them, and a newcomer's history, unread).
    return Client.connect(f"ws://{address}/ws")


def receive(ws):
    frame = ws.receive(timeout=TIMEOUT)
    assert frame is not None, "no frame arrived in time"
    return frame


def say(ws, message, name="Ada"):
    ws.send(json.dumps({"name": name, "message": message}))


def wait_until(condition):
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        time.sleep(0.01)


def room_of(address, module, count):
    """`count` clients, once the server has them all."""
    clients = [connect(address) for _ in range(count)]
    wait_until(lambda: len(clients_of(module)) == count)
    return clients


def page(address, headers=None):
    request = urllib.request.Request(f"http://{address}/", headers=headers or {})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return response.read().decode()


def test_the_steps_are_numbered_in_order_and_the_last_is_the_project():
    numbers = [int(step.split("-")[0]) for step in STEPS[:-1]]
    assert numbers == list(range(1, len(numbers) + 1))
    assert files_at("final") == {name: path_at("final", name) for name in FILES}
    package = {f"safeguards/{path.name}" for path in (HARDENED / "safeguards").glob("*.py")}
    assert package <= set(FILES), "a module of safeguards/ that no step brings"
    assert set(FIXED_BY.values()) <= set(STEPS)


def test_every_step_says_what_it_changes():
    assert list(CHANGES) == STEPS[:-1]
    assert all(CHANGES.values())


@pytest.mark.parametrize("step", STEPS[:-1])
def test_a_step_changes_what_it_says_and_copies_the_rest(step):
    """A folder is complete: a file that its step does not change is the step before's,
    byte for byte, so an attendee may copy a whole folder over theirs at any point."""
    earlier = kit_files(STEPS[STEPS.index(step) - 1]) if step != STEPS[0] else {}
    now = kit_files(step)
    assert set(earlier) <= set(now), f"{step} lacks files of the step before it"
    changed = {name for name, path in now.items()
               if name not in earlier or earlier[name].read_bytes() != path.read_bytes()}
    assert changed == CHANGES[step] | {"test_app.py"}  # its tests grow with every step


def run_steps_tests(step):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=folder_of(step), capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # 1 to 9 s a step, mostly waiting: run four at a time (side_runs.py)
@pytest.mark.parametrize("step", STEPS[:-1])
def test_a_steps_own_tests_pass_in_its_folder(step, request):
    """A room that stops at any step has a green pytest for what it built: the step's
    test_app.py, run in the folder as an attendee runs it, in a process of its own."""
    result = started(request, request.node.originalname, "step", run_steps_tests)[step].result()
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-500:]


def test_the_last_step_is_the_hardened_chat_but_for_its_imports():
    """Parts 2 and 3 end where hardened/ is: its chat.py is the last step's app.py, and
    its page and modules are the last step's, once the import of safeguards is made
    relative (a package's) or absolute (a flat folder's)."""
    last, final = files_at(STEPS[-2]), files_at("final")
    assert set(last) == set(final)
    for name, path in final.items():
        assert normalised(last[name]) == normalised(path), f"{STEPS[-2]}/{name} differs"


@pytest.mark.parametrize("step", STEPS[:-1])
def test_a_module_in_a_step_is_the_projects_own(step):
    """Attendees copy the modules rather than type them: each copy is the project's file,
    in safeguards/ as in the project."""
    folder = folder_of(step)
    for name, path in kit_files(step).items():
        if name not in ("app.py", "chat.html", "test_app.py"):
            assert name.startswith("safeguards/"), f"{path}: the modules are in safeguards/"
            assert path.read_text() == path_at("final", name).read_text(), path


@pytest.mark.parametrize("step", STEPS)
def test_a_step_has_every_module_its_files_import(step):
    """The modules are the project's, final: one arrives with, or after, all it imports."""
    files = files_at(step)
    for name, path in files.items():
        if name.endswith(".py"):
            for needed in imported_modules(path):
                assert needed in files, f"{step}: {name} imports {needed}, not there yet"
    if any(name.startswith("safeguards/") for name in files):
        assert "safeguards/__init__.py" in files


def test_01_echo_sends_back_what_it_gets(serve):
    address, _ = serve("01-echo")
    assert not (folder_of("01-echo") / "chat.html").exists()  # Part 1 writes it at step 02
    ws = connect(address)
    ws.send("hello")
    assert receive(ws) == "hello"
    ws.close()


@pytest.mark.parametrize("step", STEPS[1:])
def test_from_02_everyone_gets_every_message(serve, step):
    address, module = serve(step)
    ada, bob = room_of(address, module, 2)
    say(ada, "hello")
    for ws in (ada, bob):
        assert json.loads(receive(ws)) == {"name": "Ada", "message": "hello"}
    ada.close()
    bob.close()
    if step >= "03":  # from 03-leave on, a closed connection leaves the room
        wait_until(lambda: len(clients_of(module)) == 0)


@pytest.mark.parametrize("step", STEPS[STEPS.index("06-history"):])
def test_from_06_a_newcomer_gets_the_last_ten(serve, step):
    address, module = serve(step)
    (ada,) = room_of(address, module, 1)
    for n in range(12):
        say(ada, f"m{n}")
    for n in range(12):
        receive(ada)
    bob = connect(address)
    assert [json.loads(receive(bob))["message"] for _ in range(10)] == [
        f"m{n}" for n in range(2, 12)]
    ada.close()
    bob.close()


@pytest.mark.parametrize("step", STEPS[STEPS.index("07-validate"):])
def test_from_07_bad_input_gets_an_error(serve, step):
    address, module = serve(step)
    (ada,) = room_of(address, module, 1)
    ada.send("hello")
    assert "not valid JSON" in json.loads(receive(ada))["error"]
    ada.close()


@pytest.mark.parametrize("step", STEPS[STEPS.index("08-rate-limit"):])
def test_from_08_a_flood_is_refused(serve, step):
    address, module = serve(step)
    (ada,) = room_of(address, module, 1)
    for n in range(module.RATE_BURST + 1):
        say(ada, f"m{n}")
    replies = [json.loads(receive(ada)) for _ in range(module.RATE_BURST + 1)]
    assert "too fast" in replies[-1]["error"]
    ada.close()


@pytest.mark.parametrize("step", STEPS[STEPS.index("09-stuck"):])
def test_from_09_a_client_far_behind_is_hung_up_on(serve, step, monkeypatch):
    address, module = serve(step)
    if hasattr(module, "OUTBOX_LIMIT"):  # the finished chat's: everyone is too far behind
        monkeypatch.setattr(module, "OUTBOX_LIMIT", 0)
        messages = ["hello"]
    else:  # Part 1's bounded queue: room for one frame, and a writer that takes none
        monkeypatch.setattr(module, "OUTBOX_SIZE", 1)
        monkeypatch.setattr(module, "write_frames", lambda ws, outbox: None)
        messages = ["hello", "and again"]  # the second finds the outbox full
    if hasattr(module, "frames"):  # the final chat writes at once what need not wait:
        monkeypatch.setattr(module.frames, "DONT_WAIT", None)  # as on Windows, none
    (ada,) = room_of(address, module, 1)
    for message in messages:
        say(ada, message)
    wait_until(lambda: len(clients_of(module)) == 0)


@pytest.mark.parametrize("step", STEPS[STEPS.index("10-ping"):])
def test_from_10_the_server_pings(serve, step):
    _, module = serve(step)
    if hasattr(module, "SOCKET_OPTIONS"):  # from step 19 on, the chat's route's own
        options = module.SOCKET_OPTIONS
    else:
        options = app_served(module).config["SOCK_SERVER_OPTIONS"]
    assert options["ping_interval"] == module.PING_INTERVAL


@pytest.mark.parametrize("step", STEPS[STEPS.index("11-log"):])
def test_from_11_joins_and_leaves_are_logged(serve, step, caplog):
    address, module = serve(step)
    caplog.set_level("INFO", logger=app_served(module).logger.name)
    (ada,) = room_of(address, module, 1)
    ada.close()
    wait_until(lambda: len(caplog.records) >= 2)
    assert [r.getMessage() for r in caplog.records][:2] == [
        "127.0.0.1 joined, 1 connected", "127.0.0.1 left, 0 connected"]


@pytest.mark.parametrize("step", STEPS[STEPS.index("12-origin"):])
def test_from_12_other_sites_are_refused(serve, step):
    address, _ = serve(step)
    with pytest.raises(simple_websocket.ConnectionError):
        simple_websocket.Client.connect(f"ws://{address}/ws",
                                        headers={"Origin": "http://evil.example"})


@pytest.mark.parametrize("step", STEPS[STEPS.index("13-page"):])
def test_from_13_the_page_shows_its_status(serve, step):
    address, _ = serve(step)
    assert 'id="status"' in page(address)


# Part 1 ends at the top-level chat: its last checkpoint is app.py and chat.html, whole.
PART_1_END = "15-clean-close"


@pytest.mark.parametrize("name", ["app.py", "chat.html", "test_app.py"])
def test_part_1_ends_with_the_top_level_chat_byte_for_byte(name):
    assert (folder_of(PART_1_END) / name).read_bytes() == (HERE / name).read_bytes()


def client_frame(payload, opcode=0x1):
    """One frame as a client sends it: masked, its length in 7, 16 or 64 bits."""
    if len(payload) < 126:
        head = bytes([0x80 | opcode, 0x80 | len(payload)])
    elif len(payload) < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + len(payload).to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + len(payload).to_bytes(8, "big")
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def until_closed(s):
    """What the server sends until it closes the socket: the frames up to its close frame,
    the bytes after that frame, and how long the socket stayed open after we sent."""
    started, data = time.monotonic(), b""
    s.settimeout(TIMEOUT)
    while chunk := s.recv(65536):  # a timeout here fails the test
        data += chunk
    took = time.monotonic() - started
    frames = []
    while data and (not frames or frames[-1][0] != 0x8):
        length, start = data[1] & 0x7F, 2
        if length == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
        frames.append((data[0] & 0x0F, data[start:start + length]))
        data = data[start + length:]
    return frames, data, took


def frame_limit(module):
    return getattr(module, "MAX_FRAME_BYTES", None) or module.MAX_FRAME_CHARS


@pytest.mark.parametrize("step", STEPS[STEPS.index(PART_1_END):])
@pytest.mark.parametrize("close", ["the client's", "too big"])
def test_from_15_a_close_is_the_last_thing_on_the_wire(serve, step, close):
    """Under Werkzeug, flask-sock lets the server write "HTTP/1.1 200 OK" after the close
    frame, and a browser then shows "Invalid frame header" instead of the close's code
    and reason. From the end of Part 1 on, nothing follows it, and the socket closes
    within a second."""
    address, module = serve(step)
    s, head = raw_handshake(address)
    assert " 101 " in head
    wait_until(lambda: len(clients_of(module)) == 1)
    if close == "too big":
        s.sendall(client_frame(b"x" * (frame_limit(module) + 1)))
    else:
        s.sendall(client_frame((1000).to_bytes(2, "big"), opcode=0x8))
    frames, after, took = until_closed(s)
    s.close()
    opcode, payload = frames[-1]
    assert opcode == 0x8, frames
    assert int.from_bytes(payload[:2], "big") == (1009 if close == "too big" else 1000)
    assert after == b"", after[:60]
    assert took < 1, f"the socket stayed open {took:.1f} s after the close"


@pytest.mark.parametrize("step", STEPS[STEPS.index("16-speed"):])
def test_from_16_compression_is_declined(serve, step):
    address, _ = serve(step)
    s, head = raw_handshake(address, extensions="permessage-deflate")
    s.close()
    assert " 101 " in head and "extensions" not in head.lower()


def read_frames(s, parser, quiet=1):
    """Parse what s receives until nothing comes for `quiet` s; True if the server hung
    up. Raises wsproto's ParseFailed if the stream is corrupt."""
    s.settimeout(quiet)
    deadline = time.monotonic() + 3 * TIMEOUT
    while time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except socket.timeout:
            return False
        except OSError:  # reset
            return True
        if not data:
            return True
        parser.receive_bytes(data)
        for _ in parser.received_frames():
            pass
    raise AssertionError("the server never stopped sending")


# 6 s a step, so at the step that brings safeguards/frames.py and at the end: the steps
# between hold byte-identical copies of it (see above).
@pytest.mark.slow  # a learner's pytest has test_app.py's quicker check
@pytest.mark.parametrize("step", ["17-whole-frames", "final"])
def test_from_17_a_slow_reader_gets_whole_frames_then_the_end(serve, step, monkeypatch):
    """A client stops reading for longer than the send timeout, reads on, then stops for
    good. At step 16, ws.send() gave up part-way through a frame when the timeout passed,
    and the next frame followed: a corrupt stream (break_it.py pause shows it)."""
    address, module = serve(step)
    monkeypatch.setattr(module, "SEND_TIMEOUT", 2)
    # From step 23 on, the room's settings are read when the app registers the chat.
    settings = module.room_of(app_served(module)).settings if hasattr(module, "room_of") else module
    monkeypatch.setattr(settings, "RATE_BURST", 10**6)
    if hasattr(module, "BUSY_WAIT"):  # the finished chat: Ada's burst is not "busy" here
        monkeypatch.setattr(module, "BUSY_WAIT", 10)
        monkeypatch.setattr(module, "BUSY_BACKLOG", module.OUTBOX_LIMIT)
    slow, head = raw_handshake(address, receive_buffer=4096)
    assert " 101 " in head
    ada = connect(address)
    wait_until(lambda: len(clients_of(module)) == 2)
    parser = wsproto.frame_protocol.FrameProtocol(client=True, extensions=[])
    for n in range(300):  # more than fits in the buffers on the way to slow
        say(ada, f"{n} " + "x" * 900)
    for n in range(300):
        receive(ada)  # all sent: the send to slow has stopped part-way, and waits
    # At step 16 that send gives up part-way after SEND_TIMEOUT, and the next one waits
    # to go on after the cut: read on in between. (From step 17 on, all goes out whole.)
    time.sleep(module.SEND_TIMEOUT * 1.25)
    read_frames(slow, parser)
    for n in range(300):  # now it reads nothing more: hung up on, after whole frames
        say(ada, f"{n} " + "x" * 900)
    wait_until(lambda: len(clients_of(module)) == 1)
    assert read_frames(slow, parser)
    slow.close()
    ada.close()


@pytest.mark.parametrize("step", STEPS[STEPS.index("18-guards"):])
def test_from_18_a_bad_handshake_gets_a_400_in_words(serve, step):
    address, _ = serve(step)
    s, head = raw_handshake(address, key="not sixteen bytes")
    body = s.recv(1000)
    s.close()
    assert head.startswith("HTTP/1.1 400") and b"Sec-WebSocket-Key must be" in body


@pytest.mark.parametrize("step", STEPS[STEPS.index("18-guards"):])
def test_from_18_one_address_may_not_fill_the_room(serve, step):
    address, module = serve(step)
    room = room_of(address, module, limits_of(module).CONNECTIONS_PER_ADDRESS)
    if step < "19":  # step 18 refuses the handshake
        with pytest.raises(simple_websocket.ConnectionError) as refused:
            connect(address)
        assert refused.value.status_code == 429
    else:  # websocket.py refuses in words a page can read: it accepts, then closes
        one_more = connect(address)
        with pytest.raises(simple_websocket.ConnectionClosed) as closed:
            one_more.receive(timeout=TIMEOUT)
        assert closed.value.reason == 1013  # Try Again Later
        assert "Too many connections from your address" in closed.value.message
    for ws in room:
        ws.close()


@pytest.mark.parametrize("step", STEPS[STEPS.index("19-reader"):])
def test_from_19_the_handler_hears_a_close_at_once(serve, step):
    """Too big a frame: the library closes with 1009. Before reader.py, the handler
    noticed only when its receive() woke up, 25 s later, holding its place meanwhile.
    Not always: the library wakes it just before it marks the connection closed, and a
    handler quick enough sees the mark (about 1 in 4 at step 18); so five of them."""
    address, module = serve(step)
    room = room_of(address, module, 5)
    for ws in room:
        ws.send("x" * (module.MAX_FRAME_CHARS + 1))
    wait_until(lambda: len(clients_of(module)) == 0)


@pytest.mark.parametrize("step", STEPS[STEPS.index("20-limits"):])
def test_from_20_an_address_is_limited_whatever_its_connections(serve, step, monkeypatch):
    address, module = serve(step)
    limits = limits_of(module)
    monkeypatch.setattr(limits, "MESSAGES_BURST", 30)
    monkeypatch.setattr(limits, "MESSAGES_PER_SECOND", 0.001)
    monkeypatch.setattr(limits, "SHARE_BURST", 1)
    limits.addresses.clear()
    ada, *others = room_of(address, module, 4)
    for ws in others:  # 10 each: every connection is well within its own RATE_BURST
        for n in range(10):
            say(ws, f"m{n}")
    for n in range(30):
        receive(ada)
    # The address has spent its 30; ada still has her own share of it (1 here)...
    say(ada, "my share")
    assert json.loads(receive(ada))["message"] == "my share"
    say(ada, "more than my share")  # ...and no more
    assert "too fast" in json.loads(receive(ada))["error"]
    for ws in [ada, *others]:
        ws.close()


@pytest.mark.parametrize("step", STEPS[STEPS.index("21-text-rules"):])
def test_from_21_a_reversed_name_is_refused_in_words(serve, step):
    address, module = serve(step)
    (ada,) = room_of(address, module, 1)
    say(ada, "hello", name="\u202eevil")
    assert "reverses text" in json.loads(receive(ada))["error"]
    say(ada, "x" * (module.MAX_MESSAGE_CHARS + 1))
    assert "too long" in json.loads(receive(ada))["error"]
    ada.close()


@pytest.mark.parametrize("step", STEPS[STEPS.index("22-page"):])
def test_from_22_the_page_comes_with_its_content_security_policy(serve, step):
    address, _ = serve(step)
    with urllib.request.urlopen(f"http://{address}/", timeout=TIMEOUT) as response:
        policy = response.headers["Content-Security-Policy"]
        body = response.read().decode()
    assert "default-src 'none'" in policy and "prefers-color-scheme: dark" in body


def test_break_it_lists_every_demonstration_one_a_line():
    result = subprocess.run([sys.executable, str(WORKSHOP / "break_it.py"), "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for demo in [*FIXED_BY, *HOLDS_THROUGHOUT]:
        assert len([line for line in result.stdout.splitlines()
                    if line.strip().startswith(demo + " ")]) == 1


def test_break_it_says_when_no_chat_is_running():
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    status, output = break_it("vanish", f"ws://127.0.0.1:{port}/ws")
    assert status == 2 and "Is the chat running?" in output


def test_break_it_says_what_answered_when_it_is_not_the_chat():
    """A web server that is not the chat (another app on the port, a wrong path) is
    named with what it said, never asked whether the chat is running."""
    import http.server
    httpd = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    try:
        status, output = break_it("vanish", f"ws://127.0.0.1:{httpd.server_port}/ws")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert status == 2, output
    assert "answered, but not with a websocket at /ws" in output and "--url" in output
    assert "Is the chat running?" not in output


@pytest.mark.slow
def test_break_it_names_leftovers_from_an_earlier_run_and_what_to_do(tmp_path):
    """At step 02 a client that left stays in the set, and whoever speaks next is cut
    off. A demonstration run after another, without a restart, says so: the chat is
    running, and the attendee is told to restart it."""
    with served_in_a_process("02-broadcast", tmp_path) as url:
        first, output = break_it("vanish", url)
        assert first == 1 and "BROKE" in output, output
        second, output = break_it("race", url)
    assert second == 2, output
    assert "earlier experiment" in output and "Restart the chat" in output
    assert "Is the chat running?" not in output


# Each demonstration mostly waits (for a stalled reader's timeout, a room's answer), and
# has a server process of its own: three run at once (side_runs.py), which took the 45
# runs below from about 5 minutes to 2 1/2 on a 2-core machine.
DEMOS_AT_ONCE = 3


@pytest.fixture
def demo_run(request, tmp_path_factory):
    """run(demo, step): `break_it.py demo` against the chat at that step, served in a
    process of its own; started with every other selected run of the same test."""
    def run(demo, step_for):
        def start(value):
            with served_in_a_process(step_for(value), tmp_path_factory.mktemp(value)) as url:
                return break_it(value, url)
        runs = started(request, request.node.originalname, "demo", start, DEMOS_AT_ONCE)
        return runs[demo].result()
    return run


def step_before_the_fix(demo):
    return STEPS[STEPS.index(FIXED_BY[demo]) - 1]


@pytest.mark.slow
@pytest.mark.parametrize("demo", FIXED_BY)
def test_each_demonstration_breaks_the_step_before_its_fix(demo, demo_run):
    status, output = demo_run(demo, step_before_the_fix)
    assert status == 1 and "BROKE" in output, output


@pytest.mark.slow
@pytest.mark.parametrize("demo", FIXED_BY)
def test_each_demonstration_holds_from_its_fix_on(demo, demo_run):
    status, output = demo_run(demo, FIXED_BY.get)
    assert status == 0 and "HELD" in output, output


@pytest.mark.slow
@pytest.mark.parametrize("demo", [*FIXED_BY, *HOLDS_THROUGHOUT])
def test_every_demonstration_holds_against_the_finished_chat(demo, demo_run):
    status, output = demo_run(demo, lambda _: "final")
    assert status == 0 and "HELD" in output, output


@pytest.mark.slow  # about 45 s: Part 1's six demonstrations
def test_all_against_the_card_runs_part_1_and_names_the_rest(tmp_path):
    """Against the card's chat (the end of Part 1, the top-level app.py), `all` runs Part
    1's demonstrations, exits 0 when they held, and names the others with no BROKE."""
    with served_in_a_process(PART_1_END, tmp_path) as url:
        status, output = break_it("all", url)
    assert status == 0, output
    lines = dict(line.split(": ", 1) for line in output.splitlines() if ": " in line)
    part_1 = [demo for demo, step in FIXED_BY.items() if step <= PART_1_END]
    assert set(lines) == set(FIXED_BY) | set(HOLDS_THROUGHOUT), output
    for demo in lines:
        if demo in part_1:
            assert lines[demo].startswith("HELD: "), output
        else:
            assert lines[demo] == "the hardened chat handles this: see Part 2", output
    assert "BROKE" not in output


def collected(step):
    """How many tests pytest collects in a step's folder, as an attendee runs it."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only",
                             "-p", "no:cacheprovider"], cwd=folder_of(step),
                            capture_output=True, text=True, timeout=60)
    return int(result.stdout.strip().splitlines()[-1].split()[0])


@pytest.mark.slow  # a pytest process per step to count its tests: 20 s
def test_part_1_has_each_steps_tests_copied_and_says_how_many_pass():
    """Every step of Part 1 tells the attendee to copy its test_app.py, and says what
    pytest will say. (A step's section names its folder: steps/NN-name/.)"""
    import re
    text = (HERE / "TUTORIAL.md").read_text(encoding="utf-8")
    sections = re.split(r"^### Step (\d\d)", text, flags=re.MULTILINE)[1:]
    said = {}
    for number, section in zip(sections[::2], sections[1::2]):
        step = next(s for s in STEPS if s.startswith(number + "-"))
        section = " ".join(section.split())
        assert re.search(rf"(steps/{step}/test_app\.py|step {number}'s `test_app\.py`)",
                         section), f"step {step} never has its tests copied"
        said[step] = int(re.findall(r"`(\d+) passed`", section)[-1])
    assert list(said) == STEPS[:STEPS.index(PART_1_END) + 1]
    for step, count in said.items():
        assert count == collected(step), step
