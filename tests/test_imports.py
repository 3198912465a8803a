"""Importing a test module changes nothing in the process: a host that runs the chat's tests
beside its own (docs/mounting.md) keeps its switch interval and its limit on open files.
What a test needs of the process, it sets when it runs (chat_helpers' server fixture)."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).parent.parent  # the project
MODULES = sorted([*ROOT.glob("tests/test_*.py"), ROOT / "test_app.py",
                  ROOT / "hardened" / "test_smoke.py"])
IMPORT_ALL = """
import importlib, resource, sys
before = sys.getswitchinterval(), resource.getrlimit(resource.RLIMIT_NOFILE)
changed = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException:  # pytest.skip() at import: a module that needs what is missing
        pass
    now = sys.getswitchinterval(), resource.getrlimit(resource.RLIMIT_NOFILE)
    if now != before:
        changed.append(name)
        before = now
print(changed)
"""


def module_name(path):
    return "hardened.test_smoke" if path.parent.name == "hardened" else path.stem


def test_importing_a_test_module_changes_nothing_in_the_process():
    names = [module_name(path) for path in MODULES]
    # In a process of its own, with the paths pytest gives the project's tests.
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL, *names], cwd=ROOT,
                            env={"PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "PATH": ""},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "[]", f"these changed the process: {result.stdout}"
