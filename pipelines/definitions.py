"""The one Definitions object of autoannotate: assets, checks, jobs, sensors, schedules and resources."""

import dagster as dg

from assets import concepts, inference, ingestion, maintenance, model_loop, quality, triage, versions
from core.settings import Settings
from pipelines.jobs import (
    annotate_batch_job,
    build_dataset_versions_job,
    maintain_store_job,
    measure_label_quality_job,
    train_detectors_job,
)
from pipelines.schedules import catch_up_schedule, daily_versions_schedule, maintenance_schedule, quality_schedule
from pipelines.sensors import dataset_versions_sensor, inbox_sensor
from resources import build_resources

ASSET_MODULES = [ingestion, inference, triage, concepts, versions, model_loop, quality, maintenance]


def build_definitions(settings: Settings, show_variables: bool = False) -> dg.Definitions:
    """Definitions bound to one deployment's settings (a run may carry its own inbox and task files)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(ASSET_MODULES),
        asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
        jobs=[annotate_batch_job, build_dataset_versions_job, maintain_store_job, measure_label_quality_job,
              train_detectors_job],
        sensors=[inbox_sensor, dataset_versions_sensor],
        schedules=[catch_up_schedule, daily_versions_schedule, maintenance_schedule, quality_schedule],
        resources=build_resources(settings, show_variables),
    )


# The code location `dagster dev`, the daemon and `make ui` load: variables show as EnvVars in the UI.
defs = build_definitions(Settings.current(), show_variables=True)
