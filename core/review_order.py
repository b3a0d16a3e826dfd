"""Which images a reviewer sees first, under a budget: the most doubtful (`doubt`), the ones that cover the image
embedding space best (`diverse`: k-center greedy, the core-set choice of Sener and Savarese), or a trade of the two
(`mixed`). Pure functions over embeddings and doubts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REVIEW_ORDERS = ("doubt", "diverse", "mixed")
MIXED_COVERAGE_WEIGHT = 0.5  # `mixed`: equal parts doubt and coverage, each scaled to [0, 1] at every pick


@dataclass(frozen=True)
class Pick:
    """One chosen image: its position among the candidates, its doubt (distance of its most doubtful box to a
    threshold: smaller is more doubtful; None when it has none), and its distance to the nearest image chosen or
    labelled before it (None under `doubt`, or with nothing to measure from)."""

    index: int
    doubt: float | None
    distance: float | None


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, so distances compare directions (the pooled features' scale varies by image)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _nearest(points: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Each point's distance to its nearest center (inf without centers)."""
    if len(centers) == 0:
        return np.full(len(points), np.inf, dtype=np.float32)
    nearest = np.full(len(points), np.inf, dtype=np.float32)
    for start in range(0, len(centers), 1024):  # bounded memory for a large labelled set
        block = centers[start:start + 1024]
        squared = (points ** 2).sum(1)[:, None] + (block ** 2).sum(1)[None, :] - 2 * points @ block.T
        nearest = np.minimum(nearest, np.sqrt(np.clip(squared, 0, None)).min(axis=1))
    return nearest


def order_for_review(order: str, budget: int, doubts: list[float | None], vectors: np.ndarray | None = None,
                     labelled: np.ndarray | None = None) -> list[Pick]:
    """The first `budget` candidates in `order`. `doubts`: per candidate; `vectors`: their embeddings (unit rows),
    `labelled`: the embeddings of images people already labelled (what is covered before any pick).

    `diverse` picks, each time, the candidate farthest from every image labelled or picked so far (with nothing
    labelled, the first pick is the one farthest from the candidates' mean); `mixed` the candidate with the
    highest (1 - w) x doubtfulness + w x coverage, doubtfulness being 1 - doubt / the largest doubt and coverage
    the distance / the largest distance, both among the candidates left. Ties go to the lower position."""
    count = min(budget, len(doubts))
    doubt = np.array([np.inf if d is None else d for d in doubts], dtype=float)
    if order == "doubt" or vectors is None or count == 0:
        chosen = np.lexsort((np.arange(len(doubt)), doubt))[:count]
        return [Pick(int(i), doubts[i], None) for i in chosen]
    points = unit_rows(vectors)
    covered = np.zeros((0, points.shape[1]), dtype=np.float32) if labelled is None or len(labelled) == 0 \
        else unit_rows(labelled)
    nearest = _nearest(points, covered)
    from_mean = len(covered) == 0  # the mean only seeds the first pick; it covers nothing
    if from_mean:
        nearest = np.linalg.norm(points - points.mean(axis=0), axis=1).astype(np.float32)
    finite_doubt = np.where(np.isfinite(doubt), doubt, np.nan)
    left = np.ones(len(points), dtype=bool)
    picks = []
    for _ in range(count):
        if order == "diverse":
            score = nearest.astype(float)
        else:
            top = np.nanmax(np.where(left, finite_doubt, np.nan)) if np.isfinite(finite_doubt[left]).any() else 0.0
            doubtful = np.where(np.isnan(finite_doubt), 0.0, 1 - finite_doubt / top if top > 0 else 1.0)
            far = nearest[left].max()
            coverage = nearest / far if far > 0 else np.zeros(len(points))
            score = (1 - MIXED_COVERAGE_WEIGHT) * doubtful + MIXED_COVERAGE_WEIGHT * coverage
        score = np.where(left, score, -np.inf)
        best = int(np.argmax(score))
        picks.append(Pick(best, doubts[best], float(nearest[best])))
        left[best] = False
        to_pick = _nearest(points, points[best:best + 1])
        nearest, from_mean = (to_pick if from_mean else np.minimum(nearest, to_pick)), False
    return picks
