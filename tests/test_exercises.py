"""The workshop's exercises: each is offered at a step, its hint names only what exists
there (or what its solution adds), and its solution applies to that step's checkpoint and
passes the step's tests and its own. workshop/exercises/README.md says how to remake a
patch."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from side_runs import started

HERE = pathlib.Path(__file__).parent.parent  # the project
EXERCISES = sorted(p for p in (HERE / "workshop" / "exercises").iterdir() if p.is_dir())
STEPS = HERE / "workshop" / "steps"
EXERCISE_COUNT = 6  # what the workshop's schedule and the tutorial offer
# From this step on, a close the chat sends reaches the browser clean (`finish`). Before
# it, Werkzeug's "HTTP/1.1 200 OK" follows the close frame on the wire, and a solution
# that refuses with a close (05-rooms) shows the browser garbage instead of its reason.
CLEAN_CLOSE_STEP = "15-clean-close"
# The files of a step a hint may point into.
STEP_FILES = ("app.py", "chat.html", "test_app.py")
# Seconds one exercise's tests may take in their own process: a few seconds each, and a
# browser that starts slowly on a loaded CI machine.
RUN_TIMEOUT = 300


def step_of(exercise):
    """The step named in the README's "**Step:** `NN-name`" line."""
    found = re.search(r"^\*\*Step:\*\* `([^`]+)`", (exercise / "README.md").read_text(), re.M)
    assert found, f"{exercise.name}/README.md names no step"
    return found.group(1)


def hint_of(exercise):
    """The README's paragraph that starts with **Hint.**"""
    found = re.search(r"^\*\*Hint\.\*\*(.*?)(?=\n\n)", (exercise / "README.md").read_text(),
                      re.M | re.S)
    assert found, f"{exercise.name}/README.md has no hint"
    return found.group(1)


def names_in(hint):
    """Every name in the hint's code: `deliver`, `clients.values()`, `len(clients)`'s `len`,
    `history.append`'s `history` and `append`; not what is in quotes or brackets."""
    names = set()
    for code in re.findall(r"`([^`]+)`", hint):
        callee = re.match(r"([A-Za-z_][\w.]*)(\(.*\))?$", code.strip())
        if callee:
            names.update(callee.group(1).split("."))
    return names


def added_lines(patch):
    return "\n".join(line for line in patch.read_text().splitlines()
                     if line.startswith("+") and not line.startswith("+++"))


def copy_step(step, folder):
    shutil.copytree(STEPS / step, folder, ignore=shutil.ignore_patterns("__pycache__"))


def git_apply(folder, patch, *options):
    # So that git, in a folder below a repository, does not apply to that repository's
    # paths instead; an attendee's folder is usually no repository either.
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(folder.parent)}
    return subprocess.run(["git", "apply", "--verbose", *options, str(patch)], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=60)


def run_tests(folder, *tests):
    """pytest in its own process, in that folder, as an attendee runs it. REQUIRE_BROWSER
    passes through: in CI a browser test then fails rather than skips."""
    return subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider",
                           *tests], cwd=folder, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def test_there_are_six_exercises():
    assert len(EXERCISES) == EXERCISE_COUNT, [p.name for p in EXERCISES]
    for exercise in EXERCISES:
        assert (exercise / "README.md").exists() and (exercise / "solution.patch").exists()


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda p: p.name)
def test_each_names_a_step_that_exists(exercise):
    assert (STEPS / step_of(exercise) / "app.py").exists(), step_of(exercise)


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda p: p.name)
def test_each_sits_where_a_close_reaches_the_browser_clean(exercise):
    assert step_of(exercise) >= CLEAN_CLOSE_STEP, step_of(exercise)  # "NN-": by number


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda p: p.name)
def test_each_solution_applies_to_its_step(exercise, tmp_path):
    copy_step(step_of(exercise), tmp_path / "step")
    applied = git_apply(tmp_path / "step", exercise / "solution.patch", "--check")
    assert applied.returncode == 0, applied.stderr
    assert "test_exercise.py" in applied.stderr  # it brings a test of its own


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda p: p.name)
def test_each_hint_names_only_what_exists_at_its_step(exercise):
    """A hint may point to what the step's files hold, and name what the solution adds;
    not something a later step brings (`frames.text_frame`, `queue_frame`, ...)."""
    known = " ".join(STEP_FILES) + "\n" + added_lines(exercise / "solution.patch")
    for name in STEP_FILES:
        known += "\n" + (STEPS / step_of(exercise) / name).read_text()
    names = names_in(hint_of(exercise))
    assert names  # the hint's code was found
    unknown = sorted(n for n in names if not re.search(rf"\b{re.escape(n)}\b", known))
    assert not unknown, f"not at step {step_of(exercise)}: {unknown}"


def test_a_later_steps_name_is_caught():
    """The check above can fail: `text_frame` exists from step 17 on (Part 2), not at
    step 15; `showMessage` from step 13 on, not at step 07."""
    def step_text(step):
        return "\n".join((STEPS / step / name).read_text() for name in STEP_FILES)
    names = names_in("send `frames.text_frame(json.dumps(...))`; in `showMessage`")
    assert {"frames", "text_frame", "showMessage"} <= names
    assert not re.search(r"\btext_frame\b", step_text(CLEAN_CLOSE_STEP))
    assert not re.search(r"\bshowMessage\b", step_text("07-validate"))


def solution_run(exercise, folder):
    """The step with the solution applied, and its tests run: (git apply, pytest)."""
    copy_step(step_of(exercise), folder)
    applied = git_apply(folder, exercise / "solution.patch")
    return applied, run_tests(folder) if applied.returncode == 0 else None


def bare_step_run(exercise, folder):
    """The bare step with the solution's test alone, run: (git apply, pytest)."""
    copy_step(step_of(exercise), folder)
    applied = git_apply(folder, exercise / "solution.patch", "--include=test_exercise.py")
    assert (folder / "app.py").read_text() == (STEPS / step_of(exercise) / "app.py").read_text()
    # -x: the first failure is proof enough, without sitting out the others' timeouts.
    return applied, run_tests(folder, "-x", "test_exercise.py") if applied.returncode == 0 else None


@pytest.fixture
def run_of(request, tmp_path_factory):
    """The run that this test checks, started together with its siblings' (side_runs.py)."""
    def of(exercise, run):
        def start(value):
            return run(value, tmp_path_factory.mktemp(value.name) / step_of(value))
        return started(request, request.node.originalname, "exercise", start)[exercise].result()
    return of


@pytest.mark.slow
@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda p: p.name)
def test_the_solution_passes_its_steps_tests_and_its_own(exercise, run_of):
    applied, tests = run_of(exercise, solution_run)
    assert applied.returncode == 0, f"it no longer applies:\n{applied.stderr}"
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "test_exercise.py" in tests.stdout  # its own test ran (or, without a browser, skipped)


@pytest.mark.slow
@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda p: p.name)
def test_its_own_test_fails_on_the_bare_step(exercise, run_of):
    """The solution's test checks the exercise: without the solution, it fails. This is
    also how an attendee takes the test alone, to try it on their own work."""
    applied, tests = run_of(exercise, bare_step_run)
    assert applied.returncode == 0, applied.stderr
    if tests.returncode == 0 and " SKIPPED" in tests.stdout:
        pytest.skip("its test needs a browser: see the exercise's README")
    assert tests.returncode == 1, tests.stdout[-3000:]  # 1: some tests failed
