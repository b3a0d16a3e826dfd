"""Text on a terminal: what came from data (file names, concepts, reviewer names, URLs) is shown, never obeyed.

A file called `\\x1b]0;...\\x07.jpg` or `\\x1b[2J.jpg` printed as it is would retitle or clear the user's terminal; a
name with a right-to-left override would show its extension backwards. Every command's output passes
`terminal_safe`, once, where the CLI writes it.
"""

from __future__ import annotations

import re
from typing import Any, TextIO

# C0 controls but tab and newline, DEL and C1 controls (ESC and CSI start escape sequences), the bidirectional
# marks, embeddings, overrides and isolates, and the lone surrogates that stand for bytes of a name that is not UTF-8.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# In a file name, tab and newline too: a name is one line of every table, log and list that shows it.
UNSAFE_IN_NAMES = re.compile(UNSAFE.pattern.replace("\x00-\x08\x0b-\x1f", "\x00-\x1f"))


def escaped_character(character: str) -> str:
    """How one unsafe character is shown: `\\xNN` (a byte of a name that was not UTF-8 shows as that byte), else
    `\\uNNNN`."""
    code = ord(character)
    if 0xDC80 <= code <= 0xDCFF:  # Python's surrogateescape: the undecodable byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def name_refusal(path: str) -> str | None:
    """Why a file's name cannot be taken (None when it can): bytes that are not UTF-8 (no row, log or page could
    hold it as it is) or control characters (a name that would steer every terminal and log showing it)."""
    name = path.rsplit("/", 1)[-1]
    if not UNSAFE_IN_NAMES.search(name):
        return None
    what = "is not valid UTF-8" if re.search("[\udc80-\udcff]", name) else "holds control characters"
    return (f"The file name {name_safe(path)} {what}; rename the file (its bytes were not read) and it is taken "
            "by the next run.")


def name_safe(name: str) -> str:
    """A file name as one line of text: `terminal_safe`, tab and newline shown as their escapes too."""
    return UNSAFE_IN_NAMES.sub(lambda match: escaped_character(match.group()), name)


def terminal_safe(text: str) -> str:
    """`text` with every character that could steer a terminal shown as its escape."""
    return UNSAFE.sub(lambda match: escaped_character(match.group()), text)


class EscapingStream:
    """A text stream that writes `terminal_safe` text to `stream`; everything else is the stream's."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(terminal_safe(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
