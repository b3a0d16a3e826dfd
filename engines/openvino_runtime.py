"""Ultralytics weights run by OpenVINO on the CPU. A detect model runs the same ONNX export as ONNX Runtime (cached
beside the weights; OpenVINO reads ONNX itself), compiled for this CPU in full float32, with our letterbox and
numpy NMS; a segment model runs Ultralytics' own OpenVINO export through its predictor (its masks need
Ultralytics' post-processing)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from engines.base import LoadedModel, LoadOptions, Runtime, exported_beside
from engines.onnx_runtime import exported_model, graph_to_run

KERNEL_CACHE_ENTRIES = 1000


def exported_openvino(path: Path, model_id: str) -> Path:
    """Ultralytics' OpenVINO export (a folder of xml, bin and metadata), made once beside the weights."""
    return exported_beside(path, path.with_name(f"{path.stem}.{model_id[:16]}_openvino_model"), format="openvino",
                           dynamic=True)


def load_openvino(path: Path, model_id: str, options: LoadOptions) -> LoadedModel:
    import openvino as ov

    exported, model_id = graph_to_run(path, model_id, options)
    # float32 stated: on a CPU with bf16 OpenVINO may otherwise pick bf16 and move confidences past 1e-3. Its cache
    # of kernels compiled per input shape, bounded: photos of mixed sizes letterbox to dozens of shapes, and at the
    # default (5 000) a 1 000-photo run peaked at 2446 MB against 2099 MB at 1 000 entries (1955 MB and 10 % slower
    # uncached), within 5 % of the speed.
    compiled = ov.Core().compile_model(str(exported), "CPU", {
        "INFERENCE_NUM_THREADS": options.threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
        "CPU_RUNTIME_CACHE_CAPACITY": KERNEL_CACHE_ENTRIES})
    output = compiled.outputs[0]
    per_thread = threading.local()  # an infer request serves one call at a time; the model is shared by threads

    def forward(tensor: np.ndarray) -> np.ndarray:
        if not hasattr(per_thread, "request"):
            per_thread.request = compiled.create_infer_request()
        return np.asarray(per_thread.request.infer({0: tensor})[output])

    return exported_model(path, model_id, options, OPENVINO.name, exported, forward,
                          lambda: exported_openvino(path, model_id))


OPENVINO = Runtime("openvino", "OpenVINO on the CPU (the ONNX export, compiled for this CPU)", load_openvino)
