"""Label audits: which of people's labels are likely wrong, judged by a detector's predictions on the same images;
and which images to review next under a budget (doubt, coverage of the embedding space, or both). Pure functions.

The three per-box scores are cleanlab's object-detection label-quality scores (`cleanlab.object_detection.rank`):
`overlooked` (a confident prediction no label of its concept covers: a missed object), `swap` (a confident
prediction of another concept on the label: a wrong concept) and `badloc` (the label's best prediction of its own
concept overlaps it poorly: a bad box). Each is in [0, 1], low meaning likely wrong; a finding's score is
1 - that. cleanlab does not look for a label given twice, so duplicates are found here: two labels of one concept
on one image overlapping by at least `duplicate_iou`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from core.geometry import Box
from core.quality import BOX, iou_one_to_many

DUPLICATE_IOU = 0.9
MIN_SCORE = 0.5  # a finding is reported when its score (1 - cleanlab's score) reaches this
# cleanlab's weight of the IoU against the distance between box centres in its similarity (its own default).
ALPHA = 0.9


class FindingKind(StrEnum):
    MISSED_OBJECT = "missed object"
    WRONG_CONCEPT = "wrong concept"
    BAD_BOX = "bad box"
    DUPLICATE = "duplicate label"


@dataclass(frozen=True)
class Finding:
    """One suspected label error: `annotation_id` is the label (none for a missed object, whose box is the
    prediction's); `evidence` says what the auditor saw, in words."""

    kind: FindingKind
    input_id: str
    annotation_id: str | None
    concept: str
    box: Box
    score: float
    evidence: str
    predicted_concept: str | None = None
    confidence: float | None = None
    prediction_id: str | None = None

    @property
    def reason(self) -> str:
        """What the review page shows."""
        return f"suspected: {self.kind}"

    def as_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["kind"], row["box"], row["reason"] = str(self.kind), list(self.box), self.reason
        return row


def _cleanlab_inputs(labels: pd.DataFrame, predictions: pd.DataFrame, images: list[str], concepts: list[str],
                     sizes: dict[str, tuple[int, int]]) -> tuple[list[dict[str, np.ndarray]], list[np.ndarray]]:
    """cleanlab's per-image labels ({'bboxes': (L, 4) pixels, 'labels': (L,) class ids}) and predictions (one
    (K, 5) array of x1, y1, x2, y2, confidence per class). Pixels: its similarity also weighs the distance between
    box centres, which normalised coordinates would shrink to nothing."""
    index = {concept: i for i, concept in enumerate(concepts)}
    by_image_labels = dict(tuple(labels.groupby("input_id", sort=False))) if len(labels) else {}
    by_image_predictions = dict(tuple(predictions.groupby("input_id", sort=False))) if len(predictions) else {}
    cl_labels, cl_predictions = [], []
    for input_id in images:
        scale = np.array(sizes[input_id] * 2, dtype=float)
        own = by_image_labels.get(input_id, labels.iloc[:0])
        cl_labels.append({"bboxes": own[BOX].to_numpy(float).reshape(-1, 4) * scale,
                          "labels": own["concept"].map(index).to_numpy(int)})
        found = by_image_predictions.get(input_id, predictions.iloc[:0])
        per_class = np.empty(len(concepts), dtype=object)
        for concept, i in index.items():
            rows = found[found["concept"] == concept]
            per_class[i] = np.column_stack([rows[BOX].to_numpy(float).reshape(-1, 4) * scale,
                                            rows["confidence"].to_numpy(float)]).reshape(-1, 5)
        cl_predictions.append(per_class)
    return cl_labels, cl_predictions


def box_scores(labels: pd.DataFrame, predictions: pd.DataFrame, images: list[str], concepts: list[str],
               sizes: dict[str, tuple[int, int]], confident: float) -> dict[str, list[np.ndarray]]:
    """cleanlab's `overlooked` (per prediction, NaN where it is no candidate), `swap` and `badloc` (per label)
    scores of each image, in the row order of each image's rows in `predictions` and `labels`. `confident`: how
    sure a prediction must be to say an object was missed or another concept is there."""
    from cleanlab.object_detection.rank import (
        compute_badloc_box_scores,
        compute_overlooked_box_scores,
        compute_swap_box_scores,
    )

    cl_labels, cl_predictions = _cleanlab_inputs(labels, predictions, images, concepts, sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns of every image without predictions
        return {
            "overlooked": compute_overlooked_box_scores(labels=cl_labels, predictions=cl_predictions, alpha=ALPHA,
                                                        high_probability_threshold=confident),
            "swap": compute_swap_box_scores(labels=cl_labels, predictions=cl_predictions, alpha=ALPHA,
                                            high_probability_threshold=confident),
            "badloc": compute_badloc_box_scores(labels=cl_labels, predictions=cl_predictions, alpha=ALPHA,
                                                low_probability_threshold=confident),
        }


def _per_class_order(found: pd.DataFrame, concepts: list[str]) -> pd.DataFrame:
    """An image's predictions in cleanlab's flattened order: class by class, each in its row order."""
    return pd.concat([found[found["concept"] == concept] for concept in concepts]) if len(found) else found


def _best(box: np.ndarray, others: pd.DataFrame) -> tuple[int | None, float]:
    """The row (position) of `others` overlapping `box` most, and that IoU."""
    if others.empty:
        return None, 0.0
    overlaps = iou_one_to_many(box, others[BOX].to_numpy(float))
    best = int(np.argmax(overlaps))
    return best, float(overlaps[best])


def _duplicates(people: pd.DataFrame, duplicate_iou: float) -> Iterable[Finding]:
    """The later of two labels of one concept on one image that overlap by `duplicate_iou` or more."""
    ordered = people.sort_values(["input_id", "concept", "event_at", "annotation_id"], kind="mergesort")
    for (_, _), group in ordered.groupby(["input_id", "concept"], sort=False):
        boxes = group[BOX].to_numpy(float)
        for later in range(1, len(group)):
            overlaps = iou_one_to_many(boxes[later], boxes[:later])
            earlier = int(np.argmax(overlaps))
            if overlaps[earlier] >= duplicate_iou:
                row, first = group.iloc[later], group.iloc[earlier]
                yield Finding(FindingKind.DUPLICATE, row["input_id"], row["annotation_id"], row["concept"],
                              Box(*boxes[later]), round(float(overlaps[earlier]), 4),
                              f"the same {row['concept']} as label {first['annotation_id'][:12]} (IoU "
                              f"{overlaps[earlier]:.2f})")


def audit_labels(labels: pd.DataFrame, predictions: pd.DataFrame, sizes: dict[str, tuple[int, int]],
                 concepts: list[str], confident: float, min_score: float = MIN_SCORE,
                 duplicate_iou: float = DUPLICATE_IOU) -> list[Finding]:
    """Every suspected error among people's labels, most likely first.

    `labels`: every held label of the audited images (annotation_id, input_id, concept, x1..y2, event_at, and
    `audited`: whether it is a person's label, the ones judged; the others, auto-accepted or waiting, still count
    as covering their objects). `predictions`: the auditor's (input_id, concept, confidence, x1..y2,
    prediction_id), normalised boxes. `sizes`: each audited image's (width, height); an image with no label is
    audited for missed objects only. One label gets one finding: its most likely kind."""
    images = sorted(sizes)
    labels = labels[labels["input_id"].isin(images) & labels["concept"].isin(concepts)].reset_index(drop=True)
    predictions = predictions[predictions["input_id"].isin(images)
                              & predictions["concept"].isin(concepts)].reset_index(drop=True)
    scores = box_scores(labels, predictions, images, concepts, sizes, confident)
    by_label, missed = {}, []
    for position, input_id in enumerate(images):
        own = labels[labels["input_id"] == input_id]
        found = _per_class_order(predictions[predictions["input_id"] == input_id], concepts)
        for row, swap, badloc in zip(own.itertuples(), scores["swap"][position], scores["badloc"][position],
                                     strict=True):
            if not row.audited:
                continue
            box = np.array([row.x1, row.y1, row.x2, row.y2], dtype=float)
            if 1 - swap >= min_score and (1 - swap) >= (1 - badloc):
                others = found[found["concept"] != row.concept]
                best, overlap = _best(box, others[others["confidence"] >= confident])
                if best is None:
                    continue
                other = others[others["confidence"] >= confident].iloc[best]
                by_label[row.annotation_id] = Finding(
                    FindingKind.WRONG_CONCEPT, input_id, row.annotation_id, row.concept, Box(*box),
                    round(1 - float(swap), 4), f"labelled {row.concept}; the model says {other['concept']} at "
                    f"{other['confidence']:.2f} (IoU {overlap:.2f})", other["concept"],
                    float(other["confidence"]), other.get("prediction_id"))
            elif 1 - badloc >= min_score:
                best, overlap = _best(box, found[found["concept"] == row.concept])
                evidence = (f"the model's closest {row.concept} overlaps it by IoU {overlap:.2f}" if best is not None
                            else f"the model finds no {row.concept} on the image")
                by_label[row.annotation_id] = Finding(FindingKind.BAD_BOX, input_id, row.annotation_id, row.concept,
                                                      Box(*box), round(1 - float(badloc), 4), evidence)
        for prediction, overlooked in zip(found.itertuples(), scores["overlooked"][position], strict=True):
            if np.isnan(overlooked) or 1 - overlooked < min_score:
                continue
            box = np.array([prediction.x1, prediction.y1, prediction.x2, prediction.y2], dtype=float)
            # A prediction on a label of another concept is that label's wrong-concept finding, not a miss.
            swapped = [f for f in by_label.values() if f.input_id == input_id and f.kind == FindingKind.WRONG_CONCEPT
                       and f.predicted_concept == prediction.concept
                       and iou_one_to_many(box, np.array([f.box], dtype=float))[0] >= 0.5]
            if swapped:
                continue
            missed.append(Finding(FindingKind.MISSED_OBJECT, input_id, None, prediction.concept, Box(*box),
                                  round(1 - float(overlooked), 4), f"the model finds a {prediction.concept} at "
                                  f"{prediction.confidence:.2f} that no label covers", prediction.concept,
                                  float(prediction.confidence), getattr(prediction, "prediction_id", None)))
    people = labels[labels["audited"]]
    duplicates = [f for f in _duplicates(people, duplicate_iou)]
    for finding in duplicates:  # a duplicate is that, whatever else its box looks like
        by_label[finding.annotation_id] = finding
    return rank_findings([*by_label.values(), *missed])


def rank_findings(findings: list[Finding]) -> list[Finding]:
    """Most likely wrong first; ties broken by image, kind and label so the order is the same every time."""
    return sorted(findings, key=lambda f: (-f.score, f.input_id, str(f.kind), f.annotation_id or "", f.box))


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    return pd.DataFrame([f.as_dict() for f in findings])


def top_k_precision_recall(findings: list[Finding], injected: dict[FindingKind, set[tuple[str, ...]]], k: int,
                           key_of: Any) -> dict[str, dict[str, float | int]]:
    """Per kind: precision and recall of the kind's top `k` findings against the errors injected of that kind;
    `key_of(finding)` gives the key `injected` holds for the error a finding points at."""
    figures = {}
    for kind, truth in injected.items():
        top = [f for f in findings if f.kind == kind][:k]
        hits = sum(1 for f in top if key_of(f) in truth)
        found = {key_of(f) for f in top} & truth
        figures[str(kind)] = {"injected": len(truth), "top_k": len(top), "hits": hits,
                              "precision": round(hits / len(top), 4) if top else 0.0,
                              "recall": round(len(found) / len(truth), 4) if truth else 0.0}
    return figures
