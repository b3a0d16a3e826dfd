"""INT8 weights and activations, opt in (`precision: int8`): ONNX Runtime's static quantization of the ONNX export,
calibrated on the task's own stored images, in QDQ form (ONNX Runtime and OpenVINO both run it with integer
kernels). The detect head's box decoding stays in float: quantizing the distance-to-box arithmetic moves boxes by
whole pixels. The quantized graph is a model of its own: its id is the sha256 of the file."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from engines.base import letterbox

CALIBRATION_IMAGES = 64
PRECISIONS = ("fp32", "int8")  # fp32 is the export itself


class _WithoutPreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


def quantized_path(exported: Path) -> Path:
    return exported.with_name(f"{exported.stem}.int8.onnx")


def head_nodes(model: object) -> list[str]:
    """The nodes of the last module (Ultralytics' Detect or Segment head) after its convolutions: box decoding,
    class sigmoids and the concatenation of the outputs."""
    nodes = list(model.graph.node)  # type: ignore[attr-defined]
    prefixes = {node.name.split("/")[1] for node in nodes if node.name.startswith("/model.")}
    last = max(prefixes, key=lambda prefix: int(prefix.split(".")[1]))
    return [node.name for node in nodes if node.name.startswith(f"/{last}/") and node.op_type != "Conv"]


def quantized_onnx(exported: Path, imgsz: int, stride: int, calibration: Callable[[], list[np.ndarray]]) -> Path:
    """The QDQ-quantized copy of `exported`, made once beside it from `calibration()`'s images (BGR arrays,
    letterboxed here as inference letterboxes them)."""
    target = quantized_path(exported)
    if target.exists():
        return target
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    images = calibration()[:CALIBRATION_IMAGES]
    if not images:
        raise ValueError(f"precision int8 needs stored images to calibrate {exported.name} on, and there are none "
                         "yet: run a batch in fp32 first.")

    class Letterboxed(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.tensors: Iterator[dict[str, np.ndarray]] = (
                {"images": np.ascontiguousarray(letterbox(image, imgsz, stride).array[None, :, :, ::-1]
                                                .transpose(0, 3, 1, 2), dtype=np.float32) / 255}
                for image in images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.tensors, None)

    scratch = target.with_name(f".{target.name}.{os.getpid()}")
    source = onnx.load(str(exported))
    # ONNX Runtime advises its pre-processing step on the root logger; that step's symbolic shape inference cannot
    # complete on an export of dynamic height and width (tried), so the advice is kept out of the run log.
    advice = _WithoutPreprocessingAdvice()
    logging.getLogger().addFilter(advice)
    try:
        quantize_static(str(exported), str(scratch), Letterboxed(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=head_nodes(source))
    finally:
        logging.getLogger().removeFilter(advice)
    quantized = onnx.load(str(scratch))
    del quantized.metadata_props[:]  # Ultralytics' metadata (names, imgsz, stride, task), as the export has it
    quantized.metadata_props.extend(source.metadata_props)
    quantized.metadata_props.add(key="precision", value="int8")
    onnx.save(quantized, str(scratch))
    os.replace(scratch, target)
    return target
