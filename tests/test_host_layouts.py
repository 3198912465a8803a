"""The hardened chat added to a host's project exactly as the README's section "Add the
hardened chat to your own app" writes it, in both layouts: a module app (my-app/app.py,
the folder beside it) and a package app with a factory (my-project/myapp/, the folder
inside the package). Each is run as its owner would, with `flask run`, and chatted
through in Chromium; its copy of the chat's smoke tests (hardened/test_smoke.py) passes
there, beside the host's own tests. No wheel is needed for any of it; what a wheel needs,
the package data docs/mounting.md gives, is checked too.
"""
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).parent.parent  # the project
SECTION = (ROOT / "README.md").read_text(encoding="utf-8").split(
    "### Add the hardened chat to your own app")[1].split("\n## ")[0]
BLOCKS = re.findall(r"^```(\w+)\n(.*?)^```$", SECTION, re.MULTILINE | re.DOTALL)
PROJECTS = ("my-app", "my-project")  # the folders the README copies into
# The lines docs/mounting.md gives a package app's pyproject.toml, to take the page along.
PACKAGE_DATA = re.search(r"^```toml\n(.*?)^```$", (ROOT / "docs" / "mounting.md").read_text(
    encoding="utf-8"), re.MULTILINE | re.DOTALL)[1]
TIMEOUT = 60  # seconds a server may take to start, or a pytest run to finish
RUNNING_ON = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")
# A host's own tests, beside its app.py: a module named app, as the chat's steps have one.
HOSTS_TEST = """
import sys

import app


def test_the_hosts_app_serves_the_chat():
    assert app.app.test_client().get("/chat/").status_code == 200


def test_the_process_is_as_python_made_it():
    assert sys.getswitchinterval() == 0.005  # after the chat's smoke tests, too
"""


def layouts(folder):
    """The host projects as the README makes them, in folder: each python block is the
    file its first line names, and each sh block runs in this project."""
    for language, code in BLOCKS:
        if language == "python":
            path = folder / code.splitlines()[0].removeprefix("# ")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(code, encoding="utf-8")
    for language, code in BLOCKS:
        if language == "sh":
            for name in PROJECTS:
                code = code.replace(f" {name}/", f" {shlex.quote(str(folder / name))}/")
            subprocess.run(["bash", "-euc", code], cwd=ROOT, check=True, timeout=TIMEOUT)
    return folder / "my-app", folder / "my-project"


def clean_environment(**extra):
    """This environment, without the settings of the chat, of Flask or of Python's path."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CHAT_", "FLASK_")) and key not in ("REDIS_URL", "PYTHONPATH")}
    return {**env, **extra}


def flask_run(args, cwd, env):
    """Start `flask ... run --port 0`; (the process, the address it serves)."""
    log = cwd / "flask.log"
    with open(log, "w") as output:
        server = subprocess.Popen([sys.executable, "-m", "flask", *args, "run", "--port", "0"],
                                  cwd=cwd, env=env, stdout=output, stderr=output)
    deadline = time.monotonic() + TIMEOUT
    while not RUNNING_ON.search(log.read_text()):  # Flask says where it runs
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail("flask run did not start:\n" + log.read_text())
        time.sleep(0.05)
    return server, RUNNING_ON.search(log.read_text())[1]


def pytest_in(folder, *args):
    """Run pytest in a host's folder, as its owner types it; what it printed."""
    result = subprocess.run([str(pathlib.Path(sys.executable).parent / "pytest"), "-q",
                             "-p", "no:cacheprovider", *args], cwd=folder,
                            env=clean_environment(), capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result.stdout


def test_the_readme_shows_both_layouts_and_mounting_md_a_wheels_package_data():
    assert [language for language, _ in BLOCKS] == ["sh", "python", "sh", "python"]
    assert '"myapp.hardened" = ["chat.html"]' in PACKAGE_DATA
    assert 'app.register_blueprint(hardened.bp, url_prefix="/chat")' in BLOCKS[1][1]
    assert "from . import hardened" in BLOCKS[3][1] and "def create_app" in BLOCKS[3][1]


@pytest.mark.slow  # about 6 s: two servers, Chromium with two pages on each
def test_both_layouts_run_as_the_readme_says_and_chat_in_a_browser(tmp_path):
    browser_tests = pytest.importorskip("test_browser")  # skips, or fails in CI, without it
    module_app, package_app = layouts(tmp_path)
    elsewhere = tmp_path / "elsewhere"  # the package is found on the path, not in cwd
    elsewhere.mkdir()
    servers = [flask_run([], module_app, clean_environment()),
               flask_run(["--app", "myapp"], elsewhere,
                         clean_environment(PYTHONPATH=str(package_app)))]
    try:
        with browser_tests.sync_playwright() as playwright:
            browser = browser_tests.launch_chromium(playwright)
            for _, address in servers:
                ada, bob = (browser_tests.join_chat(browser.new_page(), f"{address}/chat/", name)
                            for name in ("Ada", "Bob"))
                browser_tests.say(ada, f"hello at {address}")
                for page in (ada, bob):
                    browser_tests.expect_messages(page, [("Ada", f"hello at {address}")])
            browser.close()
    finally:
        for server, _ in servers:
            server.kill()
            server.wait()


def test_the_chats_smoke_tests_pass_in_a_hosts_project_beside_its_own(tmp_path):
    """Collected with a host's app.py and test_app.py, whose names the chat's steps use
    too; and then on their own, as the README says, in the package layout."""
    module_app, package_app = layouts(tmp_path)
    (module_app / "test_app.py").write_text(HOSTS_TEST, encoding="utf-8")
    said = pytest_in(module_app)
    assert re.search(r"\b7 passed\b", said), said  # the chat's five and the host's two
    said = pytest_in(package_app, "myapp/hardened")
    assert re.search(r"\b5 passed\b", said), said


def test_a_wheel_of_a_package_app_takes_the_page_with_the_documented_package_data(tmp_path):
    """What setuptools puts in a wheel, it first builds in build/lib: the page is there
    with the lines docs/mounting.md gives, and only with them."""
    pytest.importorskip("setuptools")
    _, package_app = layouts(tmp_path)
    project = '[project]\nname = "myapp"\nversion = "1"\n\n[tool.setuptools]\npackages = [' \
        '"myapp", "myapp.hardened", "myapp.hardened.safeguards"]\n\n'
    built = {}
    for package_data in ("", PACKAGE_DATA):
        (package_app / "pyproject.toml").write_text(project + package_data)
        subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "-q",
                        "build_py", "--build-lib", "built"], cwd=package_app, check=True,
                       capture_output=True, timeout=TIMEOUT)
        built[bool(package_data)] = (package_app / "built/myapp/hardened/chat.html").exists()
        shutil.rmtree(package_app / "built")
    assert built == {False: False, True: True}
