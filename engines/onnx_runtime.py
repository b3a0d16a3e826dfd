"""Ultralytics weights exported once to ONNX (cached next to them, keyed by their hash) and run by ONNX Runtime on
the CPU (measured faster than torch there: docs/benchmarks.md). A detect model runs on ONNX Runtime alone, without
torch, with NMS in numpy; a segment model through Ultralytics' predictor, which turns its masks into polygons."""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.offline import make_ultralytics_offline
from core.yolo_outputs import detections_from_raw
from engines.base import (
    Detection,
    DetectorError,
    Engine,
    Letterboxed,
    LoadedModel,
    LoadOptions,
    Runtime,
    UltralyticsEngine,
    check_task,
    exported_beside,
    model_ref,
    placed_detections,
)
from engines.int8 import PRECISIONS, quantized_onnx, quantized_path


@dataclass
class RawDetectEngine:
    """An exported detect graph run by a CPU runtime directly (ONNX Runtime, OpenVINO): no torch in the process, no
    per-image copies beyond the one float tensor, and NMS in numpy exactly as Ultralytics' predictor does it."""

    forward: Callable[[np.ndarray], np.ndarray]  # NCHW float32 RGB in [0, 1] -> the head's raw output
    class_names: list[str]
    end_to_end: bool

    def predict(self, images: list[Letterboxed], conf_floor: float) -> list[list[Detection]]:
        bgr = np.stack([image.array for image in images])
        tensor = np.ascontiguousarray(bgr[..., ::-1].transpose(0, 3, 1, 2), dtype=np.float32) / 255
        raw = self.forward(tensor)
        found = []
        for output, image in zip(raw, images, strict=True):
            rows = detections_from_raw(output, len(self.class_names), conf_floor, self.end_to_end)
            found.append(placed_detections(rows[:, :4], rows[:, 4], rows[:, 5], self.class_names, image))
        return found


def exported_onnx(path: Path, model_id: str) -> Path:
    """Export once through Ultralytics, at the size the weights were trained at, with dynamic height and width
    (any imgsz runs on it); the file name carries the weights' hash."""
    return exported_beside(path, path.with_name(f"{path.stem}.{model_id[:16]}.onnx"), format="onnx", dynamic=True,
                           simplify=True)


def onnx_metadata(exported: Path) -> dict[str, str]:
    """The metadata Ultralytics writes into an export (task, names, imgsz, stride, end2end)."""
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(exported), load_external_data=False).metadata_props}


def graph_to_run(path: Path, model_id: str, options: LoadOptions) -> tuple[Path, str]:
    """The ONNX graph a CPU runtime runs for these options, and its model id: the export itself (the weights'
    id), or at `precision: int8` its quantized copy (its own id: its predictions are another model's)."""
    exported = exported_onnx(path, model_id)
    if options.precision == "fp32":
        return exported, model_id
    if options.precision not in PRECISIONS:
        raise DetectorError(f"precision {options.precision!r} is not one autoannotate has: {', '.join(PRECISIONS)} "
                            "(set AUTOANNOTATE_PRECISION or the task's model.precision).")
    about = onnx_metadata(exported)
    if about.get("task") != "detect":
        raise DetectorError(f"precision int8 quantizes detect models; {path} is a {about.get('task')!r} model.")
    if options.calibration is None and not quantized_path(exported).exists():
        raise DetectorError(f"{path} has no INT8 copy yet: the first run at precision int8 makes one, calibrated "
                            "on the task's stored images.")
    imgsz = options.imgsz or max(ast.literal_eval(about["imgsz"]))
    quantized = quantized_onnx(exported, imgsz, int(about.get("stride", 32)), options.calibration or list)
    return quantized, model_ref(quantized).model_id


def exported_model(path: Path, model_id: str, options: LoadOptions, runtime: str, exported: Path,
                   forward: Callable[[np.ndarray], np.ndarray], ultralytics_source: Callable[[], Path]
                   ) -> LoadedModel:
    """A `LoadedModel` over an export: a detect model through `forward` and our NMS, a segment model through
    Ultralytics' predictor on `ultralytics_source()` (its masks need Ultralytics' post-processing). Warmed up."""
    about = onnx_metadata(exported)
    task_type = about.get("task", "")
    check_task(path, task_type)
    names = ast.literal_eval(about["names"])
    class_names = [names[i] for i in sorted(names)]
    imgsz = options.imgsz or max(ast.literal_eval(about["imgsz"]))
    stride = int(about.get("stride", 32))
    if task_type == "detect":
        engine: Engine = RawDetectEngine(forward, class_names, about.get("end2end") == "True")
    else:
        make_ultralytics_offline()
        from ultralytics import YOLO

        engine = UltralyticsEngine(YOLO(str(ultralytics_source()), task=task_type), imgsz, class_names)
    name = path.name if options.precision == "fp32" else f"{path.name} ({options.precision})"
    model = LoadedModel(model_id, name, str(path), task_type, class_names, imgsz, runtime, engine, stride,
                        options.precision)
    model.predict([model.letterbox(np.zeros((imgsz, imgsz, 3), dtype=np.uint8))], options.conf_floor)  # warm up
    return model


def load_onnx(path: Path, model_id: str, options: LoadOptions) -> LoadedModel:
    import onnxruntime as ort

    exported, model_id = graph_to_run(path, model_id, options)
    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = options.threads
    session = ort.InferenceSession(str(exported), session_options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    return exported_model(path, model_id, options, ONNX.name, exported,
                          lambda tensor: session.run(None, {input_name: tensor})[0], lambda: exported)


ONNX = Runtime("onnx", "ONNX Runtime on the CPU (exported once, cached beside the weights)", load_onnx)
