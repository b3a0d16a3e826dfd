"""The detector resource: Ultralytics YOLO (detect or segment), loaded lazily, once per process.

The model's identity is the sha256 of its weights file. Nothing here downloads:
weights must be a file on disk, and Ultralytics is put in offline mode first.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
    checkpoint_classes,
    pinned_ref,
)
from engines.int8 import quantized_path
from engines.measured import RuntimeChoice, fastest_cpu_runtime
from engines.onnx_runtime import exported_onnx, graph_to_run
from resources.image_store import ImageStore
from store.predictions import prediction_rows
from store.tables import PREDICTIONS

_cache: dict[tuple, LoadedModel] = {}
_cache_lock = threading.Lock()
NOT_YET_QUANTIZED = "int8-not-yet-quantized:"
Calibration = Callable[[], list[np.ndarray]] | None  # images (BGR) an INT8 quantization is calibrated on


class Detector(dg.ConfigurableResource):
    """Ultralytics weights plus how to run them.

    `imgsz` 0 means the size the weights were trained at. `runtime` names one of `engines.RUNTIMES`
    (torch, onnx, openvino: each module says how it runs the weights); `auto` runs torch on a GPU and, on a
    CPU, whichever of ONNX Runtime and OpenVINO measures faster here (`engines.measured`; torch is slower on a
    CPU: docs/benchmarks.md). `threads` 0 means every core (Ultralytics itself would set torch to cores-1).
    """

    weights: str
    imgsz: int = 0
    batch_size: int = 16
    device: str = "cpu"
    conf_floor: float = DEFAULT_CONF_FLOOR
    runtime: str = "auto"  # "auto" or a name in engines.RUNTIMES
    threads: int = 0
    decode_threads: int = 0  # 0: DECODE_THREADS
    precision: str = "fp32"  # or int8: quantized once, calibrated on stored images (engines/int8.py); opt in
    sha256: str = ""  # the weights a task pinned (or a promotion recorded): any other file is refused unread

    def weights_path(self) -> Path:
        path = Path(self.weights).expanduser()
        if not path.is_file():
            raise DetectorError(
                f"Detector weights {self.weights} do not exist; autoannotate never downloads weights, so put the "
                "file on disk and point `weights` at it."
            )
        return path.resolve()

    def model_id(self) -> str:
        """The weights' id (their sha256), checked against the pin `sha256` where there is one."""
        return pinned_ref(self.weights_path(), self.sha256).model_id

    def describe(self) -> tuple[str, list[str]]:
        """The weights' id and class names in id order, read from the checkpoint once and then from its record;
        nothing is exported or warmed up (a model already loaded in this process answers from its cache)."""
        path, model_id = self.weights_path(), self.model_id()
        loaded = next((model for key, model in _cache.items() if key[0] == model_id), None)
        if loaded is not None:
            return model_id, loaded.class_names
        return model_id, checkpoint_classes(path, model_id)

    def chosen_runtime(self, calibration: Calibration = None) -> str:
        """The runtime `runtime` names; `auto`: torch on a GPU, and on a CPU whichever of ONNX Runtime and OpenVINO
        runs these weights (at this precision) faster on this machine (measured once, recorded beside them)."""
        if self.runtime != "auto":
            return runtime_named(self.runtime).name
        if self.device != "cpu":
            return "torch"
        return self.runtime_choice(calibration).chosen

    def runtime_choice(self, calibration: Calibration = None) -> RuntimeChoice:
        """What `auto` measured on this CPU (or read from the record of that measurement)."""
        path, model_id = self.weights_path(), self.model_id()
        choice = fastest_cpu_runtime(path, model_id, f"{self.imgsz or 'own'}-{self.precision}", self.thread_count(),
                                     lambda name: self._loaded(name, calibration))
        if choice.measured_now:  # the runtime that lost holds memory and threads this process will not use
            with _cache_lock:
                for name in set(choice.milliseconds) - {choice.chosen}:
                    _cache.pop(self._cache_key(model_id, name), None)
        return choice

    def predicting_model_id(self) -> str:
        """The model id this detector's predictions carry: the weights' sha256, or at int8 the quantized graph's;
        before the first INT8 run, an id no prediction carries (every batch is then one it has not predicted)."""
        path, model_id = self.weights_path(), self.model_id()
        if self.precision == "fp32":
            return model_id
        if self.precision == "int8" and not quantized_path(exported_onnx(path, model_id)).exists():
            return f"{NOT_YET_QUANTIZED}{model_id}"
        return graph_to_run(path, model_id, LoadOptions(self.imgsz, precision=self.precision))[1]

    def runtime_sentence(self, model: LoadedModel) -> str:
        """For the run log: what runs the model, at which precision, and why when `auto` chose."""
        said = f"{model.name} runs on {model.runtime}"
        if model.precision != "fp32":
            said += f" in {model.precision.upper()} (model {model.model_id[:12]}, from {Path(model.path).name})"
        if self.runtime != "auto" or self.device != "cpu":
            return said
        choice = self.runtime_choice()
        figures = ", ".join(f"{name} {ms:g} ms" for name, ms in choice.milliseconds.items())
        return f"{said} (auto: the fastest on this CPU, one frame {figures})"

    def load(self, calibration: Calibration = None) -> LoadedModel:
        """Load (once per process and configuration) and check the weights before any image is read. At precision
        int8 the first load quantizes them, calibrated on `calibration()`'s images."""
        return self._loaded(self.chosen_runtime(calibration), calibration)

    def _cache_key(self, model_id: str, runtime_name: str) -> tuple:
        return (model_id, self.imgsz, self.device, runtime_name, self.threads, self.precision)

    def _loaded(self, runtime_name: str, calibration: Calibration = None) -> LoadedModel:
        path, model_id = self.weights_path(), self.model_id()
        runtime = runtime_named(runtime_name)
        key = self._cache_key(model_id, runtime.name)
        with _cache_lock:
            if key not in _cache:
                options = LoadOptions(self.imgsz, self.device, self.thread_count(), self.conf_floor, self.precision,
                                      calibration)
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
        Decoding and letterboxing run on worker threads, ahead of the model (`decoded_ahead`)."""
        now = datetime.now(UTC).replace(tzinfo=None)
        stream = decoded_ahead(lambda input_id: model.letterbox(oriented_bgr(images, input_id)), input_ids,
                               self.decode_threads or DECODE_THREADS)
        columns = [c.name for c in PREDICTIONS.columns]
        rows: list[dict] = []
        frames, processed = [], []
        for done, (input_id, detections) in enumerate(zip(input_ids, self.predict_stream(stream, model)), 1):
            rows.extend(prediction_rows(batch, model.model_id, input_id, detections, now))
            if len(rows) >= ROWS_PER_FRAME:  # a row as a dict takes 650 B, as columns under 100 B
                frames.append(pd.DataFrame(rows, columns=columns))
                rows = []
            processed.append({"input_id": input_id, "model_id": model.model_id, "batch": batch,
                              "prediction_count": len(detections), "processed_at": now,
                              "conf_floor": self.conf_floor})
            if log and (done == 1 or done % 100 == 0 or done == len(input_ids)):
                log(f"predicted {done}/{len(input_ids)} images")
            if done == 1:
                pause_point("inference")
        if rows or not frames:
            frames.append(pd.DataFrame(rows, columns=columns))
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return frame.drop_duplicates("prediction_id"), pd.DataFrame(processed)


S = TypeVar("S")
T = TypeVar("T")
PREFETCH_IMAGES = 32
ROWS_PER_FRAME = 20_000  # prediction rows gathered as dicts before they become columns
DECODE_THREADS = 2  # measured on this 2-core machine: docs/benchmarks.md
WINDOW_BATCHES = 4  # images grouped by shape come from this many batches' worth of the stream


def decoded_ahead(work: Callable[[S], T], items: Iterable[S], workers: int,
                  depth: int = PREFETCH_IMAGES) -> Iterator[T]:
    """`work(item)` for each item, in order, on `workers` threads and at most `depth` items ahead: decoding and
    letterboxing (OpenCV and Pillow release the GIL) overlap inference, and memory stays bounded however long the
    stream is. An item's error is raised when its turn comes."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[Future[T]] = deque()
        for item in items:
            pending.append(pool.submit(work, item))
            if len(pending) >= depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def oriented_bgr(images: ImageStore, input_id: str) -> np.ndarray:
    """The stored image in the orientation ingestion measured, as Ultralytics expects arrays (BGR)."""
    return load_oriented_bgr(images.read(input_id))
