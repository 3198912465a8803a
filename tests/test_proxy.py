"""The deployment advice for slow clients (docs/deploying.md), checked: nginx in front, with its header timeout.

Werkzeug (`flask run`) and gunicorn give a thread to every connection that is still
sending its request headers, however slowly, and have no timeout for it. nginx, set up as
docs/deploying.md shows, holds such connections itself and cuts them off: the chat never sees
them. Skipped where nginx is not installed (CI installs it).
"""
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
import simple_websocket

from chat_helpers import ROOM, TIMEOUT, receive, say, server, wait_until  # noqa: F401

SLOW_CLIENTS = 200      # the figure: enough to hold every thread of gunicorn's 100
HEADER_TIMEOUT = 2      # seconds; docs/deploying.md says 10 s, shortened so the test is quick
NGINX_CONF = """
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    limit_conn_zone $binary_remote_addr zone=per_address:1m;
    server {{
        listen 127.0.0.1:{port};
        client_header_timeout {timeout}s;
        client_body_timeout {timeout}s;
        limit_conn per_address 64;
        location / {{
            proxy_pass http://{chat};
            proxy_set_header Host $http_host;
        }}
        location /ws {{
            proxy_pass http://{chat};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $http_host;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
if not os.path.exists(NGINX):
    pytest.skip("nginx is not installed (apt-get install nginx)", allow_module_level=True)


@pytest.fixture
def proxy(server, tmp_path):
    """nginx on a free loopback port in front of the chat; its address."""
    with socket.socket() as s:  # a free port: nginx cannot pick one and tell us
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=tmp_path, port=port, chat=server,
                                      timeout=HEADER_TIMEOUT))
    process = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(conf),
                                "-g", "daemon off;"], stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: answers(port))
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(TIMEOUT)


def answers(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def slow_request(address):
    """A connection that starts a request and sends the rest of its headers never."""
    host, port = address.split(":")
    s = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    s.sendall(f"GET / HTTP/1.1\r\nHost: {address}\r\nX-Slow: 1\r\n".encode())
    return s


@pytest.mark.slow
def test_slow_headers_stop_at_the_proxy_and_newcomers_still_get_in(proxy):
    threads_before = threading.active_count()
    slow = [slow_request(proxy) for _ in range(SLOW_CLIENTS)]
    try:
        # The page and the chat still answer a newcomer, through the same proxy...
        with urllib.request.urlopen(f"http://{proxy}/", timeout=TIMEOUT) as response:
            assert response.status == 200
        ws = simple_websocket.Client.connect(f"ws://{proxy}/ws")
        say(ws, "still here")
        assert receive(ws) == {"name": "Ada", "message": "still here"}
        ws.close()
        # ...the slow ones never reached the chat (no thread of its own each)...
        assert threading.active_count() < threads_before + 10
        # ...and the proxy cuts them off once its header timeout has passed.
        deadline = time.monotonic() + HEADER_TIMEOUT + TIMEOUT
        for s in slow:
            assert is_closed(s, max(deadline - time.monotonic(), 0.1)), "still held open"
    finally:
        for s in slow:
            s.close()
    wait_until(lambda: not ROOM.clients)


def is_closed(s, timeout):
    """True if the other end closes within `timeout` (what it says first, if anything,
    such as nginx's 408, is read and ignored)."""
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
        return True
    except socket.timeout:
        return False
    except OSError:
        return True  # reset: closed too


def test_the_readme_shows_the_timeouts_this_test_relies_on():
    page = os.path.join(os.path.dirname(os.path.dirname(__file__)), "docs", "deploying.md")
    readme = open(page, encoding="utf-8").read()
    for line in ("client_header_timeout 10s;", "client_body_timeout 10s;",
                 "limit_conn per_address 64;"):
        assert line in readme  # the test's config is docs/deploying.md's, timeout shortened
