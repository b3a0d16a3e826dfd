"""The CLI reference of docs/cli.md, written from the parser itself (`python -m apps.cli.reference > docs/cli.md`);
a test keeps the file equal to it."""

from __future__ import annotations

import argparse

from apps.cli import build_parser

HEADER = """# Command line

`autoannotate` is installed as a console script (in `.venv/bin/`). Every verb takes `--json` (before or after the
verb) for scripts, exits 0 on success and 1 with one line on stderr on error (a mistyped option too), and its
`--help` ends with an example. `--task` always names a configured task; `--task-file` is a task file. Names that come
from data (files, URLs, concepts, reviewers) are printed as text: a control character, a bidirectional override or
a byte that is not UTF-8 shows as its escape (`\\x1b`, `\\u202e`, `\\xff`), so no name can steer the terminal.

This page is generated from the parser (`python -m apps.cli.reference > docs/cli.md`); a test keeps it equal.
"""


def option_line(action: argparse.Action) -> str:
    names = ", ".join(f"`{name}`" for name in action.option_strings) or f"`{action.dest}`"
    if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
        names += " (" + " \\| ".join(f"`{choice}`" for choice in action.choices) + ")"
    if action.required and action.option_strings:
        names += ", required"
    return f"- {names}: {(action.help or '').replace('|', '/')}".rstrip(": ")


def verb_section(words: tuple[str, ...], parser: argparse.ArgumentParser, help_text: str) -> list[str]:
    lines = [f"## autoannotate {' '.join(words)}", "", help_text[:1].upper() + help_text[1:] + ".", ""]
    shown = [a for a in parser._actions if a.help != argparse.SUPPRESS and a.dest not in ("help", "json")
             and not isinstance(a, argparse._SubParsersAction)]
    lines += [option_line(action) for action in shown]
    if parser.epilog:
        lines += ["", "```", parser.epilog.split("\n", 1)[1].strip(), "```"]
    return [*lines, ""]


def reference(parser: argparse.ArgumentParser | None = None) -> str:
    lines = [HEADER]

    def walk(current: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, child in action.choices.items():
                    lines.extend(verb_section((*words, name), child, helps.get(name) or ""))
                    walk(child, (*words, name))

    walk(parser or build_parser(), ())
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")
