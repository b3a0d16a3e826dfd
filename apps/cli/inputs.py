"""Inputs from the shell: `input delete`."""

from __future__ import annotations

import argparse
import getpass

from apps.cli.common import emit, verb, verbs
from core.settings import Settings


def command_input_delete(args: argparse.Namespace, settings: Settings) -> None:
    from resources import build_resources
    from services.inputs import delete_inputs

    resources = build_resources(settings)
    result = delete_inputs(resources["store"], resources["images"], args.inputs, by=args.by or getpass.getuser(),
                           purge=args.purge)
    emit(args, result.as_dict(), lambda _: print(result.sentence()))


def register(sub: argparse._SubParsersAction) -> None:
    inputs = verbs(verb(sub, "input", "the stored images", "autoannotate input delete scene_0001.jpg",
                        json_option=False))
    delete = verb(inputs, "delete", "take images out of every task's annotations, queues and later versions "
                  "(earlier versions keep them)", "autoannotate input delete scene_0001.jpg --purge",
                  command_input_delete)
    delete.add_argument("inputs", nargs="+", metavar="FILE|ID", help="an input id, or the path or file name an image "
                        "was ingested from")
    delete.add_argument("--purge", action="store_true", help="also remove the stored bytes, embeddings and crops, "
                        "unless a frozen version still holds the image")
    delete.add_argument("--by", help="who deletes (default: the user running the command)")
