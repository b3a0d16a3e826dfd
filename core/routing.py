"""Pure, vectorised triage: which band every prediction falls in, and who reviews what.

Routing is one DuckDB SQL expression built from the task, so the same code routes a
dataframe in a test and a million rows inside the database.
"""

from __future__ import annotations

import duckdb
import pandas as pd

from core.task_config import LabelingTask


class FloorTooHigh(ValueError):
    """A task's lower threshold lies below the floor the batch's predictions were made at."""


def check_floor(task: LabelingTask, batch: str, floor: float | None) -> None:
    """Refuse to route a batch whose stored predictions stop above the task's lowest lower threshold: the
    predictions between the two were never kept, so routing would silently miss them."""
    if floor is not None and task.lowest_lower < floor:
        raise FloorTooHigh(
            f"Task {task.name!r} has a lower threshold of {task.lowest_lower:g}, but batch {batch}'s predictions "
            f"were made at a confidence floor of {floor:g}: `autoannotate run --reroute` predicts such batches again "
            "before routing them (in the UI: materialize the batch's `predictions` with its `annotations`).")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _number(value: float) -> str:
    return f"CAST({float(value)!r} AS DOUBLE)"  # exact binary value, never DECIMAL


def concept_sql(task: LabelingTask, class_names: list[str]) -> str:
    """SQL for the task's concept of `class_name` (NULL when unmapped)."""
    pairs = [(name, task.concept_for(name)) for name in class_names]
    whens = " ".join(f"WHEN {_literal(c)} THEN {_literal(k)}" for c, k in pairs if k is not None)
    return f"CASE class_name {whens} END" if whens else "CAST(NULL AS VARCHAR)"


def band_sql(task: LabelingTask) -> str:
    """SQL for the band of a row with `concept` and `confidence`:
    accept when confidence <upper_operator> upper, else review when confidence <lower_operator> lower,
    else discard; operators and thresholds per concept, overrides applied."""
    # The five operators a task allows (validated) are spelled the same in SQL.
    accept = " ".join(f"WHEN {_literal(r.concept)} THEN confidence {r.upper_operator} {_number(r.upper)}"
                      for r in task.rules())
    review = " ".join(f"WHEN {_literal(r.concept)} THEN confidence {r.lower_operator} {_number(r.lower)}"
                      for r in task.rules())
    return (f"CASE WHEN (CASE concept {accept} END) THEN 'accept' "
            f"WHEN (CASE concept {review} END) THEN 'review' ELSE 'discard' END")


def paths_sql(task: LabelingTask) -> str:
    """A predicate on an inbox file's `uri`: the file is in the task's `inputs.paths` (TRUE when it has none)."""
    if not task.inputs.paths:
        return "TRUE"
    return "(" + " OR ".join(f"uri GLOB {_literal('*/' + path.lstrip('/'))}" for path in task.inputs.paths) + ")"


def scope_sql(task: LabelingTask, column: str = "input_id") -> str:
    """A predicate on `column` (an input id; the query has $batch): the input is in the task's `inputs.paths`."""
    if not task.inputs.paths:
        return "TRUE"
    return f"{column} IN (SELECT input_id FROM input_sources WHERE batch = $batch AND {paths_sql(task)})"


def routed_sql(task: LabelingTask, class_names: list[str], relation: str) -> str:
    """SELECT every mapped row of `relation` with its `concept` and `band`; unmapped classes dropped."""
    return (f"SELECT *, {band_sql(task)} AS band FROM ("
            f"SELECT *, {concept_sql(task, class_names)} AS concept FROM {relation}) WHERE concept IS NOT NULL")


def route_predictions(predictions: pd.DataFrame, task: LabelingTask) -> pd.DataFrame:
    """Route a dataframe of predictions (class_name, confidence, ...) with an in-memory DuckDB."""
    with duckdb.connect() as conn:
        conn.register("predictions_in", predictions)
        classes = sorted(predictions["class_name"].unique())
        return conn.execute(routed_sql(task, classes, "predictions_in")).df()


def assign_reviewers(existing: dict[str, str], needing: list[str], reviewers: list[str]) -> dict[str, str]:
    """New assignments for the inputs in `needing` that have none yet.

    Existing assignments never move (stable across re-runs and new batches); each new
    input goes to the reviewer holding the fewest, ties broken by the task's reviewer
    order, so the counts differ by at most one.
    """
    load = {reviewer: 0 for reviewer in reviewers}
    for reviewer in existing.values():
        if reviewer in load:
            load[reviewer] += 1
    fresh: dict[str, str] = {}
    for input_id in sorted(set(needing) - set(existing)):
        reviewer = min(reviewers, key=lambda r: (load[r], reviewers.index(r)))
        fresh[input_id] = reviewer
        load[reviewer] += 1
    return fresh
