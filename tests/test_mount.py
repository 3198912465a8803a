"""The hardened chat added to an app of someone else's, as examples/host_app.py says: the
folder hardened/ copied beside it, served, and chatted through; or copied inside a package
app. The host keeps its own routes, headers, hooks, websocket options and process
settings."""
import json
import os
import pathlib
import shlex
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
import simple_websocket
from flask import Flask
from flask_sock import Sock
from werkzeug.serving import make_server

from chat_helpers import TIMEOUT, Client, raw_handshake, wait_until
from hardened import chat
from hardened.safeguards import limits, reader, selfcheck

ROOT = pathlib.Path(__file__).parent.parent  # the project
HOST_APP = (ROOT / "examples" / "host_app.py").read_text(encoding="utf-8")
# What its docstring says to type in the project's folder, but for `flask run`.
COPY_COMMANDS = "\n".join(line.strip() for line in HOST_APP.split('"""')[1].splitlines()
                          if line.startswith("    ") and "flask run" not in line)
# How the hardened package says to register it (its __init__.py's docstring).
LINES_TO_ADD = ["import hardened", 'app.register_blueprint(hardened.bp, url_prefix="/chat")']
SERVE = """
import sys
from werkzeug.serving import make_server
import app
server = make_server("127.0.0.1", 0, app.app, threaded=True)
print(server.server_port, flush=True)
server.serve_forever()
"""


def copy_as_the_example_says(folder):
    """An app's folder holding examples/host_app.py as its app.py, and hardened/ copied
    beside it, with the commands of the example's docstring."""
    commands = COPY_COMMANDS.replace("../my-app", shlex.quote(str(folder)))
    subprocess.run(["bash", "-euc", commands], cwd=ROOT, check=True, timeout=TIMEOUT)
    return folder


@pytest.fixture
def host(tmp_path):
    """The host app, chat included, served in a process of its own; yields its address."""
    folder = copy_as_the_example_says(tmp_path / "my-app")
    env = {key: value for key, value in os.environ.items()
           if key not in ("CHAT_REDIS_URL", "CHAT_TRUSTED_PROXIES")}
    env["CHAT_ALLOWED_HOSTS"] = "127.0.0.1"  # the chat's setting: the host's routes ignore it
    with open(folder / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "-c", SERVE], cwd=folder, env=env,
                                  stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        port = server.stdout.readline().strip()
        assert port, (folder / "server.log").read_text()
        yield f"127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()
    log = (folder / "server.log").read_text()
    assert "Traceback" not in log, log


@pytest.fixture
def clients():
    """Connect to a websocket; every client is closed when the test ends, pass or fail."""
    opened = []

    def connect(url, **options):
        ws = Client.connect(url, **options)
        opened.append(ws)
        return ws

    yield connect
    for ws in opened:
        try:
            ws.close()
        except simple_websocket.ConnectionClosed:
            pass  # the server closed it first


def get(url, headers=None):
    """(status, headers, body) of a GET, errors included."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def receive(ws):
    frame = ws.receive(timeout=TIMEOUT)
    assert frame is not None, "no frame arrived in time"
    return json.loads(frame)


def test_the_example_copies_the_folder_and_adds_the_lines_the_package_names():
    assert "cp -r hardened ../my-app/" in COPY_COMMANDS
    package_doc = (ROOT / "hardened" / "__init__.py").read_text(encoding="utf-8")
    for line in LINES_TO_ADD:
        assert line in package_doc, f"hardened/__init__.py does not say: {line}"
        assert line in HOST_APP, f"examples/host_app.py does not do what hardened/ says: {line}"


def test_the_chat_works_at_its_prefix_beside_the_hosts_pages(host, clients):
    assert "My app" in get(f"http://{host}/")[2]
    assert "About" in get(f"http://{host}/about")[2]
    status, _, page = get(f"http://{host}/chat")  # redirected to /chat/
    assert status == 200 and 'id="message"' in page
    ada, bob = (clients(f"ws://{host}/chat/ws") for _ in range(2))
    ada.send(json.dumps({"name": "Ada", "message": "hello"}))
    for ws in (ada, bob):
        assert receive(ws) == {"name": "Ada", "message": "hello"}


def test_the_hosts_routes_get_none_of_the_chats_headers_or_checks(host):
    status, headers, _ = get(f"http://{host}/about", {"Host": "elsewhere.example"})
    assert status == 200  # CHAT_ALLOWED_HOSTS is the chat's: the host answers any name
    assert "Content-Security-Policy" not in headers
    assert "Referrer-Policy" not in headers
    status, headers, _ = get(f"http://{host}/chat/")
    assert "frame-ancestors 'self'" in headers["Content-Security-Policy"]


def test_the_chats_checks_apply_at_its_prefix(host):
    s, response = raw_handshake(host, origin="http://evil.example", path="/chat/ws")
    s.close()
    assert response.startswith("HTTP/1.1 403")
    s, response = raw_handshake(host, path="/chat/ws", host_header="elsewhere.example")
    s.close()
    assert response.startswith("HTTP/1.1 400")  # not one of CHAT_ALLOWED_HOSTS
    s, response = raw_handshake(host, path="/chat/ws")
    s.close()
    assert response.startswith("HTTP/1.1 101")


def test_the_per_address_and_message_limits_apply_at_its_prefix(host, clients):
    url = f"ws://{host}/chat/ws"
    ada = clients(url)
    ada.send(json.dumps({"name": "Ada", "message": "x" * (chat.MAX_MESSAGE_CHARS + 1)}))
    assert "too long" in receive(ada)["error"]
    for n in range(chat.RATE_BURST + 5):
        ada.send(json.dumps({"name": "Ada", "message": f"m{n}"}))
    replies = [receive(ada) for _ in range(chat.RATE_BURST + 5)]
    assert any("too fast" in reply.get("error", "") for reply in replies)
    for _ in range(limits.CONNECTIONS_PER_ADDRESS - 1):
        clients(url)
    refused = clients(url)  # let in, so that the page can read why it is refused:
    with pytest.raises(simple_websocket.ConnectionClosed) as closed:
        refused.receive(timeout=TIMEOUT)
    assert closed.value.reason == 1013  # Try Again Later
    assert "Too many connections from your address" in closed.value.message


def test_the_page_at_the_prefix_chats_in_a_real_browser(host):
    browser_tests = pytest.importorskip("test_browser")  # skips, or fails in CI, without it
    with browser_tests.sync_playwright() as playwright:
        browser = browser_tests.launch_chromium(playwright)
        try:
            ada, bob = (browser_tests.join_chat(browser.new_page(), f"http://{host}/chat/", name)
                        for name in ("Ada", "Bob"))
            browser_tests.say(ada, "hello from /chat/")
            for page in (ada, bob):
                browser_tests.expect_messages(page, [("Ada", "hello from /chat/")])
        finally:
            browser.close()


def test_a_hosts_own_websockets_keep_their_options_and_the_chat_its_own(clients):
    """flask-sock reads SOCK_SERVER_OPTIONS from the whole app: the chat must not."""
    host = Flask("a_host")
    host.config["SOCK_SERVER_OPTIONS"] = {"ping_interval": 5}
    seen = {}

    @Sock(host).route("/echo")
    def echo(ws):
        seen["thread"], seen["ping_interval"] = type(ws.thread), ws.ping_interval
        ws.send(ws.receive())

    host.register_blueprint(chat.bp, url_prefix="/chat")
    httpd = make_server("127.0.0.1", 0, host, threaded=True)
    threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True).start()
    try:
        echo_ws = clients(f"ws://127.0.0.1:{httpd.server_port}/echo")
        echo_ws.send("hi")
        assert echo_ws.receive(timeout=TIMEOUT) == "hi"
        assert seen == {"thread": threading.Thread, "ping_interval": 5}
        clients(f"ws://127.0.0.1:{httpd.server_port}/chat/ws")
        room = chat.room_of(host)
        wait_until(lambda: len(room.clients) == 1)
        (ws,) = room.clients
        assert isinstance(ws.thread, reader.ReaderThread)
        assert ws.ping_interval == chat.PING_INTERVAL
    finally:
        for ws in list(chat.room_of(host).clients):
            chat.hang_up(ws)
        wait_until(lambda: not chat.room_of(host).clients)
        httpd.shutdown()


PROCESS_STATE = """
import json, logging, resource, sys, threading
from flask import Flask
def state(app):
    return {"switch interval": sys.getswitchinterval(),
            "open files": resource.getrlimit(resource.RLIMIT_NOFILE),
            "log levels": [logging.getLogger().level, app.logger.level],
            "threads": threading.active_count(),
            "hooks": [sorted(map(str, app.before_request_funcs)),
                      sorted(map(str, app.after_request_funcs)),
                      sorted(map(str, app.teardown_request_funcs))],
            "wsgi_app": repr(app.wsgi_app),
            "config": sorted(app.config)}
host = Flask("a_host")
before = state(host)
import hardened
host.register_blueprint(hardened.bp, url_prefix="/chat")
print(json.dumps([before, state(host)]))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="reads the open-file limit")
def test_importing_and_registering_the_chat_changes_nothing_in_the_process():
    env = {key: value for key, value in os.environ.items() if key != "CHAT_REDIS_URL"}
    result = subprocess.run([sys.executable, "-c", PROCESS_STATE], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    before, after = json.loads(result.stdout)
    assert after == before


PACKAGE_APP = """
from flask import Flask
from . import hardened
app = Flask(__name__)
app.register_blueprint(hardened.bp, url_prefix="/chat")
"""
IN_THE_PACKAGE = """
import sys
import myapp
page = myapp.app.test_client().get("/chat/")
print(page.status_code, 'id="message"' in page.text, "hardened" in sys.modules)
"""


def test_a_package_app_may_hold_the_folder_inside_its_package(tmp_path):
    """hardened/ imports its own modules relatively: copied inside a package, it works
    there, and needs no top-level `hardened` or `safeguards`."""
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text(PACKAGE_APP)
    shutil.copytree(ROOT / "hardened", package / "hardened",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {key: value for key, value in os.environ.items()
           if key not in ("CHAT_REDIS_URL", "PYTHONPATH")}
    result = subprocess.run([sys.executable, "-c", IN_THE_PACKAGE], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "True", "False"]


def test_registering_fails_at_once_naming_the_versions_if_a_library_moved(monkeypatch):
    monkeypatch.setattr(selfcheck, "CHECKS", [("ws.input_buffer is gone", lambda: False)])
    with pytest.raises(RuntimeError) as error:
        Flask("a_host").register_blueprint(chat.bp, url_prefix="/chat")
    message = str(error.value)
    assert "ws.input_buffer is gone" in message
    for name in selfcheck.LIBRARIES:
        assert f"{name} {selfcheck.version(name)}" in message


def test_every_relied_on_part_of_the_installed_libraries_is_there():
    assert [what for what, holds in selfcheck.CHECKS if not holds()] == []


def test_the_check_sees_a_library_that_uses_a_refused_connections_reader(monkeypatch):
    """A refused connection's reader is a stand-in that never starts (websocket.NoReader):
    a release of simple-websocket that joined its reader on close would wait on it."""
    def close(self, reason=None, message=None):
        self.sock.send(b"")  # as the library's close() does, so that only the join differs
        self.thread.join()

    monkeypatch.setattr(simple_websocket.ws.Base, "close", close)
    assert [what for what, holds in selfcheck.CHECKS if not holds()] == [
        next(what for what, _ in selfcheck.CHECKS if "NoReader" in what)]
