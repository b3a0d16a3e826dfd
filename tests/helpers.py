"""Test helpers that run real Dagster materializations against a test's own home."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg

from pipelines.partitions import batch_partitions
from resources.inbox import list_inbox_files


def new_batch(resources: dict, instance: dg.DagsterInstance, files: list[Path] | None = None) -> str:
    """Pin files of the inbox (all of them by default) as a batch partition."""
    inbox = resources["inbox"]
    files = files if files is not None else list_inbox_files(Path(inbox.path))
    key = inbox.write_batch([str(Path(f).relative_to(inbox.path)) for f in files])
    instance.add_dynamic_partitions(batch_partitions.name, [key])
    return key


def materialize_batch(assets: list, resources: dict, instance: dg.DagsterInstance, batch: str,
                      checks: list | None = None) -> dg.ExecuteInProcessResult:
    result = dg.materialize([*assets, *(checks or [])], partition_key=batch, instance=instance, resources=resources)
    assert result.success
    return result


def table_count(resources: dict, table: str, where: str = "TRUE", params: list | None = None) -> int:
    return int(resources["store"].query_df(f"SELECT count(*) FROM {table} WHERE {where}", params).iloc[0, 0])


def write_task_file(folder: Path, **overrides: object) -> Path:
    """The demo task with some fields replaced (`model=None` drops the task's own weights)."""
    import yaml

    from pipelines.settings import DEMO_TASK, DEMO_WEIGHTS

    data = yaml.safe_load(DEMO_TASK.read_text())
    data["model"]["weights"] = str(DEMO_WEIGHTS)
    data.update(overrides)
    if data.get("model") is None:
        data.pop("model", None)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# CI (.ci/run) installs Chromium and sets this, so a missing browser fails there instead of skipping.
BROWSER_AVAILABLE = Path(CHROMIUM).exists() or bool(os.environ.get("AUTOANNOTATE_REQUIRE_BROWSER"))


def launch_chromium(playwright):
    """Debian's Chromium through Playwright, headless, with nothing reaching for the network."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])
