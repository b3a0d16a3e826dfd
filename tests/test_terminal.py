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


def test_a_name_that_is_not_utf8_or_holds_control_characters_is_one_rejection_and_the_rest_is_ingested(
        tmp_path: Path) -> None:
    """Before, a name that is not UTF-8 failed every run ("surrogates not allowed") and nothing was ingested until
    it was removed; a name with control characters became an input as it was."""
    import os

    import duckdb

    from apps.demo_scenes import write_demo_images

    home, inbox = tmp_path / "home", tmp_path / "inbox"
    write_demo_images(inbox, 3, seed=77)
    scenes = sorted(inbox.iterdir())
    not_utf8 = os.fsencode(inbox) + b"/bad\xff\xfe.jpg"
    os.rename(scenes[0], not_utf8)
    os.rename(scenes[1], inbox / "ctl\x01name.jpg")
    autoannotate("run", "--inbox", str(inbox), home=home)
    with duckdb.connect(str(home / "autoannotate.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM inputs").fetchall() == [(1,)]
        rejected = conn.execute("SELECT uri, reason_code, reason FROM rejected_inputs ORDER BY uri").fetchall()
    shown = [f"{inbox}/bad\\xff\\xfe.jpg", f"{inbox}/ctl\\x01name.jpg"]
    assert rejected == [
        (shown[0], "bad_name", f"The file name {shown[0]} is not valid UTF-8; rename the file (its bytes were not "
                               "read) and it is taken by the next run."),
        (shown[1], "bad_name", f"The file name {shown[1]} holds control characters; rename the file (its bytes were "
                               "not read) and it is taken by the next run.")]
    again = autoannotate("run", "--inbox", str(inbox), home=home)
    assert "Nothing new in the inbox" in again.stdout
    os.rename(not_utf8, inbox / "renamed.jpg")  # as the sentence says
    autoannotate("run", "--inbox", str(inbox), home=home)
    with duckdb.connect(str(home / "autoannotate.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM inputs").fetchall() == [(2,)]
