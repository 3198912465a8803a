"""The tutorial may never drift from the code it teaches.

It is in parts: TUTORIAL.md (Part 1, and the map of all parts), then docs/tutorial/part2.md
and part3.md. Read in that order, every ```python, ```html and ```javascript block must
appear verbatim, and in the same order, in the file it comes from: app.py for python,
chat.html for html and javascript, unless the info string names another file
(```python test_app.py). Part 1 builds the card's chat, the top-level app.py and chat.html;
Parts 2 and 3 build the hardened chat, so there app.py means hardened/chat.py, chat.html
hardened/chat.html and test_app.py tests/test_hardened.py. A file named with a path
(```python workshop/steps/05-writer/app.py) is that file. Blocks whose info string has a
second word that is not a file name (```python naive) show code that is deliberately not
in the project, and are skipped.
"""
import os
import pathlib
import re

import pytest

HERE = pathlib.Path(__file__).parent.parent  # the project
DEFAULT_FILE = {"python": "app.py", "html": "chat.html", "javascript": "chat.html"}
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# The parts in reading order: part2.md, part3.md, ... sort as they are read.
PARTS = [HERE / "TUTORIAL.md", *sorted((HERE / "docs" / "tutorial").glob("part*.md"))]


# What a bare file name means in Parts 2 and 3: the hardened chat's file.
HARDENED_FILES = {"app.py": "hardened/chat.py", "chat.html": "hardened/chat.html",
                  "test_app.py": "tests/test_hardened.py"}


def in_part(part, name):
    """The project's file that a block of this part names (or names by default)."""
    if part != PARTS[0] and "/" not in name:
        return HARDENED_FILES.get(name, name)
    return name


def synced_blocks():
    """(file name, code) for every block that must match a file, in tutorial order."""
    for part in PARTS:
        for match in BLOCK.finditer(part.read_text(encoding="utf-8")):
            language, words, code = match[1], match[2].split(), match[3]
            if language not in DEFAULT_FILE:
                continue
            if not words:
                yield in_part(part, DEFAULT_FILE[language]), code
            elif "." in words[0]:  # a file name
                yield in_part(part, words[0]), code


def test_the_tutorial_has_code_to_check():
    files = {name for name, _ in synced_blocks()}
    assert {"app.py", "chat.html", "test_app.py"} <= files


@pytest.mark.parametrize("name", sorted({name for name, _ in synced_blocks()}))
def test_every_block_appears_verbatim_and_in_order(name):
    source = (HERE / name).read_text(encoding="utf-8")
    position = 0
    for file_name, code in synced_blocks():
        if file_name != name:
            continue
        found = source.find(code, position)
        assert found >= 0, f"not in {name} (or out of order):\n{code}"
        position = found + len(code)


def test_the_tutorial_is_in_three_parts():
    assert [part.name for part in PARTS] == ["TUTORIAL.md", "part2.md", "part3.md"]


@pytest.mark.parametrize("part", PARTS, ids=lambda part: part.name)
def test_each_part_opens_with_a_map_and_ends_with_what_was_learned(part):
    text = part.read_text(encoding="utf-8")
    opening = text.split("\n## ", 1)[0]  # before the first section
    for other in PARTS:
        if other != part:
            link = os.path.relpath(other, part.parent).replace(os.sep, "/")
            assert f"]({link})" in opening, f"{part.name}'s map lacks {link}"
    sections = re.findall(r"^## (.*)$", text, re.MULTILINE)
    assert sections[-1].startswith("What you learned"), sections[-1]
