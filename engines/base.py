"""What every model runtime shares: the detection it returns, the letterboxed image it takes, the `Engine`
protocol, the loaded model, and Ultralytics checkpoints read offline. A runtime (`Runtime`) turns weights on disk
into a `LoadedModel`; the registry (`engines.RUNTIMES`) gathers them."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.digests import file_sha256
from core.offline import make_ultralytics_offline


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
    runtime: str  # the name of the runtime that loaded it (`engines.RUNTIMES`)
    engine: Engine
    stride: int = 32
    precision: str = "fp32"  # int8: `model_id` is the quantized graph's own sha256, `name` ends in " (int8)"

    def letterbox(self, image: np.ndarray) -> Letterboxed:
        return letterbox(image, self.imgsz, self.stride)

    def predict(self, images: list[Letterboxed], conf_floor: float) -> list[list[Detection]]:
        """Detections for a mini-batch of letterboxed images of one shape."""
        return self.engine.predict(images, conf_floor)


@dataclass(frozen=True)
class LoadOptions:
    """How to run weights: `imgsz` 0 is the size they were trained at; `threads` 0 is every core; `precision`
    int8 quantizes them on `calibration()`'s images (BGR arrays) the first time (engines/int8.py)."""

    imgsz: int = 0
    device: str = "cpu"
    threads: int = 1
    conf_floor: float = 0.05
    precision: str = "fp32"
    calibration: Callable[[], list[np.ndarray]] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Runtime:
    """One way to run Ultralytics weights: `load(weights, model_id, options)` checks and loads them once."""

    name: str
    summary: str
    load: Callable[[Path, str, LoadOptions], LoadedModel]


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
    """Ultralytics' own predictor: torch weights, or an exported model whose outputs need Ultralytics'
    post-processing (a segmentation model's masks). The arrays are already letterboxed, so Ultralytics adds no
    padding."""

    yolo: Any
    imgsz: int
    class_names: list[str]

    def predict(self, images: list[Letterboxed], conf_floor: float) -> list[list[Detection]]:
        results = self.yolo.predict([image.array for image in images], imgsz=self.imgsz, conf=conf_floor,
                                    verbose=False, batch=len(images))
        return [results_to_detections(result, self.class_names, image) for result, image in zip(results, images)]


def results_to_detections(result: Any, class_names: list[str], placed: Letterboxed) -> list[Detection]:
    """Detections of one Ultralytics `Results` on a letterboxed array."""
    if result.boxes is None or len(result.boxes) == 0:
        return []
    polygons = result.masks.xy if getattr(result, "masks", None) is not None else None
    return placed_detections(result.boxes.xyxy.cpu().numpy(), result.boxes.conf.cpu().numpy(),
                             result.boxes.cls.cpu().numpy(), class_names, placed, polygons)


@dataclass(frozen=True)
class ModelRef:
    """Weights on disk and the model's identity: the sha256 of the file."""

    path: Path
    model_id: str


_refs: dict[tuple[Path, int, int, int], ModelRef] = {}


def model_ref(path: Path) -> ModelRef:
    """The weights at `path` and their id, hashed once per process while the file stays the same (same inode,
    size and modification time); a rewritten file is hashed again."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    key = (resolved, stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _refs:
        _refs[key] = ModelRef(resolved, file_sha256(resolved))
    return _refs[key]


def pinned_ref(path: Path, sha256: str | None) -> ModelRef:
    """`model_ref(path)`, once the weights match the pin `sha256` where there is one: weights that changed since
    they were pinned, or published, are refused before anything reads them."""
    ref = model_ref(path)
    if sha256 and ref.model_id != sha256:
        raise DetectorError(f"Detector weights {ref.path} were refused unread: their sha256 is {ref.model_id[:16]}..., "
                            f"not the pinned {sha256[:16]}... (the file changed since it was pinned or published).")
    return ref


def check_task(path: Path, task_type: str | None) -> None:
    if task_type not in ("detect", "segment"):
        raise DetectorError(f"Detector weights {path} are a {task_type!r} model; autoannotate needs a detect or "
                            "segment model.")


def load_checkpoint(path: Path, copy: Path | None = None) -> Any:
    """The Ultralytics model in `path` (read from its `copy` when given), or one sentence naming `path` that says
    why it is not usable."""
    make_ultralytics_offline()
    from ultralytics import YOLO

    try:
        checkpoint = YOLO(str(copy or path))
    except Exception as error:
        detail = (str(error).strip().splitlines() or ["unreadable"])[0]
        if "references types outside" in detail:  # Ultralytics' safe loader refused a global of the pickle
            raise DetectorError(f"Detector weights {path} were refused unread: their pickle names objects outside "
                                "the model classes a checkpoint holds, which could run code; nothing of them ran."
                                ) from None
        raise DetectorError(
            f"Detector weights {path} are not a YOLO checkpoint ({type(error).__name__}: {detail})."
        ) from None
    check_task(path, checkpoint.task)
    return checkpoint


def write_record(record: Path, data: object) -> bool:
    """`data` as JSON at `record` (beside the weights), whole or not at all; False where the folder is read-only
    (the next process works it out again)."""
    scratch = record.with_name(f".{record.name}.{os.getpid()}")
    try:
        scratch.write_text(json.dumps(data, indent=1))
        os.replace(scratch, record)
    except OSError:
        scratch.unlink(missing_ok=True)
        return False
    return True


def checkpoint_classes(path: Path, model_id: str) -> list[str]:
    """The class names of the checkpoint at `path` in id order, read once and recorded beside it
    (`<stem>.<id16>.classes.json`, the id the weights' sha256): reading them from the checkpoint imports
    Ultralytics and torch, 1.2 s and 700 MB of a process that may never need them (ONNX Runtime, OpenVINO)."""
    record = path.with_name(f"{path.stem}.{model_id[:16]}.classes.json")
    try:
        classes = json.loads(record.read_text())["classes"]
        if isinstance(classes, list) and all(isinstance(name, str) for name in classes):
            return classes
    except (OSError, ValueError, KeyError, TypeError):
        pass
    names = load_checkpoint(path).names
    classes = [names[i] for i in sorted(names)]
    write_record(record, {"weights": path.name, "classes": classes})
    return classes


SCRATCH = ".export-scratch-"  # + the pid of the process exporting, + a random part


def remove_abandoned_scratch(folder: Path) -> None:
    """Remove the scratch copies of weights that processes killed mid-export left in `folder` (their pid is gone;
    an export that ends any other way removes its own)."""
    for scratch in folder.glob(f"{SCRATCH}*"):
        pid = scratch.name.removeprefix(SCRATCH).split("-", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(scratch, ignore_errors=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exported_beside(path: Path, target: Path, **options: Any) -> Path:
    """Ultralytics' export of the weights at `path` (`options` as `YOLO.export` takes them), made once at `target`
    beside them. Exported from a copy in a scratch folder: Ultralytics writes the export beside the file it
    loaded, and a half-written export must never sit at `target`."""
    if target.exists():
        return target
    remove_abandoned_scratch(path.parent)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f"{SCRATCH}{os.getpid()}-") as scratch:
        copy = Path(scratch) / path.name
        shutil.copyfile(path, copy)
        exported = load_checkpoint(path, copy).export(device="cpu", verbose=False, **options)
        os.replace(exported, target)
    return target
