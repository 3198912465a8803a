"""workshop/catch_up.py puts a step's files into an attendee's folder, and asks before it
replaces one of theirs, keeping a copy of any it replaces; caches are never copied."""
import filecmp
import pathlib
import shutil
import subprocess
import sys

HERE = pathlib.Path(__file__).parent.parent  # the project
CATCH_UP = HERE / "workshop" / "catch_up.py"
STEPS = HERE / "workshop" / "steps"


def catch_up(folder, *args, answers=""):
    return subprocess.run([sys.executable, str(CATCH_UP), *args], cwd=folder, input=answers,
                          capture_output=True, text=True, timeout=30)


def test_an_empty_folder_gets_the_whole_checkpoint(tmp_path):
    result = catch_up(tmp_path, "18")
    assert result.returncode == 0, result.stderr
    comparison = filecmp.dircmp(STEPS / "18-guards", tmp_path,
                                ignore=["__pycache__", ".pytest_cache"])
    assert not comparison.left_only and not comparison.diff_files
    assert not filecmp.dircmp(STEPS / "18-guards" / "safeguards", tmp_path / "safeguards",
                              ignore=["__pycache__"]).diff_files
    assert "copied: app.py, chat.html" in result.stdout


def test_a_file_of_yours_is_replaced_only_if_you_say_so(tmp_path):
    (tmp_path / "app.py").write_text("# mine\n")
    kept = catch_up(tmp_path, "08", answers="n\n")
    assert "Replace your app.py" in kept.stdout
    assert (tmp_path / "app.py").read_text() == "# mine\n"
    assert "kept yours (not replaced): app.py" in kept.stdout
    replaced = catch_up(tmp_path, "8", answers="y\n")
    assert replaced.returncode == 0, replaced.stderr
    assert filecmp.cmp(STEPS / "08-rate-limit" / "app.py", tmp_path / "app.py", shallow=False)
    assert (tmp_path / "app.py.bak").read_text() == "# mine\n"  # a half-edited file is kept
    assert "yours kept as: app.py.bak" in replaced.stdout


def test_each_replacement_keeps_a_copy_of_its_own(tmp_path):
    (tmp_path / "app.py").write_text("# first\n")
    catch_up(tmp_path, "05", "--yes")
    (tmp_path / "app.py").write_text("# second\n")
    catch_up(tmp_path, "06", "--yes")
    assert (tmp_path / "app.py.bak").read_text() == "# first\n"
    assert (tmp_path / "app.py.bak1").read_text() == "# second\n"


def test_a_steps_own_copy_is_replaced_without_asking_or_keeping(tmp_path):
    """What an earlier catch-up or the attendee copied from the kit is not theirs to lose:
    the next step replaces it, with no one to ask, and keeps no .bak of it."""
    catch_up(tmp_path, "05", "--yes")
    result = catch_up(tmp_path, "09")  # no answers: it must not need any
    assert result.returncode == 0, result.stderr
    assert filecmp.cmp(STEPS / "09-stuck" / "app.py", tmp_path / "app.py", shallow=False)
    assert filecmp.cmp(STEPS / "09-stuck" / "test_app.py", tmp_path / "test_app.py",
                       shallow=False)
    assert "Replace" not in result.stdout
    assert not list(tmp_path.glob("*.bak*"))


def test_caches_are_never_copied(tmp_path):
    """Running pytest in a checkpoint leaves caches there; they are not the step's."""
    kit = tmp_path / "kit"
    shutil.copytree(HERE / "workshop", kit / "workshop",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    step = kit / "workshop" / "steps" / "08-rate-limit"
    (step / ".pytest_cache" / "v" / "cache").mkdir(parents=True)
    (step / ".pytest_cache" / "v" / "cache" / "nodeids").write_text("[]")
    (step / "__pycache__").mkdir()
    (step / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    mine = tmp_path / "chat"
    mine.mkdir()
    result = subprocess.run([sys.executable, str(kit / "workshop" / "catch_up.py"), "08"],
                            cwd=mine, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["app.py", "chat.html", "test_app.py"]


def test_with_no_one_to_ask_your_files_are_kept(tmp_path):
    (tmp_path / "chat.html").write_text("<p>mine</p>\n")
    result = catch_up(tmp_path, "02-broadcast")  # stdin is empty: nobody answers
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "chat.html").read_text() == "<p>mine</p>\n"
    assert (tmp_path / "app.py").exists()


def test_an_unknown_step_is_named_with_the_steps_there_are(tmp_path):
    result = catch_up(tmp_path, "99")
    assert result.returncode != 0
    assert "There is no step '99'" in result.stderr and "08-rate-limit" in result.stderr
    assert not list(tmp_path.iterdir())


def test_the_kit_itself_is_never_overwritten():
    before = (HERE / "app.py").read_bytes()
    result = catch_up(HERE, "01", "--yes")
    assert result.returncode != 0 and "is the kit itself" in result.stderr
    assert (HERE / "app.py").read_bytes() == before
