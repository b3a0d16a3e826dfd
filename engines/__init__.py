"""Model runtimes, one module each behind `engines.base.Engine`, gathered in one registry that the detector
resource and its configuration read.

A new runtime is one module declaring a `Runtime` (how it loads weights into a `LoadedModel`) and one line in
`RUNTIMES` below."""

from __future__ import annotations

from engines.base import Runtime
from engines.onnx_runtime import ONNX
from engines.openvino_runtime import OPENVINO
from engines.torch_runtime import TORCH

RUNTIMES: dict[str, Runtime] = {r.name: r for r in (TORCH, ONNX, OPENVINO)}


def runtime_named(name: str) -> Runtime:
    """The runtime called `name`, or one sentence naming the ones there are."""
    if name not in RUNTIMES:
        raise ValueError(f"runtime {name!r} is not one autoannotate has: auto, {', '.join(RUNTIMES)} (set "
                         "AUTOANNOTATE_RUNTIME or the detector's `runtime`).")
    return RUNTIMES[name]
