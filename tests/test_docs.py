"""What the docs promise about themselves: links that lead somewhere, and deployment
commands that keep the per-address limits honest."""
import json
import pathlib
import re

import pytest
import simple_websocket

from chat_helpers import CHAT_APP, server  # noqa: F401
from hardened.safeguards import limits, settings

ROOT = pathlib.Path(__file__).parent.parent  # the project
PAGES = [ROOT / "README.md", ROOT / "TUTORIAL.md", *sorted((ROOT / "docs").glob("*.md")),
         *sorted((ROOT / "docs" / "tutorial").glob("*.md"))]
LOOPBACK_OR_PRIVATE = re.compile(r"-b (127\.\d+\.\d+\.\d+|10\.\d+\.\d+\.\d+|192\.168\.\d+\.\d+)"
                                 r":\d+")


def commands(page):
    for block in re.findall(r"```sh\n(.*?)```", page.read_text(encoding="utf-8"), re.DOTALL):
        yield from block.splitlines()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_command_behind_a_proxy_binds_where_only_the_proxy_reaches(page):
    for command in commands(page):
        if "CHAT_TRUSTED_PROXIES=" in command:
            assert LOOPBACK_OR_PRIVATE.search(command), command


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_leads_to_a_file(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target and not target.startswith("mailto:"):
            assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_a_client_that_reaches_the_chat_directly_can_name_any_address(server, monkeypatch):
    """Why the commands above bind to 127.0.0.1 or a private address: with
    CHAT_TRUSTED_PROXIES set, X-Forwarded-For decides the address, and a direct client
    writes it itself."""
    monkeypatch.setattr(settings.of_app(CHAT_APP), "TRUSTED_PROXIES", 1)
    opened = []
    try:
        for n in range(limits.CONNECTIONS_PER_ADDRESS + 1):
            opened.append(simple_websocket.Client.connect(
                f"ws://{server}/ws", headers={"X-Forwarded-For": f"198.51.100.{n}"}))
        # Each is counted as the address it named, messages too (a KeyError, once).
        opened[-1].send(json.dumps({"name": "Eve", "message": "from nowhere"}))
        assert json.loads(opened[-1].receive(timeout=5)) == {"name": "Eve",
                                                             "message": "from nowhere"}
    finally:
        for ws in opened:
            ws.close()
    assert len(opened) == limits.CONNECTIONS_PER_ADDRESS + 1  # one address would get 429


def test_the_overload_bench_starts_the_server_as_the_deployment_docs_say():
    """Its memory bound holds with the environment docs/deploying.md gives the server."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("overload", ROOT / "bench" / "overload.py")
    overload = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(overload)
    deploying = (ROOT / "docs" / "deploying.md").read_text(encoding="utf-8")
    for name, value in overload.SERVER_ENVIRONMENT.items():
        assert f"{name}={value}" in deploying
