"""Each workshop exercise's reference solution still applies to the project and passes
its own test and everyone else's. workshop/exercises/README.md says how to remake a patch."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent.parent  # the project
SOLUTIONS = sorted((HERE / "workshop" / "exercises").glob("*/solution.patch"))
# What a copy of the project needs to run the learner's tests: the chat, its safeguards/
# folder, and the tests, each at its own path (test_browser.py imports from test_app.py,
# which conftest.py's folder, the copy's top, makes importable as in the project).
PROJECT = ["app.py", "chat.html", "conftest.py", "test_app.py", "safeguards",
           "tests/test_browser.py"]
TESTS = ["test_app.py", "tests/test_browser.py"]


def test_there_are_solutions():
    assert SOLUTIONS


def test_the_copy_has_what_the_project_imports():
    """A module added to safeguards/ comes along; a test file named here exists."""
    for name in PROJECT + TESTS:
        assert (HERE / name).exists(), name
    assert set(TESTS) <= set(PROJECT)


def copy_project(folder):
    for name in PROJECT:
        source, target = HERE / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)


@pytest.mark.slow
@pytest.mark.parametrize("patch", SOLUTIONS, ids=lambda p: p.parent.name)
def test_the_solution_applies_and_every_test_passes(patch, tmp_path):
    copy_project(tmp_path)
    applied = subprocess.run(["git", "apply", "--verbose", str(patch)], cwd=tmp_path,
                             capture_output=True, text=True)
    assert applied.returncode == 0, f"{patch} no longer applies:\n{applied.stderr}"
    # The learner's suite, without the long audits: an exercise changes the chat, not them.
    env = {key: value for key, value in os.environ.items() if key != "FULL_TESTS"}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            *TESTS],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-3000:]
