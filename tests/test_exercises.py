"""Each workshop exercise's reference solution still applies to the project and passes
its own test and everyone else's. exercises/README.md says how to remake a patch."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent.parent  # the project
SOLUTIONS = sorted((HERE / "workshop" / "exercises").glob("*/solution.patch"))
PROJECT = ["app.py", "chat.html", "conftest.py", "redis_bridge.py", "test_app.py",
           "test_browser.py", "frames.py", "guards.py", "headers.py", "limits.py",
           "reader.py", "text_rules.py"]


def test_there_are_solutions():
    assert SOLUTIONS


@pytest.mark.slow
@pytest.mark.parametrize("patch", SOLUTIONS, ids=lambda p: p.parent.name)
def test_the_solution_applies_and_every_test_passes(patch, tmp_path):
    for name in PROJECT:
        shutil.copy(HERE / name, tmp_path / name)
    applied = subprocess.run(["git", "apply", "--verbose", str(patch)], cwd=tmp_path,
                             capture_output=True, text=True)
    assert applied.returncode == 0, f"{patch} no longer applies:\n{applied.stderr}"
    # The learner's suite, without the long audits: an exercise changes the chat, not them.
    env = {key: value for key, value in os.environ.items() if key != "FULL_TESTS"}
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "test_app.py", "test_browser.py"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-3000:]
