"""Human decisions on annotations, written as events (source `review`) in one transaction."""

import hashlib
from datetime import UTC, datetime

import duckdb
import pandas as pd

from assets.schemas import AnnotationsSchema
from assets.task_config import LabelingTask
from assets.triage import CURRENT_ANNOTATIONS, EVENT_FIELDS, with_event_ids
from resources.store import insert_frame

DECISION_STATUS = {"accept": "SUCCESS", "reject": "REJECTED"}


class ReviewError(ValueError):
    """A decision that cannot be applied; the message says why."""


def current_annotation(conn: duckdb.DuckDBPyConnection, annotation_id: str) -> pd.Series:
    rows = conn.execute(f"SELECT * FROM ({CURRENT_ANNOTATIONS}) WHERE annotation_id = ?", [annotation_id]).df()
    if rows.empty:
        raise ReviewError(f"No annotation has the id {annotation_id!r}.")
    return rows.iloc[0]


def record_decision(conn: duckdb.DuckDBPyConnection, annotation_id: str, decision: str, reviewer: str,
                    concept: str | None = None, box: tuple[float, float, float, float] | None = None,
                    now: datetime | None = None) -> dict:
    """Accept or reject an annotation, or correct its concept/box (the original is retired).

    A decision equal to the current state writes nothing, so a double submit is one event.
    """
    now = now or datetime.now(UTC).replace(tzinfo=None)
    current = current_annotation(conn, annotation_id)
    if decision in DECISION_STATUS and concept is None and box is None:
        if current["status"] == DECISION_STATUS[decision] and current["source"] == "review":
            return {"annotation_id": annotation_id, "status": current["status"], "written": 0}
        event = {**current[EVENT_FIELDS].to_dict(), "status": DECISION_STATUS[decision], "source": "review",
                 "annotator": reviewer, "event_at": now}
        return _write(conn, [event], annotation_id)
    if decision != "correct":
        raise ReviewError(f"Unknown decision {decision!r}; use accept, reject or correct.")
    if current["status"] == "RETIRED":
        raise ReviewError(f"Annotation {annotation_id} was already replaced; correct the new one instead.")
    x1, y1, x2, y2 = box or (current["x1"], current["y1"], current["x2"], current["y2"])
    new_concept = concept or current["concept"]
    corrected_id = hashlib.sha256(f"{annotation_id}|{new_concept}|{x1:.5f}|{y1:.5f}|{x2:.5f}|{y2:.5f}".encode()
                                  ).hexdigest()[:32]
    base = current[EVENT_FIELDS].to_dict()
    retire = {**base, "status": "RETIRED", "source": "review", "annotator": reviewer, "event_at": now}
    corrected = {**base, "annotation_id": corrected_id, "concept": new_concept, "x1": x1, "y1": y1, "x2": x2,
                 "y2": y2, "polygon": None if box else base["polygon"], "status": "SUCCESS", "source": "review",
                 "annotator": reviewer, "event_at": now}
    return _write(conn, [retire, corrected], corrected_id)


def _write(conn: duckdb.DuckDBPyConnection, events: list[dict], annotation_id: str) -> dict:
    conn.register("decision_events", pd.DataFrame(events)[EVENT_FIELDS])
    frame = with_event_ids(conn, "decision_events")
    conn.unregister("decision_events")
    written = insert_frame(conn, "annotations", frame, AnnotationsSchema)
    return {"annotation_id": annotation_id, "status": events[-1]["status"], "written": written}


def add_missed_box(conn: duckdb.DuckDBPyConnection, task: str, input_id: str, concept: str,
                   box: tuple[float, float, float, float], reviewer: str, now: datetime | None = None) -> dict:
    """A box the model missed, drawn by a reviewer: a new SUCCESS annotation (source `review`)."""
    now = now or datetime.now(UTC).replace(tzinfo=None)
    if not conn.execute("SELECT 1 FROM inputs WHERE input_id = ?", [input_id]).fetchall():
        raise ReviewError(f"No input has the id {input_id!r}.")
    x1, y1, x2, y2 = box
    annotation_id = hashlib.sha256(f"{task}|{input_id}|{concept}|{x1:.5f}|{y1:.5f}|{x2:.5f}|{y2:.5f}|drawn"
                                   .encode()).hexdigest()[:32]
    event = {"annotation_id": annotation_id, "task": task, "input_id": input_id, "prediction_id": None,
             "model_id": None, "batch": None, "concept": concept, "x1": x1, "y1": y1, "x2": x2, "y2": y2,
             "polygon": None, "confidence": None, "status": "SUCCESS", "annotator": reviewer, "source": "review",
             "event_at": now}
    if conn.execute("SELECT 1 FROM annotations WHERE annotation_id = ?", [annotation_id]).fetchall():
        return {"annotation_id": annotation_id, "status": "SUCCESS", "written": 0}
    return _write(conn, [event], annotation_id)


def accept_above(conn: duckdb.DuckDBPyConnection, task: str, input_id: str, threshold: float,
                 reviewer: str) -> dict:
    """Accept every box of one image still awaiting review whose confidence is at least `threshold`."""
    pending = conn.execute(
        f"SELECT annotation_id FROM ({CURRENT_ANNOTATIONS}) WHERE task = ? AND input_id = ? "
        "AND status = 'AWAITING_REVIEW' AND confidence >= ?", [task, input_id, threshold]).fetchall()
    now = datetime.now(UTC).replace(tzinfo=None)
    written = sum(record_decision(conn, a, "accept", reviewer, now=now)["written"] for (a,) in pending)
    return {"accepted": len(pending), "written": written}


def image_annotations(conn: duckdb.DuckDBPyConnection, task: str, input_id: str) -> list[dict]:
    """Every live (not retired) annotation of one image, as the review page draws them."""
    rows = conn.execute(
        f"SELECT annotation_id, concept, confidence, status, source, annotator, x1, y1, x2, y2 "
        f"FROM ({CURRENT_ANNOTATIONS}) WHERE task = ? AND input_id = ? AND status <> 'RETIRED' "
        "ORDER BY x1, y1", [task, input_id]).df()
    rows["confidence"] = rows["confidence"].astype(object).where(rows["confidence"].notna(), None)
    return rows.to_dict("records")


def review_queue(conn: duckdb.DuckDBPyConnection, task: LabelingTask, reviewer: str,
                 statuses: list[str] | None = None, concepts: list[str] | None = None,
                 labelers: list[str] | None = None, combine: str = "and") -> list[dict]:
    """The reviewer's images, most doubtful first: the smallest distance of any box still awaiting review
    to its concept's upper or lower threshold. Filters on status, concept and labeler (annotator) combine
    with `and` (one box matches all given filters) or `or` (one box matches any)."""
    rules = pd.DataFrame([r.model_dump() for r in task.rules()])[["concept", "upper", "lower"]]
    conn.register("review_rules", rules)
    conditions = [(column, values) for column, values in (("status", statuses), ("concept", concepts),
                                                          ("annotator", labelers)) if values]
    joiner = " AND " if combine == "and" else " OR "
    matching = joiner.join(f"c.{column} IN (SELECT unnest(${column}))" for column, _ in conditions) or "TRUE"
    params = {"task": task.name, "reviewer": reviewer, **{column: values for column, values in conditions}}
    rows = conn.execute(f"""
        WITH current AS (SELECT * FROM ({CURRENT_ANNOTATIONS}) WHERE task = $task AND status <> 'RETIRED')
        SELECT r.input_id,
               count(c.annotation_id) FILTER (WHERE c.status = 'AWAITING_REVIEW') AS pending,
               count(c.annotation_id) AS boxes,
               min(least(abs(c.confidence - q.upper), abs(c.confidence - q.lower)))
                   FILTER (WHERE c.status = 'AWAITING_REVIEW') AS doubt
        FROM review_assignments r
        LEFT JOIN current c ON c.input_id = r.input_id
        LEFT JOIN review_rules q ON q.concept = c.concept
        WHERE r.task = $task AND r.reviewer = $reviewer
          AND EXISTS (SELECT 1 FROM current c WHERE c.input_id = r.input_id AND ({matching}))
        GROUP BY r.input_id
        ORDER BY pending = 0, doubt NULLS LAST, r.input_id""", params).df()
    conn.unregister("review_rules")
    rows["doubt"] = rows["doubt"].astype(object).where(rows["doubt"].notna(), None)
    return rows.to_dict("records")
