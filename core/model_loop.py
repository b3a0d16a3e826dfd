"""The model loop's plain logic: which classes a detector trains on for a task, and whether a trained model is
promoted; no training, no database."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from core.quality import calibrate_task, greedy_pairs
from core.task_config import LabelingTask, PromoteWhen

METRICS = ("map50", "map50_95")


def concepts_without_class(task: LabelingTask, class_names: list[str]) -> list[str]:
    """The task's concepts no class of the detector stands for: a detector trained in its own class space could
    never learn them, so the task trains in its concept space instead (a new head)."""
    return [c for c in task.concepts if c not in training_classes(task, class_names)]


COCO_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def average_precision(predictions: pd.DataFrame, references: pd.DataFrame, concepts: list[str]) -> dict[str, Any]:
    """COCO's detection AP of `predictions` (input_id, concept, confidence, x1..y2) against `references`
    (input_id, concept, x1..y2), for detectors whose classes differ from the dataset's ids (so Ultralytics'
    validator cannot compare them): per concept with references, the 101-point interpolated precision over
    recall, at IoU 0.5 (`map50`) and averaged over 0.5:0.95 (`map50_95`); the means over those concepts."""
    per_class: dict[str, dict[str, float]] = {}
    for concept in concepts:
        truth = references[references["concept"] == concept].reset_index(drop=True)
        if truth.empty:
            continue
        found = predictions[predictions["concept"] == concept].sort_values(
            "confidence", ascending=False, kind="mergesort").reset_index(drop=True)
        aps = []
        for iou in COCO_IOUS:
            hits = np.zeros(len(found), dtype=bool)
            hits[[i for i, _ in greedy_pairs(found, truth, iou)]] = True
            true = np.cumsum(hits)
            precision = true / np.arange(1, len(found) + 1) if len(found) else np.zeros(0)
            recall = true / len(truth) if len(found) else np.zeros(0)
            # Interpolated: the best precision at any recall at least as high.
            envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(found) else np.zeros(0)
            at = np.searchsorted(recall, RECALL_POINTS, side="left")
            aps.append(float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in at])))
        per_class[concept] = {"map50": round(aps[0], 4), "map50_95": round(float(np.mean(aps)), 4)}
    mean = {metric: float(np.mean([f[metric] for f in per_class.values()])) if per_class else 0.0
            for metric in METRICS}
    return {**mean, "per_class": per_class}


def training_classes(task: LabelingTask, class_names: list[str]) -> dict[str, str]:
    """Task concept -> the model class that stands for it, for training in the model's own class space (its
    head keeps its classes, so the task's class_map still applies to the trained model). A concept no model class
    maps to is left out: the model cannot learn a class it does not have."""
    chosen: dict[str, str] = {}
    for class_name in class_names:
        concept = task.concept_for(class_name)
        if concept is not None:
            chosen.setdefault(concept, class_name)
    return chosen


def promotion_decision(rule: PromoteWhen | None, candidate: dict[str, float], current: dict[str, float]
                       ) -> tuple[bool, str]:
    """Whether the candidate becomes the task's model, and the sentence that says why (or why not)."""
    if rule is None:
        return False, "not promoted: the task sets no promote_when (promote it by hand with `model promote`)"
    gain = candidate[rule.metric] - current[rule.metric]
    figures = (f"{rule.metric} {candidate[rule.metric]:.4f} against the current model's "
               f"{current[rule.metric]:.4f} (gain {gain:+.4f}, needed {rule.min_gain:+.4f})")
    if gain >= rule.min_gain:
        return True, f"promoted: {figures}"
    return False, f"not promoted: {figures}"


def share_auto_accepted(task: LabelingTask, predictions: pd.DataFrame, references: pd.DataFrame,
                        target_precision: float) -> dict[str, Any]:
    """autoannotate's own measure of a detector: calibrated on these reference labels, the share of its
    predictions (mapped to the task's concepts) it would auto-accept at `target_precision` (the lower end of the
    95 % interval), over all concepts and per concept; a concept that cannot reach the target accepts none."""
    def mapped(frame: pd.DataFrame) -> pd.DataFrame:
        concepts = frame["class_name"].map(task.concept_for)
        return frame.assign(concept=concepts)[concepts.notna()].reset_index(drop=True)

    predicted = mapped(predictions)
    proposal = calibrate_task(task.rules(), predicted, mapped(references), predicted, target_precision)
    counts = predicted["concept"].value_counts()
    accepted = {concept: (p["share_auto_accepted"] or 0.0) * int(counts.get(concept, 0))
                for concept, p in proposal.items()}
    total = int(counts.sum())
    return {"share": round(sum(accepted.values()) / total, 4) if total else 0.0,
            "per_concept": {c: round(p["share_auto_accepted"] or 0.0, 4) for c, p in proposal.items()},
            "target_precision": target_precision}
