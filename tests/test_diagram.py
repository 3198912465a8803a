"""The threads diagrams show only names that exist where they are shown (issue 30): every
name of code that docs/diagram.py draws is in the file its drawing's title names, or in
that file's page for what the browser box says.

They draw each diagram as the script does, without writing it, and read the texts drawn.
They need matplotlib (bench/requirements-bench.txt has it), and are skipped without it.
"""
import ast
import importlib.util
import pathlib
import re

import pytest

pytest.importorskip("matplotlib")
from matplotlib.text import Text  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ["app.py", "workshop/steps/05-writer/app.py", "hardened/chat.py"]


def load_diagram():
    spec = importlib.util.spec_from_file_location("diagram", ROOT / "docs" / "diagram.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


diagram = load_diagram()


def identifiers(path):
    """Every name in a Python file: variables, attributes, functions, classes, arguments,
    keywords and imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg:
            names.add(node.arg)
        elif isinstance(node, ast.alias):
            names.update((node.asname or node.name).split("."))
            names.update(node.name.split("."))
    return names


def top_level_names(path):
    """What a chat's module defines: its functions, classes and globals."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


# A bare word is code if any of the chats defines it (clients, history, to_send...): a
# drawing of step 05 must not say "history", which step 05 does not have yet.
CHATS_NAMES = set().union(*(top_level_names(ROOT / source) for source in SOURCES))
NOT_CODE = {"TCP"}  # the socket's box: the protocol, not a name


def code_names(text):
    """The names of code in a drawn text: calls, dotted and snake_case names, CONSTANTS,
    and any bare word one of the chats defines."""
    found = set()
    text = text.replace("_\n", "_")  # a name broken over two lines: "queue_to_\nsend()"
    text = re.sub(r"[\w./-]*\.py\b", " ", text)  # a file's name: the title's
    for match in re.finditer(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(\()?", text):
        word, call = match.group(0).rstrip("("), match.group(1)
        parts = word.split(".")
        if (call or len(parts) > 1 or "_" in word or word in CHATS_NAMES
                or re.fullmatch(r"[A-Z][A-Z0-9_]{2,}", word)):
            found.update(part for part in parts if part not in NOT_CODE)
    return found


# What each drawing must show, at the least: its chat's connection and what its lock guards.
# The card's chats guard a set with clients_lock; the hardened one, an app's Room with
# room.lock, whose sender takes each address's frames in turn.
CARD_NAMES = {"chat", "clients", "clients_lock", "write_frames"}
REQUIRED = {
    "threads.png": CARD_NAMES,
    "threads-card.png": CARD_NAMES,
    "threads-hardened.png": {"chat", "clients", "write_frames", "room_of", "room", "lock",
                             "to_send", "take_in_turn", "send_to_room"},
}


def drawn_texts(name):
    fig = diagram.figure(name)
    try:
        return [text.get_text() for text in fig.findobj(Text) if text.get_text()]
    finally:
        diagram.plt.close(fig)


@pytest.mark.parametrize("name", sorted(diagram.DRAWINGS))
def test_every_name_drawn_is_in_the_file_the_drawing_shows(name):
    source = ROOT / diagram.DRAWINGS[name].source
    page = (source.parent / "chat.html").read_text(encoding="utf-8")
    known = identifiers(source) | set(re.findall(r"[A-Za-z_]\w*", page))
    texts = drawn_texts(name)
    title = next(text for text in texts if text.startswith("How "))
    folder = source.parent.relative_to(ROOT).as_posix()
    assert source.name in title and (folder == "." or folder in title), title
    drawn = set().union(*(code_names(text) for text in texts))
    assert name in REQUIRED, f"say in REQUIRED which names {name} must show"
    assert REQUIRED[name] <= drawn, f"{name} lacks {sorted(REQUIRED[name] - drawn)}"
    missing = sorted(drawn - known)
    assert not missing, f"{name} draws names that {source.relative_to(ROOT)} lacks: {missing}"


def test_the_check_catches_a_name_from_another_step():
    """What the rehearsal found: the hardened chat's names in step 05's diagram."""
    step_05 = identifiers(ROOT / "workshop/steps/05-writer/app.py")
    drawn = code_names("to_send; send_to_room(), queue_to_send(); Outbox(list); history")
    assert drawn - step_05 == {"to_send", "send_to_room", "queue_to_send", "Outbox", "history"}


def test_the_check_catches_a_name_the_hardened_chat_dropped():
    """What the room per app left behind: clients_lock, in the hardened chat's diagram."""
    hardened = identifiers(ROOT / "hardened/chat.py")
    drawn = code_names("guarded by clients_lock\n(one threading.Lock); under room.lock")
    assert drawn - hardened == {"clients_lock"}


@pytest.mark.parametrize("name", sorted(diagram.DRAWINGS))
def test_each_drawing_is_in_docs(name):
    assert (ROOT / "docs" / name).stat().st_size > 0
