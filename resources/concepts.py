"""Image-level concept scores: an Ultralytics classification model's top-k classes, or a context-based classifier
(`core.concepts`) over embeddings from any Ultralytics weights, trained classifiers kept content-addressed.

Nothing here downloads: weights are files on disk and Ultralytics is put in offline mode first.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from core.concepts import ConceptClassifier
from core.offline import make_ultralytics_offline
from engines.base import DetectorError, letterbox, model_ref, trained_imgsz
from storage.blobs import blob_store, local_file


@dataclass
class Backbone:
    """Ultralytics weights run for their feature maps: every map a later layer reads (`save`) and the head's inputs,
    each mean- and max-pooled. Mean pooling alone (what `YOLO.embed()` returns) loses small things: measured on
    generated scenes with 20 labels, the max-pooled half lifted the `night` and `crowded` concepts from 0.77 and
    0.73 to 0.90 and 0.79 accuracy."""

    model_id: str
    network: Any
    layers: list[int]
    imgsz: int
    features: dict[int, Any]

    def embed(self, image_bgr: np.ndarray) -> np.ndarray:
        import torch

        placed = letterbox(image_bgr, self.imgsz, int(max(np.atleast_1d(self.network.stride.cpu().numpy()))))
        tensor = torch.from_numpy(np.ascontiguousarray(placed.array[:, :, ::-1].transpose(2, 0, 1))).float()[None]
        with torch.inference_mode():
            self.network(tensor / 255.0)
        pooled = []
        for layer in self.layers:
            maps = self.features[layer][0].float()
            pooled += [maps.mean(dim=(1, 2)), maps.amax(dim=(1, 2))]
        return torch.cat(pooled).cpu().numpy().astype(float)


def feature_layers(network: Any) -> list[int]:
    """The layers whose outputs later layers read (Ultralytics keeps them in `save`), and the head's inputs."""
    head = network.model[-1]
    last = len(network.model) - 1
    inputs = head.f if isinstance(head.f, list) else [head.f]
    chosen = {last + i if i < 0 else i for i in inputs} | set(network.save)
    return sorted(chosen - {last})


_cache: dict[tuple, Any] = {}
_lock = threading.Lock()


def _yolo(path: Path) -> Any:
    make_ultralytics_offline()
    from ultralytics import YOLO

    try:
        return YOLO(str(path))
    except Exception as error:
        detail = (str(error).strip().splitlines() or ["unreadable"])[0]
        raise DetectorError(f"Classifier weights {path} are not a YOLO checkpoint ({type(error).__name__}: "
                            f"{detail}).") from None


def _existing(path: Path, role: str) -> Path:
    if not path.is_file():
        raise DetectorError(f"{role} {path} do not exist; autoannotate never downloads weights, so put the file on "
                            "disk and point the task's `classifier` at it.")
    return path


class ConceptModels(dg.ConfigurableResource):
    """Where trained context-based classifiers are kept (content-addressed, by the sha256 of their file) and the
    device and threads the backbones and classification models run on."""

    root: str  # a folder or s3://bucket/prefix
    cache: str = "cache/models"  # this machine's copies of classifiers kept in a bucket
    device: str = "cpu"
    threads: int = 0

    def backbone(self, path: Path, imgsz: int = 0) -> Backbone:
        """Any Ultralytics weights, loaded once per process, with hooks on the layers an embedding pools; run at
        `imgsz` (0: the size the weights were trained at). An embedding at another size is another embedding, so
        its id is derived from the weights' sha256 and the size."""
        path = _existing(path, "Backbone weights")
        weights_id = model_ref(path).model_id
        with _lock:
            if ("backbone", weights_id) not in _cache:
                import torch

                yolo = _yolo(path)
                network = yolo.model.float().eval().to(self.device)
                features: dict[int, Any] = {}
                layers = feature_layers(network)
                for index in layers:
                    network.model[index].register_forward_hook(
                        lambda _module, _inputs, output, index=index: features.__setitem__(index, output))
                torch.set_num_threads(self.threads or os.cpu_count() or 1)
                _cache[("backbone", weights_id)] = Backbone(weights_id, network, layers, trained_imgsz(yolo),
                                                            features)
            trained = _cache[("backbone", weights_id)]
        if not imgsz or imgsz == trained.imgsz:
            return trained
        return replace(trained, model_id=hashlib.sha256(f"{weights_id}|imgsz={imgsz}".encode()).hexdigest(),
                       imgsz=imgsz)

    def classification_model(self, path: Path) -> tuple[str, Any]:
        """(model id, Ultralytics model) of `-cls` weights; other weights are refused with a sentence naming them."""
        path = _existing(path, "Classifier weights")
        model_id = model_ref(path).model_id
        with _lock:
            if ("classify", model_id) not in _cache:
                model = _yolo(path)
                if model.task != "classify":
                    raise DetectorError(
                        f"Classifier weights {path} are a {model.task!r} model; `classifier.weights` needs a "
                        "classification (-cls) model. To learn concepts from a detector's features, name it as "
                        "`classifier.backbone` instead.")
                _cache[("classify", model_id)] = model
            return model_id, _cache[("classify", model_id)]

    def top_classes(self, path: Path, images_bgr: list[np.ndarray], top_k: int, imgsz: int = 0
                    ) -> tuple[str, list[str], list[list[tuple[str, float]]]]:
        """(model id, class names, each image's `top_k` classes with their probabilities, most probable first)."""
        model_id, model = self.classification_model(path)
        names = [model.names[i] for i in sorted(model.names)]
        size = imgsz or trained_imgsz(model)  # Ultralytics refuses imgsz=None
        found = []
        for image in images_bgr:
            result = model.predict(image, imgsz=size, device=self.device, verbose=False)[0]
            probabilities = result.probs.data.float().cpu().numpy()
            order = np.argsort(-probabilities, kind="stable")[:top_k]
            found.append([(names[i], float(probabilities[i])) for i in order])
        return model_id, names, found

    def save(self, classifier: ConceptClassifier) -> tuple[str, str]:
        """Store a trained classifier under its content hash (in the deployment's models store: a batch on another
        worker reads it there); the same labels give the same blob and id. Returns the id and its location."""
        data = classifier.to_bytes()
        model_id = hashlib.sha256(data).hexdigest()
        store, key = blob_store(self.root), f"context-{model_id[:16]}.json"
        if not store.exists(key):
            store.put(key, data)
        return model_id, store.url(key)

    def load(self, location: str) -> ConceptClassifier:
        """The classifier stored at `location` (a path, or an s3:// URL fetched once into the cache)."""
        return ConceptClassifier.from_bytes(local_file(location, Path(self.cache)).read_bytes())


