"""TUTORIAL.md may never drift from the code it teaches.

Every ```python, ```html and ```javascript block must appear verbatim, and in the
same order, in the file it comes from: app.py for python, chat.html for html and
javascript, unless the info string names another file (```python test_app.py).
Blocks whose info string has a second word that is not a file name (```python naive)
show code that is deliberately not in the project, and are skipped.
"""
import pathlib
import re

import pytest

HERE = pathlib.Path(__file__).parent.parent  # the project
DEFAULT_FILE = {"python": "app.py", "html": "chat.html", "javascript": "chat.html"}
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def synced_blocks():
    """(file name, code) for every block that must match a file, in tutorial order."""
    text = (HERE / "TUTORIAL.md").read_text(encoding="utf-8")
    for match in BLOCK.finditer(text):
        language, words, code = match[1], match[2].split(), match[3]
        if language not in DEFAULT_FILE:
            continue
        if not words:
            yield DEFAULT_FILE[language], code
        elif "." in words[0]:  # a file name
            yield words[0], code


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
