"""The teacher's guide and the cheat sheet keep their promises: their links lead
somewhere, the plan fills 90 minutes, the commands they name exist, and the cheat sheet
lists exactly break_it.py's demonstrations, each fixed by the step the checkpoints say."""
import ast
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parent.parent  # the project
WORKSHOP = ROOT / "workshop"
GUIDE = WORKSHOP / "GUIDE.md"
CHEATSHEET = WORKSHOP / "CHEATSHEET.md"
WORKSHOP_MINUTES = 90
HELP_TIMEOUT = 30  # seconds for `break_it.py --help`: it only parses arguments


def relative_links(page):
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
        if "://" not in target and not target.startswith("mailto:"):
            yield target


def table_rows(text, header):
    """The rows of the Markdown table whose header row starts with `header`, as cells."""
    lines = text.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:  # past the header and the --- row
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def demonstrations_in_help():
    result = subprocess.run([sys.executable, str(WORKSHOP / "break_it.py"), "--help"],
                            capture_output=True, text=True, timeout=HELP_TIMEOUT)
    assert result.returncode == 0, result.stderr
    listed = result.stdout.split("demonstrations:", 1)[1]
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def from_test_steps(name):
    """A constant of tests/test_steps.py, read, so that this file does not import that one."""
    tree = ast.parse((ROOT / "tests" / "test_steps.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                getattr(target, "id", None) == name for target in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"tests/test_steps.py no longer defines {name}")


def fixed_by():
    """FIXED_BY: the step each demonstration holds from, as the checkpoints' own tests
    check it."""
    return from_test_steps("FIXED_BY")


@pytest.mark.parametrize("page", [GUIDE, CHEATSHEET], ids=lambda page: page.name)
def test_every_relative_link_leads_to_a_file(page):
    for target in relative_links(page):
        assert (page.parent / target).exists(), f"{page.name}: {target}"


@pytest.mark.parametrize("page", [GUIDE, CHEATSHEET], ids=lambda page: page.name)
def test_the_diagram_exists_and_is_linked(page):
    assert (ROOT / "docs" / "threads.png").stat().st_size > 0
    assert "../docs/threads.png" in set(relative_links(page))


def test_the_readme_points_teachers_to_the_guide():
    assert "workshop/GUIDE.md" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_plan_fills_the_workshop_and_its_start_times_add_up():
    rows = table_rows(GUIDE.read_text(encoding="utf-8"), "| start | min |")
    elapsed = 0
    for start, minutes, *_ in rows:
        hours, mins = map(int, start.split(":"))
        assert hours * 60 + mins == elapsed, f"{start} should be minute {elapsed}"
        elapsed += int(minutes)
    assert elapsed == WORKSHOP_MINUTES


def test_the_planned_timings_fill_the_workshop():
    rows = table_rows(GUIDE.read_text(encoding="utf-8"), "| part | planned min |")
    assert sum(int(row[1]) for row in rows) == WORKSHOP_MINUTES


@pytest.mark.parametrize("script", ["check_setup.py", "break_it.py", "catch_up.py"])
def test_the_scripts_the_guide_names_exist(script):
    for page in (GUIDE, CHEATSHEET):
        assert f"workshop/{script}" in page.read_text(encoding="utf-8") or \
            f"python {script}" in page.read_text(encoding="utf-8"), (page.name, script)
    if script == "catch_up.py" and not (WORKSHOP / script).exists():
        pytest.skip("workshop/catch_up.py is not written yet (another helper's file)")
    assert (WORKSHOP / script).exists()


def test_the_checkpoints_the_guide_runs_exist():
    text = GUIDE.read_text(encoding="utf-8") + CHEATSHEET.read_text(encoding="utf-8")
    named = set(re.findall(r"steps/(\d\d-[a-z-]+)/app\b", text))
    named |= set(re.findall(r"`(\d\d-[a-z-]+)`", text))
    assert named, "the guide runs no checkpoint"
    for step in named:
        assert (WORKSHOP / "steps" / step / "app.py").exists(), step


def test_the_cheat_sheet_lists_exactly_break_its_demonstrations():
    rows = table_rows(CHEATSHEET.read_text(encoding="utf-8"), "| demo |")
    listed = [row[0].strip("`") for row in rows]  # in the order the steps fix them
    assert sorted(listed) == sorted(demonstrations_in_help())


def test_each_demonstration_breaks_and_holds_where_the_checkpoints_say():
    rows = table_rows(CHEATSHEET.read_text(encoding="utf-8"), "| demo |")
    steps = sorted(path.name for path in (WORKSHOP / "steps").iterdir() if path.is_dir())
    for demo, broke_at, held_from, *_ in rows:
        if demo.strip("`") in from_test_steps("HOLDS_THROUGHOUT"):  # it never breaks
            assert broke_at == "never", (demo, broke_at)
            continue
        fix = fixed_by()[demo.strip("`")]
        assert fix.startswith(held_from + "-"), (demo, held_from, fix)
        assert steps[steps.index(fix) - 1].startswith(broke_at + "-"), (demo, broke_at)
