"""Jobs: the whole per-batch graph, from inbox files to annotations; and the dataset versions of a day."""

import dagster as dg

from assets.partitions import batch_partitions, daily_partitions
from core.settings import Settings


def batch_executor(settings: Settings) -> dg.ExecutorDefinition:
    """Embedded: one process for the whole run (the stages run one after another anyway, and a subprocess per
    step would import torch again for each). Team mode with a Celery broker: every step goes to a Celery worker,
    on any machine, so the batches of many runs spread over every worker (each keeps its models loaded)."""
    if not settings.celery_broker:
        return dg.in_process_executor
    from dagster_celery import celery_executor

    return celery_executor.configured({"broker": settings.celery_broker, "backend": settings.celery_broker})


annotate_batch_job = dg.define_asset_job(
    "annotate_batch",
    selection=dg.AssetSelection.groups("ingestion", "inference", "triage"),
    partitions_def=batch_partitions,
    executor_def=batch_executor(Settings.current()),
    description="Ingest one inbox batch, detect objects and route every prediction to a band.",
)

maintain_store_job = dg.define_asset_job(
    "maintain_store",
    selection=dg.AssetSelection.assets("store_maintenance"),
    executor_def=dg.in_process_executor,
    description="Housekeeping of the store (see the `store_maintenance` asset).",
)

build_dataset_versions_job = dg.define_asset_job(
    "build_dataset_versions",
    selection=dg.AssetSelection.assets("dataset_versions"),
    partitions_def=daily_partitions,
    executor_def=dg.in_process_executor,
    description="Build every task's dataset version of one day (a backfill of many days is one run).",
)
