"""One in-process run of the whole graph over the files of the inbox not yet ingested."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from assets.triage import review_queues
from pipelines.definitions import build_definitions
from pipelines.instance import persistent_instance
from pipelines.partitions import batch_partitions
from resources import build_resources
from resources.inbox import Inbox, list_inbox_files
from resources.store import DuckDBStore

# Our assets log progress at INFO (every 100 images); Dagster's own step events are DEBUG.
PROGRESS_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def pending_files(inbox: Inbox, store: DuckDBStore) -> list[Path]:
    """Inbox files that no batch has ingested or rejected yet."""
    seen = set(store.query_df("SELECT uri FROM input_sources UNION SELECT uri FROM rejected_inputs")["uri"])
    return [path for path in list_inbox_files(Path(inbox.path)) if str(path) not in seen]


def create_batch(inbox: Inbox, files: list[Path], instance: dg.DagsterInstance) -> str:
    """Pin the files as a batch and register its dynamic partition."""
    key = inbox.write_batch([str(path.relative_to(inbox.path)) for path in files])
    instance.add_dynamic_partitions(batch_partitions.name, [key])
    return key


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:  # the innermost cause is the user's error
                error = error.cause
            return error.message.strip().splitlines()[-1].split(": ", 1)[-1]
    return "the run failed; see the Dagster UI for its logs"


def batch_summary(store: DuckDBStore, batch: str, files: int) -> dict:
    """What one batch produced, read back from DuckDB."""
    rejections = store.query_df(
        "SELECT uri, reason_code, reason FROM rejected_inputs WHERE batch = ? ORDER BY uri", [batch])
    sources = store.query_df(
        "SELECT count(*) FILTER (WHERE NOT duplicate_of_earlier) AS distinct_inputs, "
        "count(*) FILTER (WHERE duplicate_of_earlier) AS duplicates FROM input_sources WHERE batch = ?", [batch])
    return {
        "batch": batch,
        "files": files,
        "ingestion": {
            "inputs": int(sources["distinct_inputs"].iloc[0]),
            "duplicates": int(sources["duplicates"].iloc[0]),
            "rejected": len(rejections),
        },
        "rejections": rejections.to_dict("records"),
        "predictions": predictions_per_concept(store, batch),
    }


def predictions_per_concept(store: DuckDBStore, batch: str) -> dict[str, int]:
    rows = store.query_df("SELECT class_name, count(*) AS n FROM predictions WHERE batch = ? GROUP BY 1 ORDER BY 1",
                          [batch])
    return {name: int(n) for name, n in zip(rows["class_name"], rows["n"])}


def run_pipeline(home: Path, inbox: Path | None = None, task_files: list[str] | None = None,
                 progress: Callable[[str], None] | None = None) -> dict:
    """Ingest and annotate everything new in the inbox as one batch; return a summary."""
    resources = build_resources(home, inbox, task_files)
    resources["tasks"].load()  # a broken task file fails here, before anything is ingested
    store, inbox_resource = resources["store"], resources["inbox"]
    files = pending_files(inbox_resource, store)
    if not files:
        return {"batch": None, "files": 0}
    instance = persistent_instance(home)
    batch = create_batch(inbox_resource, files, instance)
    if progress:
        progress(f"batch {batch}: running the pipeline over {len(files)} new files ...")
    job = build_definitions(home, inbox, task_files).resolve_job_def("annotate_batch")
    result = job.execute_in_process(partition_key=batch, instance=instance, run_config=PROGRESS_LOGS,
                                    raise_on_error=False)
    if not result.success:
        raise RuntimeError(f"The run for batch {batch} failed: {first_failure(result)}")
    summary = batch_summary(store, batch, len(files))
    bands = result.asset_materializations_for_node("annotations")[0].metadata["bands_per_task_and_concept"].value
    summary["tasks"] = {name: {"bands": per_concept, "review": review_queues(store, name)}
                        for name, per_concept in bands.items()}
    # The whole graph: today's dataset version follows the new annotations.
    summary["versions"] = create_versions(home, datetime.now(UTC).date().isoformat())
    return summary


def create_versions(home: Path, day: str) -> dict:
    """Materialize `dataset_versions` for one day in-process, on the persistent instance."""
    from assets.versions import dataset_versions, dataset_versions_schema_check

    instance = persistent_instance(home)
    result = dg.materialize([dataset_versions, dataset_versions_schema_check], partition_key=day,
                            instance=instance, resources=build_resources(home), raise_on_error=False,
                            run_config=PROGRESS_LOGS)
    if not result.success:
        raise RuntimeError(f"Building the versions of {day} failed: {first_failure(result)}")
    return result.asset_materializations_for_node("dataset_versions")[0].metadata["versions"].value
