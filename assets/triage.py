"""Stage 3: the `annotations` asset routes predictions by each task's thresholds.

Annotations are an append-only history of status events. A re-run appends an event
only where the auto status changed (so re-running with the same thresholds writes
nothing and keeps every timestamp), retires auto annotations that no longer pass,
and never touches an annotation a person has decided.
"""

import hashlib
from datetime import UTC, datetime

import dagster as dg
import duckdb
import pandas as pd

from assets.inference import predictions
from assets.routing import BAND_STATUS, annotation_ids, assign_reviewers, route_predictions
from assets.schemas import (
    AnnotationsSchema,
    ReviewAssignmentsSchema,
    TaskInputsSchema,
    column_schema,
    table_schema_check,
)
from assets.task_config import LabelingTask
from pipelines.partitions import batch_partitions
from resources.detector import Detector, file_sha256
from resources.store import DuckDBStore, insert_frame, write_or_retry
from resources.tasks import LabelingTasks, detector_for

EVENT_COLUMNS = list(AnnotationsSchema.to_schema().columns)
EVENT_FIELDS = [c for c in EVENT_COLUMNS if c != "event_id"]  # what an event says; its id is derived
CURRENT_ANNOTATIONS = """
    SELECT * FROM annotations
    QUALIFY row_number() OVER (PARTITION BY annotation_id ORDER BY event_at DESC, seq DESC) = 1
"""


def event_ids(frame: pd.DataFrame) -> pd.Series:
    keys = (frame["annotation_id"] + "|" + frame["status"] + "|" + frame["source"] + "|"
            + frame["annotator"] + "|" + frame["event_at"].astype(str))
    return keys.map(lambda key: hashlib.sha256(key.encode()).hexdigest()[:32])


def auto_events(routed: pd.DataFrame, task: LabelingTask, batch: str, now: datetime) -> pd.DataFrame:
    """The auto status each routed prediction (accept/review band) should currently have."""
    kept = routed[routed["band"] != "discard"]
    return pd.DataFrame({
        "annotation_id": annotation_ids(task.name, kept["prediction_id"]).to_numpy(),
        "task": task.name, "input_id": kept["input_id"].to_numpy(),
        "prediction_id": kept["prediction_id"].to_numpy(), "model_id": kept["model_id"].to_numpy(),
        "batch": batch, "concept": kept["concept"].to_numpy(),
        "x1": kept["x1"].to_numpy(), "y1": kept["y1"].to_numpy(), "x2": kept["x2"].to_numpy(),
        "y2": kept["y2"].to_numpy(), "polygon": kept["polygon"].to_numpy(),
        "confidence": kept["confidence"].to_numpy(), "status": kept["band"].map(BAND_STATUS).to_numpy(),
        "annotator": task.annotator, "source": "auto", "event_at": now,
    })


def events_to_append(desired: pd.DataFrame, current: pd.DataFrame, decided: set[str], now: datetime) -> pd.DataFrame:
    """Events that move the current auto state to the desired one.

    `current` is the latest event of every annotation of this task and batch; `decided`
    holds annotation ids with a human event, which are left alone.
    """
    desired = desired[~desired["annotation_id"].isin(decided)]
    status_now = current.set_index("annotation_id")["status"]
    changed = desired[desired["annotation_id"].map(status_now).ne(desired["status"]).to_numpy()]
    gone = current[~current["annotation_id"].isin(desired["annotation_id"]) & ~current["annotation_id"].isin(decided)
                   & (current["status"] != "RETIRED")]
    retired = gone.assign(status="RETIRED", source="auto", event_at=now)[EVENT_FIELDS] if len(gone) else None
    frames = [f for f in (changed, retired) if f is not None and len(f)]
    if not frames:
        return pd.DataFrame(columns=EVENT_COLUMNS)
    events = pd.concat(frames, ignore_index=True)
    events["event_id"] = event_ids(events)
    return events[EVENT_COLUMNS]


def write_task_annotations(conn: duckdb.DuckDBPyConnection, task: LabelingTask, batch: str, model_id: str,
                           now: datetime) -> dict:
    """Route the batch's predictions of the task's model and write events, progress and assignments."""
    batch_predictions = conn.execute(
        "SELECT * FROM predictions WHERE batch = ? AND model_id = ?", [batch, model_id]).df()
    routed = route_predictions(batch_predictions, task)
    desired = auto_events(routed, task, batch, now)
    current = conn.execute(f"SELECT * FROM ({CURRENT_ANNOTATIONS}) WHERE task = ? AND batch = ?",
                           [task.name, batch]).df()
    decided = set(conn.execute(
        "SELECT DISTINCT annotation_id FROM annotations WHERE task = ? AND batch = ? AND source <> 'auto'",
        [task.name, batch]).df()["annotation_id"])
    appended = insert_frame(conn, "annotations", events_to_append(desired, current, decided, now), AnnotationsSchema)

    processed = conn.execute(
        "SELECT input_id FROM processed_inputs WHERE batch = ? AND model_id = ?", [batch, model_id]).df()
    per_input = desired.groupby("input_id").size()
    conn.execute("DELETE FROM task_inputs WHERE task = ? AND batch = ?", [task.name, batch])
    insert_frame(conn, "task_inputs", pd.DataFrame({
        "task": task.name, "input_id": processed["input_id"], "batch": batch, "model_id": model_id,
        "annotation_count": processed["input_id"].map(per_input).fillna(0).astype(int), "processed_at": now,
    }), TaskInputsSchema)

    assigned = update_review_assignments(conn, task, now)
    band_counts = routed.groupby(["concept", "band"]).size().unstack(fill_value=0)
    return {
        "appended_events": appended,
        "bands": {concept: {band: int(band_counts.loc[concept].get(band, 0)) for band in ("accept", "review",
                                                                                          "discard")}
                  for concept in band_counts.index},
        "unmapped_predictions": len(batch_predictions) - len(routed),
        "newly_assigned": assigned,
    }


def update_review_assignments(conn: duckdb.DuckDBPyConnection, task: LabelingTask, now: datetime) -> int:
    """Give every input holding review items, and no reviewer yet, to one of the task's reviewers."""
    needing = conn.execute(
        f"SELECT DISTINCT input_id FROM ({CURRENT_ANNOTATIONS}) WHERE task = ? AND status = 'AWAITING_REVIEW'",
        [task.name]).df()["input_id"].tolist()
    existing = dict(conn.execute("SELECT input_id, reviewer FROM review_assignments WHERE task = ?",
                                 [task.name]).fetchall())
    fresh = assign_reviewers(existing, needing, task.reviewers) if task.reviewers else {}
    insert_frame(conn, "review_assignments", pd.DataFrame({
        "task": task.name, "input_id": list(fresh), "reviewer": list(fresh.values()), "assigned_at": now,
    }), ReviewAssignmentsSchema)
    return len(fresh)


def review_queues(store: DuckDBStore, task: str) -> dict[str, dict[str, int]]:
    """Per reviewer: inputs assigned, and how many of them hold no undecided review item."""
    rows = store.query_df(f"""
        SELECT r.reviewer, count(*) AS assigned,
               count(*) FILTER (WHERE NOT EXISTS (
                   SELECT 1 FROM ({CURRENT_ANNOTATIONS}) c
                   WHERE c.task = r.task AND c.input_id = r.input_id AND c.status = 'AWAITING_REVIEW')) AS reviewed
        FROM review_assignments r WHERE r.task = ? GROUP BY 1 ORDER BY 1""", [task])
    return {r.reviewer: {"assigned": int(r.assigned), "reviewed": int(r.reviewed)} for r in rows.itertuples()}


@dg.asset(
    partitions_def=batch_partitions,
    deps=[predictions],
    group_name="triage",
    kinds={"duckdb", "python"},
    pool="duckdb",
    metadata={"dagster/column_schema": column_schema(AnnotationsSchema), "table": "annotations"},
    description="Status events of every task's annotations for the batch: SUCCESS above the upper threshold, "
                "AWAITING_REVIEW (assigned to a reviewer) between the thresholds (DuckDB table `annotations`).",
)
def annotations(context: dg.AssetExecutionContext, store: DuckDBStore, tasks: LabelingTasks,
                detector: Detector) -> dg.MaterializeResult:
    batch = context.partition_key
    now = datetime.now(UTC).replace(tzinfo=None)
    per_task, queues = {}, {}
    for task in tasks.load():
        model_id = file_sha256(detector_for(task, detector).weights_path())
        per_task[task.name] = write_or_retry(
            store, lambda conn, task=task, model_id=model_id: write_task_annotations(conn, task, batch, model_id, now))
        queues[task.name] = review_queues(store, task.name)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": sum(t["appended_events"] for t in per_task.values()),
        "bands_per_task_and_concept": {name: t["bands"] for name, t in per_task.items()},
        "review_queues": queues,
        "unmapped_predictions": sum(t["unmapped_predictions"] for t in per_task.values()),
    })


annotations_schema_check = table_schema_check(annotations.key, "annotations", AnnotationsSchema)
review_assignments_schema_check = table_schema_check(annotations.key, "review_assignments", ReviewAssignmentsSchema)


@dg.asset_check(asset=annotations, blocking=True,
                description="Every current auto SUCCESS annotation passes its task's upper threshold rule.")
def auto_success_passes_upper_rule(store: DuckDBStore, tasks: LabelingTasks) -> dg.AssetCheckResult:
    violations = {}
    for task in tasks.load():
        current = store.query_df(
            f"SELECT prediction_id, concept, confidence FROM ({CURRENT_ANNOTATIONS}) "
            "WHERE task = ? AND source = 'auto' AND status = 'SUCCESS'", [task.name])
        routed = route_predictions(current.assign(class_name=current["concept"]).drop(columns="concept"), task)
        bad = routed[routed["band"] != "accept"]
        if len(bad):
            violations[task.name] = bad["prediction_id"].head(10).tolist()
    return dg.AssetCheckResult(passed=not violations, metadata={"violations": violations})


@dg.asset_check(asset=annotations, blocking=True, description="No input is assigned to two reviewers of one task.")
def no_input_has_two_reviewers(store: DuckDBStore) -> dg.AssetCheckResult:
    doubles = store.query_df("SELECT task, input_id, count(DISTINCT reviewer) AS n FROM review_assignments "
                             "GROUP BY 1, 2 HAVING n > 1")
    return dg.AssetCheckResult(passed=doubles.empty, metadata={"inputs_with_two_reviewers": len(doubles)})


@dg.asset_check(asset=annotations, blocking=True,
                description="Every annotation box lies inside [0, 1] with x1 < x2 and y1 < y2.")
def boxes_are_inside_the_image(store: DuckDBStore) -> dg.AssetCheckResult:
    bad = store.query_df("SELECT count(*) AS n FROM annotations WHERE NOT (0 <= x1 AND x1 < x2 AND x2 <= 1 "
                         "AND 0 <= y1 AND y1 < y2 AND y2 <= 1)")["n"].iloc[0]
    return dg.AssetCheckResult(passed=bool(bad == 0), metadata={"bad_boxes": int(bad)})
