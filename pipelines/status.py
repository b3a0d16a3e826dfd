"""Counts a user checks: what was ingested, rejected, predicted, annotated and reviewed."""

from __future__ import annotations

from assets.triage import CURRENT_ANNOTATIONS, review_queues
from resources.store import DuckDBStore


def _scalar(store: DuckDBStore, sql: str, params: list | None = None) -> int:
    return int(store.query_df(sql, params).iloc[0, 0])


def annotation_counts(store: DuckDBStore, task: str | None, batch: str | None = None) -> tuple[dict, dict]:
    """Current annotations by status, and by concept then status (retired ones left out)."""
    rows = store.query_df(
        f"SELECT concept, status, count(*) AS n FROM ({CURRENT_ANNOTATIONS}) "
        "WHERE status <> 'RETIRED' AND (? IS NULL OR task = ?) AND (? IS NULL OR batch = ?) "
        "GROUP BY 1, 2 ORDER BY 1, 2", [task, task, batch, batch])
    by_status: dict[str, int] = {}
    by_concept: dict[str, dict[str, int]] = {}
    for row in rows.itertuples():
        by_status[row.status] = by_status.get(row.status, 0) + int(row.n)
        by_concept.setdefault(row.concept, {})[row.status] = int(row.n)
    return by_status, by_concept


def collect_status(store: DuckDBStore, task: str | None = None) -> dict:
    """One object with the totals of every table; the JSON of `autoannotate status [--task NAME]`."""
    rejected = store.query_df("SELECT reason_code, count(*) AS n FROM rejected_inputs GROUP BY 1 ORDER BY 1")
    by_status, by_concept = annotation_counts(store, task)
    tasks = [task] if task else store.query_df(
        "SELECT DISTINCT task FROM task_inputs UNION SELECT DISTINCT task FROM annotations ORDER BY 1")["task"].tolist()
    total_inputs = _scalar(store, "SELECT count(*) FROM inputs")
    status = {
        "inputs": total_inputs,
        "rejected": int(rejected["n"].sum()) if len(rejected) else 0,
        "rejected_by_reason": {r.reason_code: int(r.n) for r in rejected.itertuples()},
        "duplicates": _scalar(store, "SELECT count(*) FROM input_sources WHERE duplicate_of_earlier"),
        "predictions": _scalar(store, "SELECT count(*) FROM predictions"),
        "annotations": by_status,
        "annotations_by_concept": by_concept,
        "tasks": {
            name: {
                "inputs_processed": _scalar(store, "SELECT count(*) FROM task_inputs WHERE task = ?", [name]),
                "inputs_total": total_inputs,
                "review": review_queues(store, name),
            }
            for name in tasks
        },
    }
    if task:
        status["task"] = task
        status["review"] = status["tasks"][task]["review"]
        status["inputs_processed"] = status["tasks"][task]["inputs_processed"]
    else:
        status["review"] = {f"{name}/{reviewer}": counts for name, t in status["tasks"].items()
                            for reviewer, counts in t["review"].items()}
    return status
