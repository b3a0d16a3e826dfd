"""Label quality: the model's predictions matched to the boxes people confirmed, precision and recall of each
confidence band with confidence intervals, and thresholds calibrated to a target precision.

Matching follows COCO (pycocotools' COCOeval at one IoU threshold): per image and concept, predictions in order of
confidence (highest first) each take the still unmatched reference box they overlap most, if that overlap is at
least the IoU threshold; one-to-one. Intervals are Wilson score intervals.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from math import sqrt
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from core.task_config import ConceptRule

DEFAULT_IOU = 0.5
MIN_REFERENCE_BOXES = 20  # below this a concept's figures are withheld: an interval that wide says nothing
OPERATORS: dict[str, Callable[..., Any]] = {">": operator.gt, ">=": operator.ge, "=": operator.eq, "<=": operator.le,
                                  "<": operator.lt}
BOX = ["x1", "y1", "x2", "y2"]


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Exact IoU of one x1, y1, x2, y2 box with each row of `boxes` (no smoothing term: 0.5 stays 0.5)."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=float), where=union > 0)


def match_predictions(predictions: pd.DataFrame, references: pd.DataFrame,
                      iou_threshold: float = DEFAULT_IOU) -> np.ndarray:
    """Whether each prediction (columns input_id, concept, x1, y1, x2, y2, confidence) matches a reference box
    (input_id, concept, x1, y1, x2, y2), in the predictions' row order."""
    matched = np.zeros(len(predictions), dtype=bool)
    for row, _ in greedy_pairs(predictions, references, iou_threshold):
        matched[row] = True
    return matched


def greedy_pairs(predictions: pd.DataFrame, references: pd.DataFrame,
                 iou_threshold: float = DEFAULT_IOU) -> list[tuple[int, int]]:
    """COCO's one-to-one matching as (prediction position, reference position) pairs, positions counted in
    each frame's row order."""
    pairs: list[tuple[int, int]] = []
    if predictions.empty or references.empty:
        return pairs
    references = references.reset_index(drop=True)
    truth = {key: (references.loc[rows, BOX].to_numpy(float), np.asarray(rows))
             for key, rows in references.groupby(["input_id", "concept"]).groups.items()}
    ranked = predictions.reset_index(drop=True)
    for key, group in ranked.groupby(["input_id", "concept"]):
        if key not in truth:
            continue
        boxes, positions = truth[key]
        taken = np.zeros(len(boxes), dtype=bool)
        group = group.sort_values("confidence", ascending=False, kind="mergesort")
        for row, box in zip(group.index, group[BOX].to_numpy(float), strict=True):
            overlap = np.where(taken, -1.0, iou_one_to_many(box, boxes))
            best = len(overlap) - 1 - int(np.argmax(overlap[::-1]))  # COCO keeps the last of equal best
            if overlap[best] >= iou_threshold:
                taken[best] = True
                pairs.append((int(row), int(positions[best])))
    return pairs


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion; (0, 1) without trials."""
    if trials == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _proportion(name: str, successes: int, trials: int, confidence: float) -> dict[str, Any]:
    low, high = wilson_interval(successes, trials, confidence)
    return {name: successes / trials if trials else None, f"{name}_low": low if trials else None,
            f"{name}_high": high if trials else None}


def _bands(confidence: np.ndarray, rule: ConceptRule) -> tuple[np.ndarray, np.ndarray]:
    """(accepted, accepted or to review) masks under the rule's thresholds and operators."""
    accepted = OPERATORS[rule.upper_operator](confidence, rule.upper)
    return accepted, accepted | OPERATORS[rule.lower_operator](confidence, rule.lower)


def band_quality(confidence: np.ndarray, matched: np.ndarray, reference_boxes: int, rule: ConceptRule,
                 level: float = 0.95, all_confidence: np.ndarray | None = None,
                 min_reference: int = MIN_REFERENCE_BOXES) -> dict[str, Any]:
    """One concept's quality on the images with reference labels: precision and recall of the accepted band
    and of accepted + review, with `level` Wilson intervals; the share of predictions auto-accepted and the
    review load among `all_confidence` (every prediction of the concept; the reference images' by default).
    With fewer than `min_reference` reference boxes the figures are None and `note` says why."""
    accepted, kept = _bands(confidence, rule)
    every_accepted, every_kept = _bands(confidence if all_confidence is None else all_confidence, rule)
    figures: dict[str, Any] = {"reference_boxes": reference_boxes, "predictions": len(confidence),
                     "accepted": int(accepted.sum()), "to_review": int((kept & ~accepted).sum()),
                     "share_auto_accepted": float(every_accepted.mean()) if len(every_accepted) else None,
                     "auto_accepted": int(every_accepted.sum()),
                     "review_load": int((every_kept & ~every_accepted).sum()), "note": ""}
    true_accepted, true_kept = int((matched & accepted).sum()), int((matched & kept).sum())
    figures |= _proportion("precision", true_accepted, int(accepted.sum()), level)
    figures |= _proportion("recall", true_accepted, reference_boxes, level)
    figures |= _proportion("precision_with_review", true_kept, int(kept.sum()), level)
    figures |= _proportion("recall_with_review", true_kept, reference_boxes, level)
    if reference_boxes < min_reference:
        for name in ("precision", "recall", "precision_with_review", "recall_with_review"):
            figures |= {name: None, f"{name}_low": None, f"{name}_high": None}
        figures["note"] = (f"only {reference_boxes} reference boxes (at least {min_reference} are needed for a "
                           "figure): import labels or review more images of this concept")
    return figures


def precision_recall_curve(confidence: np.ndarray, matched: np.ndarray, reference_boxes: int) -> pd.DataFrame:
    """Precision and recall of keeping the predictions with confidence >= each distinct confidence."""
    order = np.argsort(-confidence, kind="mergesort")
    scores, hits = confidence[order], matched[order]
    kept, true = np.arange(1, len(scores) + 1), np.cumsum(hits)
    last = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, dtype=bool)
    return pd.DataFrame({"threshold": scores[last], "precision": true[last] / kept[last],
                         "recall": true[last] / reference_boxes if reference_boxes else np.nan})


def calibrate_concept(confidence: np.ndarray, matched: np.ndarray, reference_boxes: int, rule: ConceptRule,
                      target_precision: float, level: float = 0.95, target_recall: float | None = None,
                      all_confidence: np.ndarray | None = None) -> dict[str, Any]:
    """Thresholds for one concept from its predictions on the images with reference labels.

    `upper`: scanning the thresholds (the observed confidences and 0) down from the highest, the lowest of the
    first run of thresholds whose accepted band's precision has a `level` Wilson lower bound of at least
    `target_precision` (the scan stops at the first failure below that run, so a threshold that passes by luck
    below one that fails is never chosen); None when no threshold reaches it. `lower`: the
    highest threshold at most `upper` whose accepted + review band keeps `target_recall` of the reference boxes
    (the lowest observed confidence when none does); the rule's own without a target recall. The share
    auto-accepted and the review load are those of `all_confidence` (every prediction of the concept; the
    reference images' by default) under the new thresholds."""
    upper_operator, lower_operator = rule.upper_operator, rule.lower_operator
    everything = confidence if all_confidence is None else all_confidence
    candidates = np.unique(np.r_[confidence, 0.0])
    upper, precision_low, precision = None, None, None
    for threshold in candidates[::-1]:
        band = OPERATORS[upper_operator](confidence, threshold)
        low, _ = wilson_interval(int((band & matched).sum()), int(band.sum()), level)
        if band.any() and low >= target_precision:
            upper, precision_low, precision = float(threshold), low, float(matched[band].mean())
        elif upper is not None:
            break
    lower, recall_reached = rule.lower, None
    if target_recall is not None and reference_boxes:
        ceiling = upper if upper is not None else 1.0
        meeting = [float(t) for t in candidates if t <= ceiling and
                   (matched & OPERATORS[lower_operator](confidence, t)).sum() / reference_boxes >= target_recall]
        recall_reached = bool(meeting)
        lower = max(meeting) if meeting else float(confidence.min()) if len(confidence) else 0.0
    result = {"upper": upper, "lower": lower, "expected_precision": precision,
              "expected_precision_low": precision_low, "target_recall_reached": recall_reached,
              "share_auto_accepted": None, "review_load": None}
    if upper is not None:
        proposed = rule.model_copy(update={"upper": upper, "lower": min(lower, upper)})
        accepted, kept = _bands(everything, proposed)
        result |= {"lower": proposed.lower, "share_auto_accepted": float(accepted.mean()) if len(everything)
                   else None, "review_load": int((kept & ~accepted).sum())}
    return result


def scored_by_concept(concepts: list[str], predictions: pd.DataFrame, references: pd.DataFrame,
                      iou_threshold: float = DEFAULT_IOU) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Per concept: its predictions' confidences, whether each matched, and how many reference boxes it has."""
    matched = match_predictions(predictions, references, iou_threshold)
    concept_of = predictions["concept"].to_numpy() if len(predictions) else np.zeros(0, dtype=object)
    confidence = predictions["confidence"].to_numpy(float) if len(predictions) else np.zeros(0)
    return {concept: (confidence[concept_of == concept], matched[concept_of == concept],
                      int((references["concept"] == concept).sum()) if len(references) else 0)
            for concept in concepts}


def _all_confidence(everything: pd.DataFrame, concept: str) -> np.ndarray:
    return everything.loc[everything["concept"] == concept, "confidence"].to_numpy(float)


def spot_check_estimates(outcomes: dict[str, tuple[int, int]], accepted: int, discarded: int,
                         level: float = 0.95) -> dict[str, Any]:
    """What the spot checks say about the bands no person reviews. `outcomes` per band ("accept", "discard"):
    (checks a person decided, how many of them the person kept). Kept accepted boxes estimate the accepted
    band's precision; kept discarded predictions (real objects) its miss rate. Each rate is scaled to its whole
    band (`accepted`, `discarded` predictions), which weights every checked box by the inverse of its band's
    sampling rate."""
    decided_accepted, confirmed = outcomes.get("accept", (0, 0))
    decided_discarded, missed = outcomes.get("discard", (0, 0))
    figures = {"accepted_checked": decided_accepted, "discarded_checked": decided_discarded}
    figures |= _proportion("accepted_precision", confirmed, decided_accepted, level)
    figures |= _proportion("miss_rate", missed, decided_discarded, level)
    figures["estimated_false_accepts"] = (None if figures["accepted_precision"] is None
                                          else round((1 - figures["accepted_precision"]) * accepted, 1))
    figures["estimated_misses"] = None if figures["miss_rate"] is None else round(figures["miss_rate"] * discarded, 1)
    return figures


def task_quality(rules: list[ConceptRule], predictions: pd.DataFrame, references: pd.DataFrame,
                 everything: pd.DataFrame, level: float = 0.95, iou_threshold: float = DEFAULT_IOU,
                 spot_checks: dict[str, dict[str, tuple[int, int]]] | None = None) -> dict[str, Any]:
    """Per concept: `band_quality` under its rule, with its thresholds and precision/recall curve, and what its
    spot checks (per concept and band: decided, kept) estimate."""
    scored = scored_by_concept([r.concept for r in rules], predictions, references, iou_threshold)
    report = {}
    for rule in rules:
        confidence, matched, reference_boxes = scored[rule.concept]
        every = _all_confidence(everything, rule.concept)
        figures = band_quality(confidence, matched, reference_boxes, rule, level, every)
        discarded = len(every) - figures["auto_accepted"] - figures["review_load"]
        report[rule.concept] = {
            "upper": rule.upper, "lower": rule.lower, **figures,
            "spot_checks": spot_check_estimates((spot_checks or {}).get(rule.concept, {}), figures["auto_accepted"],
                                                discarded, level),
            "curve": precision_recall_curve(confidence, matched, reference_boxes)}
    return report


def calibrate_task(rules: list[ConceptRule], predictions: pd.DataFrame, references: pd.DataFrame,
                   everything: pd.DataFrame, target_precision: float, level: float = 0.95,
                   target_recall: float | None = None, iou_threshold: float = DEFAULT_IOU) -> dict[str, Any]:
    """Per concept: `calibrate_concept`, with the rule's current thresholds beside the proposed ones and the
    number of reference boxes the proposal rests on."""
    scored = scored_by_concept([r.concept for r in rules], predictions, references, iou_threshold)
    proposal = {}
    for rule in rules:
        confidence, matched, reference_boxes = scored[rule.concept]
        base = {"current_upper": rule.upper, "current_lower": rule.lower, "reference_boxes": reference_boxes}
        if reference_boxes < MIN_REFERENCE_BOXES:
            # As `band_quality` withholds figures this thin, no threshold is proposed from them.
            proposal[rule.concept] = {
                **base, "upper": None, "lower": rule.lower, "expected_precision": None,
                "expected_precision_low": None, "target_recall_reached": None, "share_auto_accepted": None,
                "review_load": None, "note": f"only {reference_boxes} reference boxes, at least "
                                             f"{MIN_REFERENCE_BOXES} are needed to calibrate"}
            continue
        proposal[rule.concept] = {
            **base, "note": "", **calibrate_concept(confidence, matched, reference_boxes, rule, target_precision,
                                                    level, target_recall, _all_confidence(everything, rule.concept))}
    return proposal
