"""Names from data reach the terminal as text: no control sequence a file name carries is obeyed."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import autoannotate

from core.terminal import terminal_safe


@pytest.mark.parametrize(("text", "shown"), [
    ("scene_0001.jpg", "scene_0001.jpg"),
    ("caf\u00e9 \u732b.jpg", "caf\u00e9 \u732b.jpg"),  # letters of any script stay as they are
    ("line\tone\nline two", "line\tone\nline two"),
    ("\x1b[2Jclear.jpg", "\\x1b[2Jclear.jpg"),
    ("\x1b]0;pwned\x07.jpg", "\\x1b]0;pwned\\x07.jpg"),
    ("back\rspace\x08\x7f.jpg", "back\\x0dspace\\x08\\x7f.jpg"),
    ("csi\x9b31m.jpg", "csi\\x9b31m.jpg"),
    ("photo\u202egpj.exe", "photo\\u202egpj.exe"),  # shows as photoexe.jpg unescaped
    ("bad\udcff\udcfe.jpg", "bad\\xff\\xfe.jpg"),  # a name that is not UTF-8, as os.listdir gives it
])
def test_terminal_safe_escapes_exactly_what_could_steer_a_terminal(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown


def test_a_run_prints_hostile_file_names_escaped(tmp_path: Path) -> None:
    """Before, `run` printed the rejected names as they were: the terminal was retitled and cleared."""
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    inbox.mkdir()
    for name in ("\x1b]0;pwned\x07.jpg", "\x1b[2J.jpg"):
        (inbox / name).write_bytes(b"not an image")
    result = autoannotate("run", "--inbox", str(inbox), home=home)
    printed = result.stdout + result.stderr
    assert "\x1b" not in printed and "\x07" not in printed
    assert "\\x1b]0;pwned\\x07.jpg" in printed and "\\x1b[2J.jpg" in printed
