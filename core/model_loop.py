"""The model loop's plain logic: which classes a detector trains on for a task, and whether a trained model is
promoted; no training, no database."""

from __future__ import annotations

import pandas as pd

from core.quality import calibrate_task
from core.task_config import LabelingTask, PromoteWhen

METRICS = ("map50", "map50_95")


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
                        target_precision: float) -> dict:
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
