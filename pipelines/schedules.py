"""Catch-up auto-annotation: batches never annotated, or predicted by weights the tasks no longer use."""

from __future__ import annotations

import hashlib

import dagster as dg

from assets.partitions import batch_partitions
from core.settings import Settings
from pipelines.jobs import annotate_batch_job
from resources.detector import Detector
from resources.tasks import LabelingTasks, models_by_task


def latest_model_ids(instance: dg.DagsterInstance, limit: int = 10_000) -> dict[str, set[str]]:
    """Per batch, the model ids of its latest `predictions` materialization (from Dagster, not DuckDB)."""
    records = instance.fetch_materializations(dg.AssetKey("predictions"), limit=limit).records
    latest: dict[str, set[str]] = {}
    for record in records:  # newest first
        materialization = record.asset_materialization
        if materialization and materialization.partition and materialization.partition not in latest:
            value = materialization.metadata.get("model_ids")
            latest[materialization.partition] = set(value.value) if value else set()
    return latest


def batches_to_catch_up(all_batches: list[str], annotated: set[str], model_ids: dict[str, set[str]],
                        wanted: set[str]) -> list[str]:
    """Batches without annotations, or whose predictions lack one of the models the tasks use now."""
    return sorted(b for b in all_batches if b not in annotated or not wanted <= model_ids.get(b, set()))


@dg.schedule(job=annotate_batch_job, cron_schedule=Settings.current().catch_up_cron,
             default_status=dg.DefaultScheduleStatus.STOPPED,
             description="Runs the pipeline for every batch that was never annotated, or whose predictions come "
                         "from weights the tasks no longer use.")
def catch_up_schedule(context: dg.ScheduleEvaluationContext, tasks: LabelingTasks,
                      detector: Detector) -> list[dg.RunRequest] | dg.SkipReason:
    wanted = set(models_by_task(tasks.load(), detector).values())
    batches = batches_to_catch_up(
        context.instance.get_dynamic_partitions(batch_partitions.name),
        context.instance.get_materialized_partitions(dg.AssetKey("annotations")),
        latest_model_ids(context.instance), wanted)
    if not batches:
        return dg.SkipReason("Every batch is annotated with the models its tasks use.")
    models = hashlib.sha256("|".join(sorted(wanted)).encode()).hexdigest()[:12]
    return [dg.RunRequest(partition_key=b, run_key=f"catch-up-{b}-{models}") for b in batches]
