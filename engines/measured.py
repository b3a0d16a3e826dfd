"""`runtime: auto` on a CPU: whichever CPU runtime runs these weights fastest on this machine, by measurement.

Each candidate is loaded and times the same letterboxed frame (a 4:3 photo at the model's size), the candidates
taking turns; the fastest median wins. The figures are recorded beside the weights, per machine (CPU model, cores,
threads), so a process after the first reads the choice instead of measuring again."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.base import LoadedModel, write_record

CPU_RUNTIMES = ("onnx", "openvino")  # torch through Ultralytics is slower on a CPU and stays the GPU default
TIMED_PASSES = 7


@dataclass(frozen=True)
class RuntimeChoice:
    chosen: str
    milliseconds: dict[str, float]  # per candidate: the median forward pass of one frame
    measured_now: bool  # False: read from the record of an earlier measurement


def machine_key(threads: int) -> str:
    """What a measurement holds for: this CPU, its core count and the threads the runtimes use."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} | {os.cpu_count()} cores | {threads} threads"


def record_path(weights: Path, model_id: str, variant: str) -> Path:
    """Where the figures for these weights at one size and precision (`variant`) are kept."""
    return weights.with_name(f"{weights.stem}.{model_id[:16]}.{variant}.runtimes.json")


def frame_milliseconds(models: dict[str, LoadedModel]) -> dict[str, float]:
    """Per model, the median time of one forward pass (with NMS) of a 4:3 frame at the model's size. The models
    take turns pass by pass, so a burst of load elsewhere on the machine falls on all of them alike."""
    frames = {name: model.letterbox(np.full((int(model.imgsz * 3 / 4), model.imgsz, 3), 114, dtype=np.uint8))
              for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(TIMED_PASSES + 1):
        for name, model in models.items():
            started = time.perf_counter()
            model.predict([frames[name]], 0.25)
            if round_:  # the first round warms up
                times[name].append(1000 * (time.perf_counter() - started))
    return {name: round(statistics.median(values), 3) for name, values in times.items()}


def fastest_cpu_runtime(weights: Path, model_id: str, variant: str, threads: int,
                        load: Callable[[str], LoadedModel]) -> RuntimeChoice:
    """The recorded choice for this machine, or each of `CPU_RUNTIMES` loaded with `load` and timed."""
    record, key = record_path(weights, model_id, variant), machine_key(threads)
    try:
        known = json.loads(record.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known and known[key].get("chosen") in CPU_RUNTIMES:
        return RuntimeChoice(known[key]["chosen"], known[key]["milliseconds"], measured_now=False)
    milliseconds = frame_milliseconds({name: load(name) for name in CPU_RUNTIMES})
    chosen = min(milliseconds, key=milliseconds.__getitem__)
    known[key] = {"chosen": chosen, "milliseconds": milliseconds}
    write_record(record, known)  # in a read-only folder, measured again by the next process
    return RuntimeChoice(chosen, milliseconds, measured_now=True)
