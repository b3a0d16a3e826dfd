"""The one Definitions object of autoannotate: assets, checks, jobs and resources."""

from pathlib import Path

import dagster as dg

from assets import inference, ingestion
from pipelines.jobs import annotate_batch_job
from pipelines.settings import autoannotate_home
from resources import build_resources

ASSET_MODULES = [ingestion, inference]


def build_definitions(home: Path, inbox: Path | None = None) -> dg.Definitions:
    """Definitions bound to one AUTOANNOTATE_HOME (and optionally another inbox folder)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
        jobs=[annotate_batch_job],
        resources=build_resources(home, inbox),
    )


defs = build_definitions(autoannotate_home())
