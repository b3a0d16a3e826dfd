"""Stage 4: `dataset_versions`, one reproducible snapshot per task and day.

The version of day D holds every annotation whose latest event before the end of D
(UTC) is SUCCESS: auto-accepted, accepted in review, or imported. Its manifest is a
sorted, canonical text with a sha256, so rebuilding a day whose history did not change
gives the same bytes and the same hash.
"""

import json
import os
from datetime import UTC, date, datetime

import dagster as dg
import duckdb
import pandas as pd

from assets.manifests import build_manifest, end_of_day
from assets.schemas import DatasetVersionsSchema, column_schema, table_schema_check
from assets.triage import annotations, latest_events_sql
from resources.store import DuckDBStore, insert_frame, scalar, write_or_retry
from resources.versions import VersionStore

VERSIONS_START = os.environ.get("AUTOANNOTATE_VERSIONS_START", "2026-11-01")
daily_partitions = dg.DailyPartitionsDefinition(start_date=VERSIONS_START, end_offset=1)

ACCEPTED_AS_OF = f"SELECT * FROM ({latest_events_sql('task = $task AND event_at < $cutoff')}) WHERE status = 'SUCCESS'"


def accepted_as_of(conn: duckdb.DuckDBPyConnection, task: str, cutoff: datetime) -> pd.DataFrame:
    return conn.execute(ACCEPTED_AS_OF, {"task": task, "cutoff": cutoff}).df()


def write_version(conn: duckdb.DuckDBPyConnection, versions: VersionStore, task: str, day: date,
                  now: datetime) -> dict | None:
    """Build (or confirm) the version of `task` on `day`; None when the task had no events yet."""
    cutoff = end_of_day(day)
    first = scalar(conn, "SELECT min(event_at) FROM annotations WHERE task = ?", [task])
    if first is None or first >= cutoff:
        return None  # a task's versions start on its first day
    manifest = build_manifest(accepted_as_of(conn, task, cutoff))
    key = f"{task}@{day.isoformat()}"
    path = versions.manifest_path(task, day.isoformat())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(manifest.text)
    previous = conn.execute("SELECT manifest_sha256, created_at, changed_at FROM dataset_versions "
                            "WHERE version_key = ?", [key]).fetchall()
    changed = not previous or previous[0][0] != manifest.sha256
    if changed:
        conn.execute("DELETE FROM dataset_versions WHERE version_key = ?", [key])
        insert_frame(conn, "dataset_versions", pd.DataFrame([{
            "version_key": key, "task": task, "day": day, "cutoff": cutoff, "manifest_sha256": manifest.sha256,
            "annotations": manifest.annotations, "inputs": manifest.inputs,
            "per_concept": json.dumps(manifest.per_concept, sort_keys=True), "manifest_path": str(path),
            "created_at": previous[0][1] if previous else now, "changed_at": now,
        }]), DatasetVersionsSchema)
    return {"version": key, "manifest_sha256": manifest.sha256, "annotations": manifest.annotations,
            "inputs": manifest.inputs, "per_concept": manifest.per_concept, "changed": changed}


@dg.asset(
    partitions_def=daily_partitions,
    deps=[dg.AssetDep(annotations, partition_mapping=dg.AllPartitionMapping())],
    group_name="versions",
    kinds={"duckdb", "python"},
    pool="duckdb",
    # A backfill of many days is one run: one process, one database writer.
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata={"dagster/column_schema": column_schema(DatasetVersionsSchema), "table": "dataset_versions"},
    description="Per task and day, the accepted annotations as of the end of the day (UTC), with a manifest "
                "and its sha256 (DuckDB table `dataset_versions`).",
)
def dataset_versions(context: dg.AssetExecutionContext, store: DuckDBStore,
                     versions: VersionStore) -> dg.MaterializeResult:
    now = datetime.now(UTC).replace(tzinfo=None)

    def build(conn: duckdb.DuckDBPyConnection) -> list[dict]:
        tasks = conn.execute("SELECT DISTINCT task FROM annotations ORDER BY 1").df()["task"].tolist()
        built = []
        for day in context.partition_keys:
            for task in tasks:
                result = write_version(conn, versions, task, date.fromisoformat(day), now)
                if result:
                    built.append(result)
        return built

    built = write_or_retry(store, build)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(built),
        "versions": {v["version"]: {k: v[k] for k in ("manifest_sha256", "annotations", "inputs", "per_concept",
                                                      "changed")} for v in built},
        "days": len(context.partition_keys),
    })


dataset_versions_schema_check = table_schema_check(dataset_versions.key, "dataset_versions", DatasetVersionsSchema)
