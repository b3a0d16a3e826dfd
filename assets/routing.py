"""Pure, vectorised triage: which band every prediction falls in, and who reviews what."""

from __future__ import annotations

import hashlib
import operator

import numpy as np
import pandas as pd

from assets.task_config import LabelingTask

COMPARE = {">": operator.gt, ">=": operator.ge, "=": operator.eq, "<=": operator.le, "<": operator.lt}
BAND_STATUS = {"accept": "SUCCESS", "review": "AWAITING_REVIEW"}


def compare(values: pd.Series, operators: pd.Series, thresholds: pd.Series) -> pd.Series:
    """values[i] <operators[i]> thresholds[i], exactly as written, for a column of operators."""
    result = np.zeros(len(values), dtype=bool)
    for symbol, function in COMPARE.items():
        rows = (operators == symbol).to_numpy()
        if rows.any():
            result[rows] = function(values.to_numpy()[rows], thresholds.to_numpy()[rows])
    return pd.Series(result, index=values.index)


def rules_frame(task: LabelingTask) -> pd.DataFrame:
    return pd.DataFrame([rule.model_dump() for rule in task.rules()])


def class_map_frame(task: LabelingTask, class_names: list[str]) -> pd.DataFrame:
    pairs = [(name, task.concept_for(name)) for name in class_names]
    return pd.DataFrame([p for p in pairs if p[1] is not None], columns=["class_name", "concept"])


def route_predictions(predictions: pd.DataFrame, task: LabelingTask) -> pd.DataFrame:
    """Map classes to concepts (unmapped rows dropped) and add `band`: accept, review or discard.

    accept  = confidence <upper_operator> upper
    review  = not accept and confidence <lower_operator> lower
    discard = everything else
    """
    classes = class_map_frame(task, sorted(predictions["class_name"].unique()))
    routed = predictions.merge(classes, on="class_name", how="inner").merge(rules_frame(task), on="concept")
    accept = compare(routed["confidence"], routed["upper_operator"], routed["upper"])
    review = ~accept & compare(routed["confidence"], routed["lower_operator"], routed["lower"])
    routed["band"] = np.select([accept, review], ["accept", "review"], "discard")
    return routed.drop(columns=["upper", "lower", "upper_operator", "lower_operator"])


def annotation_ids(task_name: str, prediction_ids: pd.Series) -> pd.Series:
    """Deterministic: the same task and prediction always give the same annotation id."""
    return prediction_ids.map(lambda pid: hashlib.sha256(f"{task_name}|{pid}".encode()).hexdigest()[:32])


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
