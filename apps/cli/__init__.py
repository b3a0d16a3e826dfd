"""`autoannotate`: the things people do by hand, each with --json for scripts.

Every command exits 0 on success and non-zero with one line on stderr on error.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from apps.cli import datasets, inputs, integrity, models, pipeline, quality, review
from apps.cli.common import Parser, UserError
from core.settings import Settings
from core.terminal import EscapingStream

# One module per group of verbs, each declaring its verbs' options beside their handlers and renderers.
COMMAND_GROUPS = (pipeline, quality, review, datasets, inputs, models, integrity)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="autoannotate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON (before or after the verb)")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; what it prints reaches the terminal through `terminal_safe` (names come from data)."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = EscapingStream(sys.stdout), EscapingStream(sys.stderr)  # type: ignore[assignment]
    try:
        return run_command(argv)
    finally:
        if isinstance(sys.stdout, EscapingStream):  # a closed pipe swaps in devnull, which stays
            sys.stdout = streams[0]
        sys.stderr = streams[1]


def run_command(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        settings.prepare_home()
        args.handler(args, settings)
    except BrokenPipeError:
        # The reader went away (`autoannotate review list | head`): stop quietly, as a tool killed by SIGPIPE does.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stays open until the process exits
        return 128 + signal.SIGPIPE
    except (UserError, OSError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"autoannotate: {message}", file=sys.stderr)
        return 1
    except RuntimeError as error:  # DatabaseLockedError and failed Dagster runs
        print(f"autoannotate: {error}", file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    """Console-script entry: exit without interpreter teardown, where DuckDB's bindings print
    reference-leak noise (nanobind) after the command has already finished."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
