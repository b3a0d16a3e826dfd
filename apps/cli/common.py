"""What every command shares: the one-line error, the parser that fails like every command, --json, tables, and
how a verb is declared (its help and its example beside its options and handler)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from core.settings import Settings
from core.task_config import LabelingTask

Handler = Callable[[argparse.Namespace, Settings], None]


class UserError(Exception):
    """An error whose message is meant for the user as it is."""


class Parser(argparse.ArgumentParser):
    """argparse that fails like every other command: one line on stderr and exit 1 (not usage and 2)."""

    def error(self, message: str) -> None:
        self.exit(1, f"autoannotate: {message} (see `{self.prog} --help`).\n")


# A verb's own --json. SUPPRESS: a verb's default must not undo `autoannotate --json VERB`.
JSON_OPTION = argparse.ArgumentParser(add_help=False)
JSON_OPTION.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print machine-readable JSON")


def verb(sub: argparse._SubParsersAction, name: str, help: str, example: str, handler: Handler | None = None,
         json_option: bool = True) -> argparse.ArgumentParser:
    """A verb (or a group of verbs) of `sub`: its --help says `help` and ends with `example`; `handler` runs it."""
    parser = sub.add_parser(name, parents=[JSON_OPTION] if json_option else [], help=help,
                            epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)
    if handler is not None:
        parser.set_defaults(handler=handler)
    return parser


def verbs(group: argparse.ArgumentParser) -> argparse._SubParsersAction:
    """The sub-verbs of a group such as `review` (one of them is required)."""
    return group.add_subparsers(dest="action", required=True)


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain aligned text table."""
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def emit(args: argparse.Namespace, payload: dict, render: Callable[[dict], None]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))
    else:
        render(payload)


def configured_task(settings: Settings, name: str | None) -> tuple[dict, LabelingTask]:
    """The resources and the configured task called `name` (the first one without a name); an unknown name is
    `task_named`'s sentence (a ValueError, which `main` prints)."""
    from core.review_rules import task_named
    from resources import build_resources

    resources = build_resources(settings)
    return resources, task_named(resources["tasks"].load(), name)


def deprecated_task_file(name: str | None) -> str | None:
    """`name` when `--task` was given a task file (it ends in .yaml or .yml, or holds a `/`: a task name does
    neither): the spelling of earlier releases, which still works with a line on stderr; otherwise None."""
    if name is None or not (name.endswith((".yaml", ".yml")) or "/" in name):
        return None
    print(f"autoannotate: --task {name} names a file: this spelling is deprecated and goes in the next release; "
          f"use --task-file {name} (--task takes a task name)", file=sys.stderr)
    return name
