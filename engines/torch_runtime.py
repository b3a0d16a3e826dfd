"""Ultralytics weights run by torch through Ultralytics' own predictor (the GPU default)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.base import (
    DetectorError,
    LoadedModel,
    LoadOptions,
    Runtime,
    UltralyticsEngine,
    load_checkpoint,
    trained_imgsz,
)


def load_torch(path: Path, model_id: str, options: LoadOptions) -> LoadedModel:
    if options.precision != "fp32":
        raise DetectorError(f"precision {options.precision} runs on the onnx or openvino runtime, not torch (set "
                            "AUTOANNOTATE_RUNTIME or the detector's `runtime`).")
    checkpoint = load_checkpoint(path)
    class_names = [checkpoint.names[i] for i in sorted(checkpoint.names)]
    imgsz = options.imgsz or trained_imgsz(checkpoint)
    # The first predict builds the predictor, whose device selection resets torch's
    # thread count to Ultralytics' default; set ours afterwards so it sticks.
    checkpoint.predict(np.zeros((imgsz, imgsz, 3), dtype=np.uint8), imgsz=imgsz, device=options.device,
                       verbose=False)
    import torch

    torch.set_num_threads(options.threads)
    stride = int(max(np.atleast_1d(np.asarray(checkpoint.predictor.model.stride, dtype=float))))
    return LoadedModel(model_id, path.name, str(path), checkpoint.task, class_names, imgsz, TORCH.name,
                       UltralyticsEngine(checkpoint, imgsz, class_names), stride)


TORCH = Runtime("torch", "torch through Ultralytics' predictor", load_torch)
