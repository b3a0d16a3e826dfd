"""Catch-up auto-annotation: batches never annotated, or predicted by weights the tasks no longer use."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import dagster as dg

from assets import metadata_keys
from assets.partitions import batch_partitions
from core.settings import Settings
from pipelines.jobs import ANNOTATE_BATCH, build_dataset_versions_job, maintain_store_job, measure_label_quality_job
from resources.detector import Detector
from resources.tasks import LabelingTasks, models_by_task


def latest_metadata(instance: dg.DagsterInstance, asset: str, key: str, limit: int = 10_000) -> dict[str, object]:
    """Per batch, one metadata value of its latest materialization of `asset` (from Dagster, not DuckDB);
    None where that materialization lacks it."""
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=limit).records
    latest: dict[str, object] = {}
    for record in records:  # newest first
        materialization = record.asset_materialization
        if materialization and materialization.partition and materialization.partition not in latest:
            value = materialization.metadata.get(key)
            latest[materialization.partition] = value.value if value else None
    return latest


def latest_model_ids(instance: dg.DagsterInstance) -> dict[str, set[str]]:
    """Per batch, the model ids of its latest `predictions` materialization."""
    latest = latest_metadata(instance, "predictions", metadata_keys.MODEL_IDS)
    return {batch: set(ids or ()) for batch, ids in latest.items()}


def batches_to_reroute(latest_rules: dict[str, object], wanted: dict[str, str], skip: set[str]) -> list[str]:
    """Annotated batches whose latest routing used rules other than the tasks' current ones (`wanted`: task ->
    rules hash), apart from those in `skip` (which run whole anyway)."""
    return sorted(b for b, rules in latest_rules.items() if b not in skip and rules != wanted)


def batches_to_catch_up(all_batches: list[str], annotated: set[str], model_ids: dict[str, set[str]],
                        wanted: set[str]) -> list[str]:
    """Batches without annotations, or whose predictions lack one of the models the tasks use now."""
    return sorted(b for b in all_batches if b not in annotated or not wanted <= model_ids.get(b, set()))


def daily_versions_request(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """The daily cut: the day that just ended, with every review decision of that day."""
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return dg.RunRequest(partition_key=day, run_key=f"daily-{day}")


def catch_up_requests(context: dg.ScheduleEvaluationContext, tasks: LabelingTasks,
                      detector: Detector) -> list[dg.RunRequest] | dg.SkipReason:
    wanted = set(models_by_task(tasks.load(), detector).values())
    batches = batches_to_catch_up(
        context.instance.get_dynamic_partitions(batch_partitions.name),
        context.instance.get_materialized_partitions(dg.AssetKey("annotations")),
        latest_model_ids(context.instance), wanted)
    rules = {task.name: task.rules_hash for task in tasks.load()}
    reroute = batches_to_reroute(latest_metadata(context.instance, "annotations", metadata_keys.ROUTING_RULES), rules,
                                 set(batches))
    if not batches and not reroute:
        return dg.SkipReason("Every batch is annotated with the models and routing rules its tasks use.")
    models = hashlib.sha256("|".join(sorted(wanted)).encode()).hexdigest()[:12]
    rules_key = hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:12]
    # Re-routing reads the stored predictions: only `annotations` (and its checks) runs, no inference; unless a
    # task's lower threshold lies below the deployment's confidence floor, so older predictions may stop above it.
    below_floor = any(task.detects and task.lowest_lower < detector.conf_floor for task in tasks.load())
    selection = [dg.AssetKey("annotations")]
    if below_floor:
        selection.insert(0, dg.AssetKey("predictions"))
    return ([dg.RunRequest(partition_key=b, run_key=f"catch-up-{b}-{models}") for b in batches]
            + [dg.RunRequest(partition_key=b, run_key=f"reroute-{b}-{rules_key}", asset_selection=selection)
               for b in reroute])


def build_schedules(settings: Settings) -> list[dg.ScheduleDefinition]:
    """The schedules, at the deployment's cron times (AUTOANNOTATE_*_CRON, UTC)."""
    running, stopped = dg.DefaultScheduleStatus.RUNNING, dg.DefaultScheduleStatus.STOPPED
    return [
        dg.ScheduleDefinition(
            name="maintenance_schedule", job=maintain_store_job, cron_schedule=settings.maintenance_cron,
            execution_timezone="UTC", default_status=running,
            description="Store housekeeping every night (AUTOANNOTATE_MAINTENANCE_CRON)."),
        dg.ScheduleDefinition(
            name="quality_schedule", job=measure_label_quality_job, cron_schedule=settings.quality_cron,
            execution_timezone="UTC", default_status=running,
            description="Measures every task's label quality each night, after the daily versions "
                        "(AUTOANNOTATE_QUALITY_CRON)."),
        dg.schedule(name="daily_versions_schedule", job=build_dataset_versions_job,
                    cron_schedule=settings.versions_cron, execution_timezone="UTC", default_status=running,
                    description="The daily cut: builds the day that just ended, with every review decision of "
                                "that day.")(daily_versions_request),
        dg.schedule(name="catch_up_schedule", job_name=ANNOTATE_BATCH, cron_schedule=settings.catch_up_cron,
                    default_status=stopped,
                    description="Runs the pipeline for every batch that was never annotated, or whose predictions "
                                "come from weights the tasks no longer use; re-routes every batch routed under "
                                "rules the tasks no longer use (from the stored predictions, unless a task's lower "
                                "threshold lies below the confidence floor).")(catch_up_requests),
    ]
