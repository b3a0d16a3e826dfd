"""Similar objects ("more like this"): an embedding per object crop, by the task's detector's own backbone, stored
once per annotation and backbone, and the nearest objects of the task by cosine similarity."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from core.image_checks import crop_region, load_oriented_bgr
from core.task_config import LabelingTask
from services.ports import StoredImages, UnitsOfWork

# Objects are embedded at this size: a crop is small, and the embedding at another size is another embedding.
CROP_IMGSZ = 128


class Embedder(Protocol):
    model_id: str

    def embed(self, image_bgr: np.ndarray) -> np.ndarray: ...


class Backbones(Protocol):
    def backbone(self, path: Any, imgsz: int = 0) -> Embedder: ...


def object_backbone(models: Backbones, task: LabelingTask, weights: Any) -> Embedder:
    """The backbone objects of `task` are embedded by: its classifier's backbone when it has a context-based one,
    else the detector's own weights."""
    if task.classifier is not None and task.classifier.kind == "context":
        return models.backbone(task.classifier_path(), CROP_IMGSZ)
    return models.backbone(weights, CROP_IMGSZ)


def embed_objects(store: UnitsOfWork, images: StoredImages, backbone: Embedder, task: LabelingTask,
                  log: Callable[[str], object] = print) -> int:
    """Embed every live object of the task that has no embedding by this backbone yet; returns how many."""
    missing = store.read(lambda s: s.objects.unembedded(task.name, backbone.model_id))
    rows: list[dict[str, Any]] = []
    image, shown = None, None
    for done, item in enumerate(missing, 1):
        if item["input_id"] != shown:
            image, shown = load_oriented_bgr(images.read(item["input_id"])), item["input_id"]
        assert image is not None
        left, top, right, bottom = crop_region(image.shape[1], image.shape[0],
                                               (item["x1"], item["y1"], item["x2"], item["y2"]))
        vector = backbone.embed(np.ascontiguousarray(image[top:bottom, left:right]))
        rows.append({"annotation_id": item["annotation_id"], "model_id": backbone.model_id, "task": task.name,
                     "input_id": item["input_id"], "vector": vector.astype(np.float32).tolist(),
                     "embedded_at": datetime.now(UTC).replace(tzinfo=None)})
        if done % 500 == 0:
            log(f"{task.name}: embedded {done} of {len(missing)} objects")
    if rows:
        store.write(lambda s: s.objects.store_embeddings(rows))
    return len(rows)


def similar_objects(store: UnitsOfWork, images: StoredImages, backbone: Embedder, task: LabelingTask,
                    annotation_id: str, nearest: NearestObjects, limit: int = 10) -> dict[str, Any]:
    """The task's objects on other images most like `annotation_id`, most similar first; objects not embedded
    yet are embedded first (once)."""
    embedded = embed_objects(store, images, backbone, task)
    found = store.read(lambda s: s.objects.box_of(annotation_id))
    if found is None or found["task"] != task.name:
        raise KeyError(f"No object annotation {annotation_id!r} in task {task.name!r}.")
    return {"annotation_id": annotation_id, "embedded_now": embedded, "backbone": backbone.model_id,
            "similar": nearest.nearest(store, task.name, backbone.model_id, annotation_id, limit)}


@dataclass(frozen=True)
class EmbeddingMatrix:
    """A task's object embeddings by one backbone, unit length, as read at `stamp`."""

    stamp: tuple[int, Any]
    annotation_ids: list[str]
    input_ids: np.ndarray
    vectors: np.ndarray
    row_of: dict[str, int]


class NearestObjects:
    """Nearest objects by cosine similarity over the embeddings stored in DuckDB, held in memory per task and
    backbone and read again when they change. Each unit of work opens the DuckDB file afresh (the file lock is
    shared with pipeline runs), so a scan in SQL reads every vector cold: 1.4 s for 100 000 objects of 1024
    dimensions (benchmarks/similar_objects.py), against tens of milliseconds for one matrix product here."""

    def __init__(self) -> None:
        self._held: dict[tuple[str, str], EmbeddingMatrix] = {}
        self._lock = threading.Lock()

    def matrix(self, store: UnitsOfWork, task: str, model_id: str) -> EmbeddingMatrix:
        stamp = store.read(lambda s: s.objects.embedding_stamp(task, model_id))
        with self._lock:
            held = self._held.get((task, model_id))
            if held is None or held.stamp != stamp:
                frame = store.read(lambda s: s.objects.embeddings(task, model_id))
                count = len(frame)
                vectors = (frame["vector"].explode().to_numpy().astype(np.float32).reshape(count, -1) if count
                           else np.zeros((0, 0), dtype=np.float32))
                norms = np.linalg.norm(vectors, axis=1, keepdims=True) if count else vectors
                ids = frame["annotation_id"].to_list()
                held = self._held[(task, model_id)] = EmbeddingMatrix(
                    stamp, ids, frame["input_id"].to_numpy(), vectors / np.maximum(norms, 1e-12),
                    {a: i for i, a in enumerate(ids)})
            return held

    def nearest(self, store: UnitsOfWork, task: str, model_id: str, annotation_id: str,
                limit: int) -> list[dict[str, Any]]:
        """The `limit` live objects on other images most similar to `annotation_id`, most similar first."""
        held = self.matrix(store, task, model_id)
        row = held.row_of[annotation_id]
        similarity = held.vectors @ held.vectors[row]
        similarity[held.input_ids == held.input_ids[row]] = -np.inf  # other images only
        order = np.lexsort((np.arange(len(similarity)), -similarity))
        found: list[dict[str, Any]] = []
        window = limit * 2
        start = 0
        # Retired objects keep their embedding: look further until `limit` live ones are found.
        while len(found) < limit and start < len(order):
            chosen = [i for i in order[start:start + window] if similarity[i] > -np.inf]
            live = {o["annotation_id"]: o for o in store.read(
                lambda s, chosen=chosen: s.objects.live_objects([held.annotation_ids[i] for i in chosen]))}
            found += [{**live[held.annotation_ids[i]], "similarity": float(similarity[i])}
                      for i in chosen if held.annotation_ids[i] in live]
            start, window = start + window, window * 4
        return found[:limit]
