"""workshop/catch_up.py puts a step's files into an attendee's folder, and asks before it
replaces one of theirs."""
import filecmp
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).parent.parent  # the project
CATCH_UP = HERE / "workshop" / "catch_up.py"
STEPS = HERE / "workshop" / "steps"


def catch_up(folder, *args, answers=""):
    return subprocess.run([sys.executable, str(CATCH_UP), *args], cwd=folder, input=answers,
                          capture_output=True, text=True, timeout=30)


def test_an_empty_folder_gets_the_whole_checkpoint(tmp_path):
    result = catch_up(tmp_path, "16")
    assert result.returncode == 0, result.stderr
    comparison = filecmp.dircmp(STEPS / "16-guards", tmp_path, ignore=["__pycache__"])
    assert not comparison.left_only and not comparison.diff_files
    assert not filecmp.dircmp(STEPS / "16-guards" / "safeguards", tmp_path / "safeguards",
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


def test_with_no_one_to_ask_your_files_are_kept(tmp_path):
    (tmp_path / "chat.html").write_text("<p>mine</p>\n")
    result = catch_up(tmp_path, "01-echo")  # stdin is empty: nobody answers
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
