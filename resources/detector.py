"""The detector resource: Ultralytics YOLO (detect or segment), loaded lazily, once per process.

The model's identity is the sha256 of its weights file. Nothing here downloads:
weights must be a file on disk, and Ultralytics is put in offline mode first.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import dagster as dg
import numpy as np
import pandas as pd

from core.faults import pause_point
from core.image_checks import load_oriented_bgr
from core.settings import DEFAULT_CONF_FLOOR
from engines import runtime_named
from engines.base import (
    Detection,
    DetectorError,
    Letterboxed,
    LoadedModel,
    LoadOptions,
    load_checkpoint,
    model_ref,
)
from resources.image_store import ImageStore
from store.predictions import prediction_rows
from store.tables import PREDICTIONS

_cache: dict[tuple, LoadedModel] = {}
_cache_lock = threading.Lock()


class Detector(dg.ConfigurableResource):
    """Ultralytics weights plus how to run them.

    `imgsz` 0 means the size the weights were trained at. `runtime` names one of `engines.RUNTIMES`
    (torch, onnx: each module says how it runs the weights); `auto` runs ONNX Runtime on the CPU
    (measured faster than torch there: docs/benchmarks.md) and torch on a GPU. `threads` 0 means
    every core (Ultralytics itself would set torch to cores-1, one on a 2-core machine).
    """

    weights: str
    imgsz: int = 0
    batch_size: int = 16
    device: str = "cpu"
    conf_floor: float = DEFAULT_CONF_FLOOR
    runtime: str = "auto"  # "auto" or a name in engines.RUNTIMES
    threads: int = 0

    def weights_path(self) -> Path:
        path = Path(self.weights).expanduser()
        if not path.is_file():
            raise DetectorError(
                f"Detector weights {self.weights} do not exist; autoannotate never downloads weights, so put the "
                "file on disk and point `weights` at it."
            )
        return path.resolve()

    def describe(self) -> tuple[str, list[str]]:
        """The weights' id and class names in id order, read from the checkpoint alone: nothing is exported or
        warmed up (a model already loaded in this process answers from its cache)."""
        path = self.weights_path()
        model_id = model_ref(path).model_id
        loaded = next((model for key, model in _cache.items() if key[0] == model_id), None)
        if loaded is not None:
            return model_id, loaded.class_names
        names = load_checkpoint(path).names
        return model_id, [names[i] for i in sorted(names)]

    def chosen_runtime(self) -> str:
        """The runtime `runtime` names; `auto`: ONNX Runtime on the CPU, torch on a GPU."""
        if self.runtime == "auto":
            return "onnx" if self.device == "cpu" else "torch"
        return runtime_named(self.runtime).name

    def load(self) -> LoadedModel:
        """Load (once per process and configuration) and check the weights before any image is read."""
        path = self.weights_path()
        model_id = model_ref(path).model_id
        runtime = runtime_named(self.chosen_runtime())
        key = (model_id, self.imgsz, self.device, runtime.name, self.threads)
        with _cache_lock:
            if key not in _cache:
                options = LoadOptions(self.imgsz, self.device, self.thread_count(), self.conf_floor)
                _cache[key] = runtime.load(path, model_id, options)
            return _cache[key]

    def thread_count(self) -> int:
        return self.threads or os.cpu_count() or 1

    def predict_stream(self, images: Iterable[np.ndarray | Letterboxed], model: LoadedModel | None = None
                       ) -> Iterator[list[Detection]]:
        """Detections per image, in input order. Images are letterboxed to rectangles (not squares) and, within a
        window of a few batches, grouped by letterboxed shape into mini-batches of up to `batch_size`: mixed
        aspect ratios cost what each costs alone, and no image is padded to another's shape."""
        model = model or self.load()
        window: list[Letterboxed] = []
        for image in images:
            window.append(image if isinstance(image, Letterboxed) else model.letterbox(image))
            if len(window) == self.batch_size * WINDOW_BATCHES:
                yield from self._predict_window(model, window)
                window = []
        if window:
            yield from self._predict_window(model, window)

    def _predict_window(self, model: LoadedModel, window: list[Letterboxed]) -> Iterator[list[Detection]]:
        by_shape: dict[tuple, list[int]] = {}
        for index, image in enumerate(window):
            by_shape.setdefault(image.array.shape, []).append(index)
        found: dict[int, list[Detection]] = {}
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                found.update(zip(chunk, model.predict([window[i] for i in chunk], self.conf_floor)))
        yield from (found[i] for i in range(len(window)))

    def predict_stored(self, model: LoadedModel, images: ImageStore, input_ids: list[str], batch: str,
                       log: Callable[[str], object] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Rows of `predictions` and `processed_inputs` for stored images; holds no database connection.
        Decoding and letterboxing run on a background thread, ahead of the model."""
        now = datetime.now(UTC).replace(tzinfo=None)
        stream = prefetch(model.letterbox(oriented_bgr(images, input_id)) for input_id in input_ids)
        rows, processed = [], []
        for done, (input_id, detections) in enumerate(zip(input_ids, self.predict_stream(stream, model)), 1):
            rows.extend(prediction_rows(batch, model.model_id, input_id, detections, now))
            processed.append({"input_id": input_id, "model_id": model.model_id, "batch": batch,
                              "prediction_count": len(detections), "processed_at": now,
                              "conf_floor": self.conf_floor})
            if log and (done == 1 or done % 100 == 0 or done == len(input_ids)):
                log(f"predicted {done}/{len(input_ids)} images")
            if done == 1:
                pause_point("inference")
        frame = pd.DataFrame(rows, columns=[c.name for c in PREDICTIONS.columns])
        return frame.drop_duplicates("prediction_id"), pd.DataFrame(processed)


T = TypeVar("T")
PREFETCH_IMAGES = 32
WINDOW_BATCHES = 4  # images grouped by shape come from this many batches' worth of the stream


def prefetch(items: Iterable[T], depth: int = PREFETCH_IMAGES) -> Iterator[T]:
    """Produce `items` on a background thread, at most `depth` ahead, so decoding overlaps inference
    and memory stays bounded however long the stream is."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in items:
                buffer.put(item)
        except BaseException as error:
            buffer.put(error)
        buffer.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := buffer.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def oriented_bgr(images: ImageStore, input_id: str) -> np.ndarray:
    """The stored image in the orientation ingestion measured, as Ultralytics expects arrays (BGR)."""
    return load_oriented_bgr(images.read(input_id))
