"""The detector resource: Ultralytics YOLO (detect or segment), loaded lazily, once per process.

The model's identity is the sha256 of its weights file. Nothing here downloads:
weights must be a file on disk, and Ultralytics is put in offline mode first.
"""

from __future__ import annotations

import ast
import hashlib
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import dagster as dg
import numpy as np
import pandas as pd

from core.faults import pause_point
from core.image_checks import load_oriented_bgr
from core.offline import make_ultralytics_offline
from core.settings import DEFAULT_CONF_FLOOR
from core.yolo_outputs import detections_from_raw
from resources.image_store import ImageStore
from store.predictions import prediction_rows
from store.tables import PREDICTIONS


class DetectorError(ValueError):
    """The configured weights cannot be used; the message says why and names the file."""


@dataclass(frozen=True)
class Detection:
    """One prediction, box normalised to [0, 1] in the oriented image (x1 < x2, y1 < y2)."""

    class_name: str
    confidence: float
    x1: float
    y1: float
    x2: float
    y2: float
    polygon: list[float] | None  # x0, y0, x1, y1, ... normalised, for segmentation models


@dataclass(frozen=True)
class Letterboxed:
    """An image resized so its longer side is the model's image size and padded to the smallest multiple of
    the stride, exactly as Ultralytics letterboxes a single image (`rect`). Images whose letterboxed shapes
    are equal batch together with no extra padding; boxes map back through the offset and the resized size."""

    array: np.ndarray  # BGR
    left: int
    top: int
    width: int  # of the resized image inside `array`
    height: int


class Engine(Protocol):
    def predict(self, images: list[Letterboxed], conf_floor: float) -> list[list[Detection]]: ...


@dataclass
class LoadedModel:
    model_id: str
    name: str
    path: str
    task_type: str  # "detect" or "segment"
    class_names: list[str]
    imgsz: int
    runtime: str  # "torch" or "onnx"
    engine: Engine
    stride: int = 32

    def letterbox(self, image: np.ndarray) -> Letterboxed:
        return letterbox(image, self.imgsz, self.stride)

    def predict(self, images: list[Letterboxed], conf_floor: float) -> list[list[Detection]]:
        """Detections for a mini-batch of letterboxed images of one shape."""
        return self.engine.predict(images, conf_floor)


def trained_imgsz(model: Any) -> int:
    """The image size Ultralytics weights were trained at (an Ultralytics `YOLO` object), 640 when unrecorded."""
    return int(model.overrides.get("imgsz") or 640)


def letterbox(image: np.ndarray, imgsz: int, stride: int) -> Letterboxed:
    """Ultralytics' own single-image letterbox (`LetterBox(auto=True)`), keeping where the image lies."""
    import cv2

    height, width = image.shape[:2]
    ratio = min(imgsz / height, imgsz / width)
    new_width, new_height = max(round(width * ratio), 1), max(round(height * ratio), 1)  # thin images keep a pixel
    pad_x, pad_y = (imgsz - new_width) % stride / 2, (imgsz - new_height) % stride / 2
    if (new_width, new_height) != (width, height):
        image = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(pad_y - 0.1), round(pad_y + 0.1)
    left, right = round(pad_x - 0.1), round(pad_x + 0.1)
    array = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    return Letterboxed(array, left, top, new_width, new_height)


def placed_detections(pixels: np.ndarray, confidences: np.ndarray, classes: np.ndarray, class_names: list[str],
                      placed: Letterboxed, polygons: list[np.ndarray] | None = None) -> list[Detection]:
    """Boxes (x1, y1, x2, y2) and polygons in the letterboxed array's pixels -> detections normalised to the image
    itself (padding removed), clipped to [0, 1]; empty boxes are dropped."""
    offset = np.array([placed.left, placed.top], dtype=float)
    size = np.array([placed.width, placed.height], dtype=float)
    boxes = np.clip((np.asarray(pixels, dtype=float).reshape(-1, 2, 2) - offset) / size, 0.0, 1.0).reshape(-1, 4)
    detections = []
    for index, (box, confidence, cls) in enumerate(zip(boxes, confidences, classes, strict=True)):
        x1, y1, x2, y2 = (float(v) for v in box)
        if x2 <= x1 or y2 <= y1:
            continue
        polygon = None
        if polygons is not None and len(polygons[index]) >= 3:  # fewer points is no polygon
            points = np.clip((np.asarray(polygons[index], dtype=float) - offset) / size, 0.0, 1.0)
            polygon = [float(v) for v in points.reshape(-1)]
        detections.append(Detection(class_names[int(cls)], float(confidence), x1, y1, x2, y2, polygon))
    return detections


@dataclass
class UltralyticsEngine:
    """Ultralytics' own predictor: torch weights, or an exported ONNX segmentation model (its masks need
    Ultralytics' post-processing). The arrays are already letterboxed, so Ultralytics adds no padding."""

    yolo: Any
    imgsz: int
    class_names: list[str]

    def predict(self, images: list[Letterboxed], conf_floor: float) -> list[list[Detection]]:
        results = self.yolo.predict([image.array for image in images], imgsz=self.imgsz, conf=conf_floor,
                                    verbose=False, batch=len(images))
        return [results_to_detections(result, self.class_names, image) for result, image in zip(results, images)]


@dataclass
class OnnxEngine:
    """An exported detect model run by ONNX Runtime directly: no torch in the process, no per-image copies
    beyond the one float tensor, and NMS in numpy exactly as Ultralytics' predictor does it."""

    session: Any  # onnxruntime.InferenceSession
    class_names: list[str]
    end_to_end: bool

    def __post_init__(self) -> None:
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, images: list[Letterboxed], conf_floor: float) -> list[list[Detection]]:
        bgr = np.stack([image.array for image in images])
        tensor = np.ascontiguousarray(bgr[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255
        raw = self.session.run(None, {self.input_name: tensor})[0]
        found = []
        for output, image in zip(raw, images, strict=True):
            rows = detections_from_raw(output, len(self.class_names), conf_floor, self.end_to_end)
            found.append(placed_detections(rows[:, :4], rows[:, 4], rows[:, 5], self.class_names, image))
        return found


def results_to_detections(result: Any, class_names: list[str], placed: Letterboxed) -> list[Detection]:
    """Detections of one Ultralytics `Results` on a letterboxed array."""
    if result.boxes is None or len(result.boxes) == 0:
        return []
    polygons = result.masks.xy if getattr(result, "masks", None) is not None else None
    return placed_detections(result.boxes.xyxy.cpu().numpy(), result.boxes.conf.cpu().numpy(),
                             result.boxes.cls.cpu().numpy(), class_names, placed, polygons)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_task(path: Path, task_type: str) -> None:
    if task_type not in ("detect", "segment"):
        raise DetectorError(f"Detector weights {path} are a {task_type!r} model; autoannotate needs a detect or "
                            "segment model.")


_cache: dict[tuple, LoadedModel] = {}
_cache_lock = threading.Lock()


class Detector(dg.ConfigurableResource):
    """Ultralytics weights plus how to run them.

    `imgsz` 0 means the size the weights were trained at. `runtime: auto` runs ONNX Runtime on
    the CPU (measured faster than torch there: see the README's benchmarks) and torch on a GPU.
    `onnx` exports the weights once through Ultralytics (cached next to them, keyed by their
    hash); a detect model then runs on ONNX Runtime alone, without torch, a segment model
    through Ultralytics' predictor (which turns its masks into polygons). `threads` 0 means
    every core (Ultralytics itself would set torch to cores-1, one on a 2-core machine).
    """

    weights: str
    imgsz: int = 0
    batch_size: int = 16
    device: str = "cpu"
    conf_floor: float = DEFAULT_CONF_FLOOR
    runtime: Literal["auto", "torch", "onnx"] = "auto"
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
        model_id = file_sha256(path)
        loaded = next((model for key, model in _cache.items() if key[0] == model_id), None)
        if loaded is not None:
            return model_id, loaded.class_names
        names = self._checkpoint(path).names
        return model_id, [names[i] for i in sorted(names)]

    def chosen_runtime(self) -> str:
        if self.runtime != "auto":
            return self.runtime
        return "onnx" if self.device == "cpu" else "torch"

    def load(self) -> LoadedModel:
        """Load (once per process and configuration) and check the weights before any image is read."""
        path = self.weights_path()
        model_id = file_sha256(path)
        runtime = self.chosen_runtime()
        key = (model_id, self.imgsz, self.device, runtime, self.threads)
        with _cache_lock:
            if key not in _cache:
                load = self._load_onnx if runtime == "onnx" else self._load_torch
                _cache[key] = load(path, model_id)
            return _cache[key]

    def _load_torch(self, path: Path, model_id: str) -> LoadedModel:
        checkpoint = self._checkpoint(path)
        class_names = [checkpoint.names[i] for i in sorted(checkpoint.names)]
        imgsz = self.imgsz or trained_imgsz(checkpoint)
        # The first predict builds the predictor, whose device selection resets torch's
        # thread count to Ultralytics' default; set ours afterwards so it sticks.
        checkpoint.predict(np.zeros((imgsz, imgsz, 3), dtype=np.uint8), imgsz=imgsz, device=self.device,
                           verbose=False)
        import torch

        torch.set_num_threads(self.thread_count())
        stride = int(max(np.atleast_1d(np.asarray(checkpoint.predictor.model.stride, dtype=float))))
        return LoadedModel(model_id, path.name, str(path), checkpoint.task, class_names, imgsz, "torch",
                           UltralyticsEngine(checkpoint, imgsz, class_names), stride)

    def _load_onnx(self, path: Path, model_id: str) -> LoadedModel:
        import onnxruntime as ort

        exported = self._exported_onnx(path, model_id)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.thread_count()
        session = ort.InferenceSession(str(exported), options, providers=["CPUExecutionProvider"])
        about = session.get_modelmeta().custom_metadata_map
        task_type = about.get("task", "")
        check_task(path, task_type)
        names = ast.literal_eval(about["names"])
        class_names = [names[i] for i in sorted(names)]
        imgsz = self.imgsz or max(ast.literal_eval(about["imgsz"]))
        stride = int(about.get("stride", 32))
        if task_type == "detect":
            engine: Engine = OnnxEngine(session, class_names, about.get("end2end") == "True")
        else:
            make_ultralytics_offline()
            from ultralytics import YOLO

            engine = UltralyticsEngine(YOLO(str(exported), task=task_type), imgsz, class_names)
        model = LoadedModel(model_id, path.name, str(path), task_type, class_names, imgsz, "onnx", engine, stride)
        model.predict([model.letterbox(np.zeros((imgsz, imgsz, 3), dtype=np.uint8))], self.conf_floor)  # warm up
        return model

    def thread_count(self) -> int:
        return self.threads or os.cpu_count() or 1

    @staticmethod
    def _checkpoint(path: Path, copy: Path | None = None) -> Any:
        """The Ultralytics model in `path` (read from its `copy` when given), or one sentence naming `path` that
        says why it is not usable."""
        make_ultralytics_offline()
        from ultralytics import YOLO

        try:
            checkpoint = YOLO(str(copy or path))
        except Exception as error:
            detail = (str(error).strip().splitlines() or ["unreadable"])[0]
            raise DetectorError(
                f"Detector weights {path} are not a YOLO checkpoint ({type(error).__name__}: {detail})."
            ) from None
        check_task(path, checkpoint.task)
        return checkpoint

    def _exported_onnx(self, path: Path, model_id: str) -> Path:
        """Export once through Ultralytics, at the size the weights were trained at, with dynamic height and
        width (any imgsz runs on it); the file name carries the weights' hash."""
        target = path.with_name(f"{path.stem}.{model_id[:16]}.onnx")
        if target.exists():
            return target
        # Exported from a copy in a scratch folder: Ultralytics writes the export beside the file it loaded.
        with tempfile.TemporaryDirectory(dir=path.parent) as scratch:
            copy = Path(scratch) / path.name
            shutil.copyfile(path, copy)
            exported = self._checkpoint(path, copy).export(format="onnx", dynamic=True, simplify=True,
                                                           device="cpu", verbose=False)
            os.replace(exported, target)
        return target

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
