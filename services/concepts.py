"""Image-level concepts: the context-based classifier a task learns from people's labels (embeddings computed
once and stored), the concept scores of a batch, and which classifiers' scores count for a task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from core.annotations import WHOLE_IMAGE
from core.concepts import ConceptClassifier, concept_accuracy, label_targets, labels_key, train_concept_classifier
from core.image_checks import load_oriented_bgr
from core.task_config import LabelingTask
from engines.base import Detection, model_ref
from services.ports import StoredImages, UnitsOfWork
from store.predictions import prediction_rows
from store.tables import PREDICTIONS


class ConceptModelFiles(Protocol):
    """The task's concept models: backbones that embed an image, -cls weights, stored classifiers."""

    def backbone(self, path: Path, imgsz: int = 0) -> Any: ...

    def top_classes(self, path: Path, images_bgr: list[np.ndarray], top_k: int, imgsz: int = 0
                    ) -> tuple[str, list[str], list[list[tuple[str, float]]]]: ...

    def save(self, classifier: ConceptClassifier) -> tuple[str, str]: ...

    def load(self, location: str) -> ConceptClassifier: ...


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class TrainedClassifier:
    model_id: str
    classifier: ConceptClassifier
    labelled_images: int
    training_accuracy: dict[str, float]


def embed_inputs(store: UnitsOfWork, images: StoredImages, models: ConceptModelFiles, task: LabelingTask,
                 input_ids: list[str], log: Callable[[str], object] = print,
                 backbone_path: Path | None = None) -> tuple[str, np.ndarray]:
    """(backbone id, one embedding row per input) by the task's context-based classifier's backbone, or by the
    weights at `backbone_path` (at the size they were trained at); embeddings already stored are read, the others
    computed once and stored."""
    backbone = (models.backbone(backbone_path) if backbone_path is not None
                else models.backbone(task.classifier_path(), task.classifier.imgsz))
    known = store.read(lambda s: s.concepts.embeddings(backbone.model_id, input_ids))
    fresh = []
    for done, input_id in enumerate([i for i in input_ids if i not in known], 1):
        known[input_id] = backbone.embed(load_oriented_bgr(images.read(input_id)))
        fresh.append({"input_id": input_id, "model_id": backbone.model_id, "vector": known[input_id].tolist(),
                      "embedded_at": _now()})
        if done % 100 == 0:
            log(f"{task.name}: embedded {done} images")
    if fresh:
        store.write(lambda s: s.concepts.store_embeddings(fresh))
    return backbone.model_id, np.stack([known[i] for i in input_ids]) if input_ids else np.zeros((0, 0))


def train_task_classifier(store: UnitsOfWork, images: StoredImages, models: ConceptModelFiles, task: LabelingTask,
                          log: Callable[[str], object] = print) -> TrainedClassifier | None:
    """The task's context-based classifier, learned from every image people gave image-level concepts, stored
    content-addressed and registered in `models`; None while no concept has a positive and a negative image."""
    labels, key = context_labels(store, task)
    if key is None:
        return None
    input_ids, targets = label_targets(labels)
    backbone_id, vectors = embed_inputs(store, images, models, task, input_ids, log)
    # The same labels give the same classifier: read it instead of fitting it again for every batch.
    learned = store.read(lambda s: s.concepts.classifier_learned_from(task.name, key))
    if learned:
        model_id, path = learned
        classifier = models.load(path)
    else:
        classifier = train_concept_classifier(vectors, targets, backbone_id)
        model_id, path = models.save(classifier)
        details = {"task": task.name, "backbone_id": backbone_id, "labels": classifier.labels,
                   "labelled_images": len(input_ids)}

        def register(s) -> None:
            s.predictions.register_model(model_id, path.rsplit("/", 1)[-1], path, "context", classifier.concepts,
                                         _now(), details)
            s.concepts.add_labels_key(model_id, key)

        store.write(register)
    return TrainedClassifier(model_id, classifier, len(input_ids), concept_accuracy(classifier, vectors, targets))


def whole_image_detections(scores: list[tuple[str, float]]) -> list[Detection]:
    """One image's concept scores as detections whose box is the whole image (how they are stored and routed)."""
    box = WHOLE_IMAGE
    return [Detection(name, float(score), box.x1, box.y1, box.x2, box.y2, None) for name, score in scores]



def whole_image_rows(batch: str, model_id: str, input_id: str, scores: list[tuple[str, float]],
                     now: datetime) -> list[dict]:
    """Rows of `predictions` for one image's concept scores: predictions whose box is the whole image."""
    return prediction_rows(batch, model_id, input_id, whole_image_detections(scores), now)


def score_batch(store: UnitsOfWork, images: StoredImages, models: ConceptModelFiles, task: LabelingTask,
                input_ids: list[str], batch: str, trained: dict, log: Callable[[str], object]) -> dict:
    """Score the batch's inputs with the task's classifier and store the scores; returns what was done.
    `trained` is what `concept_classifier` recorded for the task (context-based classifiers only)."""
    now = _now()
    if task.classifier.kind == "classify":
        path = task.classifier_path()
        arrays = [load_oriented_bgr(images.read(i)) for i in input_ids]
        model_id, names, found = models.top_classes(path, arrays, task.classifier.top_k, task.classifier.imgsz)
        rows = [r for i, scores in zip(input_ids, found, strict=True)
                for r in whole_image_rows(batch, model_id, i, scores, now)]
        register = {"name": path.name, "path": str(path), "task_type": "classify", "class_names": names}
    else:
        model_id = trained.get("model_id")
        if model_id is None:
            return {"model_id": None, "scored_images": 0,
                    "why": trained.get("why", f"concept_classifier has not run for batch {batch}")}
        classifier = models.load(store.read(lambda s: s.predictions.model_path(model_id)))
        _, vectors = embed_inputs(store, images, models, task, input_ids, log)
        scores = classifier.scores(vectors) if input_ids else np.zeros((0, len(classifier.concepts)))
        rows = [r for i, row in zip(input_ids, scores, strict=True)
                for r in whole_image_rows(batch, model_id, i, list(zip(classifier.concepts, row)), now)]
        register = None
    frame = pd.DataFrame(rows, columns=[c.name for c in PREDICTIONS.columns])
    processed = pd.DataFrame([{"input_id": i, "model_id": model_id, "batch": batch,
                               "prediction_count": int((frame["input_id"] == i).sum()), "processed_at": now}
                              for i in input_ids])

    def write(s) -> None:
        if register:
            s.predictions.register_model(model_id, register["name"], register["path"], register["task_type"],
                                         register["class_names"], now)
        s.concepts.replace_batch_scores(task.name, batch, model_id, frame, processed)

    store.write(write)
    return {"model_id": model_id, "scored_images": len(input_ids), "scores": len(frame)}


def context_labels(store: UnitsOfWork, task: LabelingTask) -> tuple[pd.DataFrame, str | None]:
    """The labels the task's context-based classifier learns from, and their key (`core.concepts.labels_key`,
    with the backbone's weights and size)."""
    labels = store.read(lambda s: s.concepts.labels(task.name, task.image_concepts))
    return labels, labels_key(labels, f"{model_ref(task.classifier_path()).model_id}|imgsz={task.classifier.imgsz}")


@dataclass(frozen=True)
class ConceptScorer:
    """Which models' concept scores count for a task: `current`, the classification weights (sha256) or the
    context-based classifier the labels as they are now give (while that is not trained yet, the labels' key,
    which no scores carry); `counted`, those and every earlier classifier the task learned."""

    current: str
    counted: frozenset[str]


def concept_scorers(store: UnitsOfWork, tasks: list[LabelingTask]) -> dict[str, ConceptScorer]:
    """Per task with a classifier, the models whose concept scores count (`ConceptScorer`). A batch whose inputs
    the counted ones have not all scored is not finished; one scored by an earlier classifier than the current
    one is what `run --rescore` scores again. Tasks that cannot score yet (no concept has a positive and a
    negative label) are left out."""
    scorers = {}
    for task in tasks:
        if task.classifier is None:
            continue
        if task.classifier.kind == "classify":
            weights = model_ref(task.classifier_path()).model_id
            scorers[task.name] = ConceptScorer(weights, frozenset({weights}))
            continue
        _, key = context_labels(store, task)
        if key is None:
            continue

        def current_and_earlier(s, t=task, k=key) -> tuple[str, list[str]]:
            learned = s.concepts.classifier_learned_from(t.name, k)
            return (learned[0] if learned else k), s.concepts.classifier_ids(t.name)

        current, earlier = store.read(current_and_earlier)
        scorers[task.name] = ConceptScorer(current, frozenset({current, *earlier}))
    return scorers
