"""The one Definitions object of autoannotate: assets, checks, jobs and resources."""

from pathlib import Path

import dagster as dg

from assets import inference, ingestion, triage, versions
from pipelines.jobs import annotate_batch_job
from pipelines.schedules import catch_up_schedule
from pipelines.sensors import inbox_sensor
from pipelines.settings import autoannotate_home
from resources import build_resources

ASSET_MODULES = [ingestion, inference, triage, versions]


def build_definitions(home: Path, inbox: Path | None = None, task_files: list[str] | None = None) -> dg.Definitions:
    """Definitions bound to one AUTOANNOTATE_HOME (optionally another inbox folder and other task files)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
        jobs=[annotate_batch_job],
        sensors=[inbox_sensor],
        schedules=[catch_up_schedule],
        resources=build_resources(home, inbox, task_files),
    )


defs = build_definitions(autoannotate_home())
