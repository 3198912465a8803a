"""Catch up with the workshop: put a step's files into your folder.

    python ../chat-finished/workshop/catch_up.py 08

copies the checkpoint workshop/steps/08-rate-limit/ (app.py, chat.html, test_app.py, and
from step 17 the modules in safeguards/) into the current folder. Before it replaces a
file of yours that differs, it asks, and it keeps yours beside it: app.py.bak (then
app.py.bak1, ...). `--yes` replaces without asking, keeping yours the same way; `--into
FOLDER` copies somewhere else. A file that is some step's copy, untouched (a test_app.py
you copied, an app.py from an earlier catch-up), is replaced without asking and not kept:
the kit has it. Caches (__pycache__, .pytest_cache) are never copied. Standard library
only.
"""
import argparse
import filecmp
import pathlib
import shutil
import sys

STEPS = pathlib.Path(__file__).resolve().parent / "steps"
KIT = STEPS.parent.parent  # the finished chat, which the steps lead to


def main():
    args = parse_arguments()
    step = find_step(args.step)
    target = pathlib.Path(args.into).resolve()
    if target == KIT or STEPS in target.parents or target == STEPS:
        sys.exit(f"{target} is the kit itself: run catch_up.py in your own folder.")
    copied, kept, same, backups = [], [], [], []
    for name in files_of(step):
        mine = target / name
        yours = mine.exists() and not from_the_kit(mine, name)
        if mine.exists() and filecmp.cmp(step / name, mine, shallow=False):
            same.append(name)
        elif yours and not (args.yes or agrees(f"Replace your {name} with"
                                               f" step {step.name}'s? [y/N] ")):
            kept.append(name)
        else:
            if yours:
                backups.append(keep_a_copy(mine))
            mine.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(step / name, mine)
            copied.append(name)
    report(step, target, copied, kept, same, backups)


def parse_arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="The steps: " + ", ".join(p.name for p in steps()))
    parser.add_argument("step", help="the step's number, as in 08 or 8 (or its whole name)")
    parser.add_argument("--into", default=".", help="the folder to copy into (default: here)")
    parser.add_argument("--yes", action="store_true", help="replace files without asking")
    return parser.parse_args()


def steps():
    return sorted(p for p in STEPS.iterdir() if p.is_dir() and p.name[:2].isdigit())


def find_step(wanted):
    """The checkpoint folder a step number (08, 8) or name (08-rate-limit) means."""
    for step in steps():
        if wanted in (step.name, step.name[:2]) or (wanted.isdigit() and
                                                    int(wanted) == int(step.name[:2])):
            return step
    sys.exit(f"There is no step {wanted!r}. The steps: "
             + ", ".join(step.name for step in steps()))


CACHES = {"__pycache__", ".pytest_cache"}  # made by running a checkpoint: not the step's


def files_of(step):
    """What an attendee's folder holds at that step, by path inside the folder."""
    return sorted(path.relative_to(step).as_posix() for path in step.rglob("*")
                  if path.is_file() and not CACHES & set(path.relative_to(step).parts)
                  and path.suffix != ".pyc")


def from_the_kit(mine, name):
    """Is this file some step's copy of it, untouched? Then nothing of yours is lost."""
    return any(filecmp.cmp(step / name, mine, shallow=False)
               for step in steps() if (step / name).is_file())


def keep_a_copy(mine):
    """Copy a file about to be replaced to NAME.bak, or NAME.bak1, ... if that exists."""
    for n in range(1000):
        backup = mine.with_name(f"{mine.name}.bak{n or ''}")
        if not backup.exists():
            shutil.copyfile(mine, backup)
            return backup.name
    sys.exit(f"Too many copies of {mine.name} kept: remove some of {mine.name}.bak*.")


def agrees(question):
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:  # no one to ask (input from a pipe or nothing): keep theirs
        print()
        return False


def report(step, target, copied, kept, same, backups):
    print(f"Step {step.name} into {target}:")
    if backups:
        print(f"  yours kept as: {', '.join(backups)}")
    for verb, names in (("copied", copied), ("kept yours (not replaced)", kept),
                        ("already the same", same)):
        if names:
            print(f"  {verb}: {', '.join(names)}")
    if kept:
        print("Your kept files may not match the step's others: run pytest to see.")
    print("Restart flask run if it is not running with --debug, and reload the page.")


if __name__ == "__main__":
    main()
