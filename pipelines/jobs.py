"""Jobs: the whole per-batch graph, from inbox files to annotations; and the dataset versions of a day."""

import dagster as dg

# define_asset_job's return type, which Dagster does not export under its public name.
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from core.settings import Settings

ANNOTATE_BATCH = "annotate_batch"
BUILD_DATASET_VERSIONS = "build_dataset_versions"


def celery_config(settings: Settings) -> dict:
    """dagster-celery's executor config, which the workers must share (`make team-up` writes it to the YAML
    they start with). A step's message is acknowledged only when the step has finished: a worker that dies
    mid-step (killed, or its machine gone) leaves it unacknowledged, and Redis hands it to another worker after
    `celery_redeliver_s` (so keep that above the longest step; a step is idempotent, so a late second delivery
    costs time, not rows). A worker whose pool process dies requeues the step at once."""
    sweep_s = max(1, min(10, settings.celery_redeliver_s // 4))
    return {"broker": settings.celery_broker, "backend": settings.celery_broker, "config_source": {
        "task_acks_late": True, "task_reject_on_worker_lost": True, "worker_prefetch_multiplier": 1,
        "broker_transport_options": {"visibility_timeout": settings.celery_redeliver_s,
                                     "unacked_restore_interval": sweep_s, "unacked_restore_throttle": 1,
                                     "max_retries": 3, "interval_start": 0, "interval_step": 0.2,
                                     "interval_max": 0.5}}}


def batch_executor(settings: Settings) -> dg.ExecutorDefinition:
    """Embedded: one process for the whole run (the stages run one after another anyway, and a subprocess per
    step would import torch again for each). Team mode with a Celery broker: every step goes to a Celery worker,
    on any machine, so the batches of many runs spread over every worker (each keeps its models loaded)."""
    if not settings.celery_broker:
        return dg.in_process_executor
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_config(settings))


def annotate_batch_job(settings: Settings) -> UnresolvedAssetJobDefinition:
    """The whole per-batch graph, on the executor the deployment runs it with (`batch_executor`)."""
    return dg.define_asset_job(
        ANNOTATE_BATCH,
        selection=dg.AssetSelection.groups("ingestion", "inference", "triage", "concepts"),
        executor_def=batch_executor(settings),
        description="Ingest one inbox batch, detect objects, score image-level concepts and route every "
                    "prediction to a band.",
    )


# Partitioned jobs take their partitions from the assets they select (batches; days from the deployment's start).
maintain_store_job = dg.define_asset_job(
    "maintain_store",
    selection=dg.AssetSelection.assets("store_maintenance"),
    executor_def=dg.in_process_executor,
    description="Housekeeping of the store (see the `store_maintenance` asset).",
)

measure_label_quality_job = dg.define_asset_job(
    "measure_label_quality",
    selection=dg.AssetSelection.assets("label_quality", "label_audit"),
    executor_def=dg.in_process_executor,
    description="Measure every task's label quality (the `label_quality` asset and its target check) and audit "
                "people's labels (`label_audit`).",
)

train_detectors_job = dg.define_asset_job(
    "train_detectors",
    selection=dg.AssetSelection.assets("detector_models"),
    executor_def=dg.in_process_executor,
    description="Fine-tune, evaluate and maybe promote every task's detector on one day's dataset version "
                "(the `detector_models` asset); a backfill over days trains one model per day.",
)

build_dataset_versions_job = dg.define_asset_job(
    BUILD_DATASET_VERSIONS,
    selection=dg.AssetSelection.assets("dataset_versions"),
    executor_def=dg.in_process_executor,
    description="Build every task's dataset version of one day (a backfill of many days is one run).",
)


def build_jobs(settings: Settings) -> list[UnresolvedAssetJobDefinition]:
    return [annotate_batch_job(settings), build_dataset_versions_job, maintain_store_job, measure_label_quality_job,
            train_detectors_job]
