"""The context-based concept classifier: one L2-regularised logistic regression per image-level concept over an
image's embedding, trained on the images people labelled (multi-label: an image may have several concepts).

Pure numpy: training on a few hundred labelled images takes well under a second, and the same labels and
embeddings always give the same bytes, so a classifier is identified by the sha256 of its file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

NEWTON_STEPS = 50


@dataclass(frozen=True)
class ConceptClassifier:
    backbone_id: str  # the weights whose embeddings it reads
    concepts: list[str]
    mean: np.ndarray  # standardisation of the embedding, learned from the labelled images
    scale: np.ndarray
    weights: np.ndarray  # (concepts, dimensions)
    bias: np.ndarray  # (concepts,)
    labels: dict[str, dict[str, int]]  # concept -> {"positive": n, "negative": m} it learned from

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Probability of every concept (columns) for every embedding (rows)."""
        standard = (np.asarray(embeddings, dtype=float) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(standard @ self.weights.T + self.bias)))

    def to_bytes(self) -> bytes:
        return json.dumps({
            "backbone_id": self.backbone_id, "concepts": self.concepts, "labels": self.labels,
            "mean": self.mean.tolist(), "scale": self.scale.tolist(), "weights": self.weights.tolist(),
            "bias": self.bias.tolist()}, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ConceptClassifier:
        about = json.loads(data)
        return cls(about["backbone_id"], about["concepts"], np.array(about["mean"]), np.array(about["scale"]),
                   np.array(about["weights"]).reshape(len(about["concepts"]), -1), np.array(about["bias"]),
                   about["labels"])


def fit_logistic(features: np.ndarray, targets: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularised logistic regression (bias not penalised), by Newton's method from
    zero: deterministic, and exact in a few steps at these sizes."""
    rows, dimensions = features.shape
    design = np.hstack([features, np.ones((rows, 1))])
    penalty = l2 * np.eye(dimensions + 1)
    penalty[-1, -1] = 0.0
    w = np.zeros(dimensions + 1)
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(design @ w)))
        gradient = design.T @ (p - targets) + penalty @ w
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + penalty + 1e-9 * np.eye(dimensions + 1)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w[:-1], float(w[-1])


def learnable_concepts(labels: dict[str, np.ndarray]) -> list[str]:
    """Concepts with at least one positive and one negative labelled image (a classifier needs both)."""
    return [c for c, y in labels.items() if 0 < int(np.sum(y)) < len(y)]


def train_concept_classifier(embeddings: np.ndarray, labels: dict[str, np.ndarray], backbone_id: str,
                             l2: float = 1.0) -> ConceptClassifier | None:
    """A classifier of every learnable concept in `labels` (concept -> 0/1 per embedding row); None when no concept
    has both a positive and a negative image yet."""
    concepts = learnable_concepts(labels)
    if not concepts:
        return None
    embeddings = np.asarray(embeddings, dtype=float)
    mean, scale = embeddings.mean(axis=0), embeddings.std(axis=0) + 1e-6
    standard = (embeddings - mean) / scale
    fitted = [fit_logistic(standard, np.asarray(labels[c], dtype=float), l2) for c in concepts]
    counts = {c: {"positive": int(np.sum(labels[c])), "negative": int(len(labels[c]) - np.sum(labels[c]))}
              for c in concepts}
    return ConceptClassifier(backbone_id, concepts, mean, scale, np.array([w for w, _ in fitted]),
                             np.array([b for _, b in fitted]), counts)


def concept_accuracy(classifier: ConceptClassifier, embeddings: np.ndarray, labels: dict[str, np.ndarray],
                     threshold: float = 0.5) -> dict[str, float]:
    """Share of images whose concept the classifier gets right at `threshold`, per concept it learned."""
    scores = classifier.scores(embeddings)
    return {c: float(np.mean((scores[:, i] > threshold) == np.asarray(labels[c], dtype=bool)))
            for i, c in enumerate(classifier.concepts) if c in labels}


def label_targets(labels: pd.DataFrame) -> tuple[list[str], dict[str, np.ndarray]]:
    """The labelled inputs (sorted) and, per concept, whether each has it, from `(input_id, concept, positive)`
    rows."""
    if labels.empty:
        return [], {}
    input_ids = sorted(labels["input_id"].unique())
    by_concept = labels.pivot(index="input_id", columns="concept", values="positive").reindex(input_ids)
    return input_ids, {c: by_concept[c].to_numpy(dtype=bool) for c in by_concept.columns}


def labels_key(labels: pd.DataFrame, backbone: str) -> str | None:
    """One hash of what a context-based classifier learns from: the labels (`(input_id, concept, positive)`
    rows) and the backbone configuration. Concept scores made under another key are stale; None while no concept
    can be learned yet."""
    if not learnable_concepts(label_targets(labels)[1]):
        return None
    rows = sorted(labels[["input_id", "concept", "positive"]].itertuples(index=False, name=None))
    return hashlib.sha256(json.dumps([backbone, [[i, c, bool(p)] for i, c, p in rows]]).encode()).hexdigest()
