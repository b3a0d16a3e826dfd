"""Counts a user checks: what was ingested, rejected, predicted and annotated."""

from __future__ import annotations

from resources.store import DuckDBStore


def _scalar(store: DuckDBStore, sql: str, params: list | None = None) -> int:
    return int(store.query_df(sql, params).iloc[0, 0])


def collect_status(store: DuckDBStore) -> dict:
    """One object with the totals of every table; the JSON of `autoannotate status`."""
    rejected = store.query_df("SELECT reason_code, count(*) AS n FROM rejected_inputs GROUP BY 1 ORDER BY 1")
    return {
        "inputs": _scalar(store, "SELECT count(*) FROM inputs"),
        "rejected": int(rejected["n"].sum()) if len(rejected) else 0,
        "rejected_by_reason": dict(zip(rejected["reason_code"], rejected["n"].astype(int))),
        "duplicates": _scalar(store, "SELECT count(*) FROM input_sources WHERE duplicate_of_earlier"),
        "batches": _scalar(store, "SELECT count(DISTINCT batch) FROM input_sources"),
    }
