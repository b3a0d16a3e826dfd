"""Consensus review: several reviewers decide one doubtful image independently; what a quorum agrees on stands,
the rest goes to an adjudicator. Pure rules: who gets an image, and what K decisions resolve to."""

from __future__ import annotations

from dataclasses import dataclass
from math import sqrt
from statistics import NormalDist
from typing import Any

import numpy as np

from core.annotations import Status
from core.geometry import Box
from core.quality import iou_one_to_many, wilson_interval

ACCEPT, REJECT = "accept", "reject"


@dataclass(frozen=True)
class ReviewerDecision:
    """One reviewer's word on one item: accept (with the concept and box they left it with) or reject."""

    reviewer: str
    decision: str  # accept or reject
    concept: str
    box: Box


@dataclass(frozen=True)
class Outcome:
    """What an item's K decisions resolve to: SUCCESS (with the quorum's concept and box: the mean of the
    matched boxes), REJECTED, or AWAITING_CONSENSUS_REVIEW (the adjudicator's); who agreed, and the matched boxes'
    mean pairwise IoU (None without two boxes)."""

    status: str
    concept: str
    box: Box
    agreeing: tuple[str, ...]
    mean_iou: float | None
    reason: str


def assign_reviewers_k(existing: dict[str, list[str]], needing: list[str], reviewers: list[str],
                       k: int) -> dict[str, list[str]]:
    """For each input in `needing`, the reviewers it still needs to reach `k` distinct ones: each goes to the
    reviewer holding the fewest images (ties by the task's reviewer order), so that the counts differ by at most
    one. Existing assignments never move."""
    load = {reviewer: 0 for reviewer in reviewers}
    for held in existing.values():
        for reviewer in held:
            if reviewer in load:
                load[reviewer] += 1
    fresh: dict[str, list[str]] = {}
    for input_id in sorted(set(needing)):
        have = list(existing.get(input_id, []))
        added: list[str] = []
        while len(have) + len(added) < min(k, len(reviewers)):
            reviewer = min((r for r in reviewers if r not in have and r not in added),
                           key=lambda r: (load[r], reviewers.index(r)))
            added.append(reviewer)
            load[reviewer] += 1
        if added:
            fresh[input_id] = added
    return fresh


def box_iou(a: Box, b: Box) -> float:
    return float(iou_one_to_many(np.asarray(a, dtype=float), np.asarray([b], dtype=float))[0])


def mean_box(boxes: list[Box]) -> Box:
    return Box(*(sum(values) / len(values) for values in zip(*boxes, strict=True)))


def _mean_pairwise_iou(boxes: list[Box]) -> float | None:
    pairs = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]]
    return sum(box_iou(a, b) for a, b in pairs) / len(pairs) if pairs else None


def resolve_item(decisions: list[ReviewerDecision], quorum: int, agreement_iou: float,
                 original: tuple[str, Box]) -> Outcome:
    """An item every assigned reviewer decided: SUCCESS when a quorum accepts it with the same concept and boxes
    that all overlap by at least `agreement_iou` (the quorum's box is the mean of theirs), REJECTED when a quorum
    rejects it, otherwise AWAITING_CONSENSUS_REVIEW with the reason."""
    rejecting = tuple(d.reviewer for d in decisions if d.decision == REJECT)
    if len(rejecting) >= quorum:
        return Outcome(Status.REJECTED, original[0], original[1], rejecting, None, f"{len(rejecting)} rejected it")
    accepting = [d for d in decisions if d.decision == ACCEPT]
    by_concept: dict[str, list[ReviewerDecision]] = {}
    for decision in accepting:
        by_concept.setdefault(decision.concept, []).append(decision)
    for concept, group in sorted(by_concept.items(), key=lambda item: -len(item[1])):
        if len(group) < quorum:
            break
        boxes = [d.box for d in group]
        if all(box_iou(a, b) >= agreement_iou for i, a in enumerate(boxes) for b in boxes[i + 1:]):
            return Outcome(Status.SUCCESS, concept, mean_box(boxes), tuple(d.reviewer for d in group),
                           _mean_pairwise_iou(boxes), f"{len(group)} accepted it as {concept}")
        return Outcome(Status.AWAITING_CONSENSUS_REVIEW, original[0], original[1], (), _mean_pairwise_iou(boxes),
                       f"{len(group)} accepted it as {concept} with boxes overlapping less than {agreement_iou}")
    concepts = sorted(by_concept)
    reason = (f"the decisions split ({len(accepting)} accepted, {len(rejecting)} rejected)"
              if len(concepts) <= 1 else f"they accepted it as different concepts ({', '.join(concepts)})")
    return Outcome(Status.AWAITING_CONSENSUS_REVIEW, original[0], original[1], (), None, reason)


def group_drawn(proposals: list[ReviewerDecision], agreement_iou: float) -> list[list[ReviewerDecision]]:
    """Boxes reviewers drew on one image, matched across reviewers one-to-one: each proposal joins the first
    group of its concept holding no box of the same reviewer whose every box it overlaps by `agreement_iou`."""
    groups: list[list[ReviewerDecision]] = []
    for proposal in proposals:
        for group in groups:
            if (group[0].concept == proposal.concept and all(d.reviewer != proposal.reviewer for d in group)
                    and all(box_iou(d.box, proposal.box) >= agreement_iou for d in group)):
                group.append(proposal)
                break
        else:
            groups.append([proposal])
    return groups


def cohen_kappa(first: list[bool], second: list[bool], confidence: float = 0.95
                ) -> tuple[float | None, float | None, float | None]:
    """Cohen's kappa of two raters' accept (True) / reject (False) decisions on the same items, with the normal
    approximation's interval (Cohen 1960: se = sqrt(po (1 - po) / (n (1 - pe)^2))); None without items, or
    when chance agreement is certain (both always gave one answer)."""
    n = len(first)
    if n == 0:
        return None, None, None
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    p1, p2 = sum(first) / n, sum(second) / n
    expected = p1 * p2 + (1 - p1) * (1 - p2)
    if expected == 1:
        return None, None, None
    kappa = (observed - expected) / (1 - expected)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    half = z * sqrt(observed * (1 - observed) / (n * (1 - expected) ** 2))
    return kappa, max(-1.0, kappa - half), min(1.0, kappa + half)


def agreement_figures(decisions: list[dict[str, Any]], finals: dict[str, str],
                      confidence: float = 0.95) -> dict[str, Any]:
    """How often each reviewer agrees with the resolved outcome (overall and per concept, Wilson intervals) and
    with each other reviewer (Cohen's kappa on accept/reject, and the mean IoU of the boxes both accepted).
    `decisions`: annotation_id, reviewer, decision, concept, x1..y2; `finals`: each resolved item's final status
    (SUCCESS or REJECTED, the adjudicator's where there was one). A reviewer whose agreement's upper bound lies
    below every other reviewer's rate is named in `far_below`."""
    resolved = [d for d in decisions if d["decision"] != "draw" and d["annotation_id"] in finals]
    per_reviewer: dict[str, dict[str, Any]] = {}
    for reviewer in sorted({d["reviewer"] for d in resolved}):
        mine = [d for d in resolved if d["reviewer"] == reviewer]
        agreeing = [(d["decision"] == ACCEPT) == (finals[d["annotation_id"]] == Status.SUCCESS) for d in mine]
        low, high = wilson_interval(sum(agreeing), len(agreeing), confidence)
        concepts = {}
        for concept in sorted({d["concept"] for d in mine}):
            hits = [a for d, a in zip(mine, agreeing, strict=True) if d["concept"] == concept]
            c_low, c_high = wilson_interval(sum(hits), len(hits), confidence)
            concepts[concept] = {"items": len(hits), "agreement": sum(hits) / len(hits), "low": c_low,
                                 "high": c_high}
        per_reviewer[reviewer] = {"items": len(mine), "agreement": sum(agreeing) / len(mine), "low": low,
                                  "high": high, "per_concept": concepts}
    pairs: dict[str, dict[str, Any]] = {}
    by_item: dict[str, dict[str, dict[str, Any]]] = {}
    for d in resolved:
        by_item.setdefault(d["annotation_id"], {})[d["reviewer"]] = d
    reviewers = sorted(per_reviewer)
    for i, a in enumerate(reviewers):
        for b in reviewers[i + 1:]:
            shared = [(item[a], item[b]) for item in by_item.values() if a in item and b in item]
            kappa, kappa_low, kappa_high = cohen_kappa([x["decision"] == ACCEPT for x, _ in shared],
                                                       [y["decision"] == ACCEPT for _, y in shared], confidence)
            ious = [box_iou(Box(x["x1"], x["y1"], x["x2"], x["y2"]), Box(y["x1"], y["y1"], y["x2"], y["y2"]))
                    for x, y in shared if x["decision"] == ACCEPT == y["decision"]]
            pairs[f"{a}/{b}"] = {"items": len(shared), "kappa": kappa, "kappa_low": kappa_low, "kappa_high": kappa_high,
                                 "mean_iou": sum(ious) / len(ious) if ious else None, "boxes_both_accepted": len(ious)}
    far_below = [r for r, f in per_reviewer.items() if len(per_reviewer) > 1
                 and all(f["high"] < other["agreement"] for o, other in per_reviewer.items() if o != r)]
    return {"reviewers": per_reviewer, "pairs": pairs, "far_below": far_below}
