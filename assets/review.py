"""Human decisions on annotations, written as events (source `review`) in one transaction."""

import hashlib
from datetime import UTC, datetime

import duckdb
import pandas as pd

from assets.schemas import AnnotationsSchema
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
