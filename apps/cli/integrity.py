"""Is what the home keeps intact: `check`."""

from __future__ import annotations

import argparse

from apps.cli.common import UserError, emit, verb
from core.settings import Settings


def command_check(args: argparse.Namespace, settings: Settings) -> None:
    from resources import build_resources
    from services.integrity import HomeParts, check_home

    resources = build_resources(settings)
    store = resources["store"]
    lake_data = settings.lake_data_path if settings.lake_catalog else ""
    report = check_home(HomeParts(store, store.database.location, resources["images"].files.blobs,
                                  resources["versions"].files, lake_data))

    def render(_: dict) -> None:
        for damage in report.damaged:
            print(f"{damage.kind}: {damage.sentence}")
        print(report.summary())

    emit(args, report.as_dict(), render)
    if report.damaged:
        raise UserError(f"{len(report.damaged)} thing(s) the home keeps are damaged (listed above); nothing was "
                        "changed.")


def register(sub: argparse._SubParsersAction) -> None:
    verb(sub, "check", "verify what the home keeps: every stored image hashes to its name, every image a row names "
         "is stored, every version manifest matches its recorded sha256, every table reads whole with unique keys, "
         "a DuckLake's files match its catalog; exits 1 when anything is damaged", "autoannotate check --json",
         command_check)
