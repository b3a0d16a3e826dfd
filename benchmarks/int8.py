"""INT8 against float32, side by side: speed on each CPU runtime, and what it costs in accuracy.

(1) Labelled scenes (synthetic demo scenes with exact ground truth), the bundled demo detector: quantized with
    `precision: int8` (ONNX Runtime's static quantization, calibrated on 64 other scenes, as a task calibrates on
    its stored images), then on held-out scenes: milliseconds per image, mAP50 and mAP50-95, and the share of
    predictions auto-accepted at the demo task's target precision (calibrated on those scenes' labels), float32
    and INT8, on ONNX Runtime and OpenVINO.
(2) Real photographs (scikit-image's, 0.3-12 MP) through YOLOv8n's layout at 640 (random, calibrated weights as in
    `realistic_pipeline.py`): milliseconds per image only; random weights have no accuracy to lose.

    PYTHONPATH=. .venv/bin/python benchmarks/int8.py [--scenes 300] [--photos 100]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from apps.demo_scenes import generate_scene
from benchmarks.realistic_pipeline import build_yolov8n, make_photos
from core.image_checks import load_oriented_bgr
from core.model_loop import average_precision, share_auto_accepted
from core.settings import DEMO_TASK, DEMO_WEIGHTS
from core.task_config import load_task
from resources.detector import Detector

HELD_OUT_SEED, CALIBRATION_SEED = 70_000_000, 71_000_000  # far from the demo detector's training seeds
RUNTIMES = ("onnx", "openvino")


def timed_predictions(detector: Detector, images: list[np.ndarray], calibration: list[np.ndarray]
                      ) -> tuple[float, list]:
    model = detector.load(lambda: calibration)
    frames = [model.letterbox(image) for image in images]
    model.predict(frames[:1], detector.conf_floor)
    started = time.perf_counter()
    found = [model.predict([frame], detector.conf_floor)[0] for frame in frames]
    return 1000 * (time.perf_counter() - started) / len(frames), found


def scenes_part(count: int, work: Path) -> None:
    task = load_task(DEMO_TASK)
    weights = work / "demo_detector.pt"
    shutil.copyfile(DEMO_WEIGHTS, weights)  # the quantized copy is written beside it, not in models/
    scenes = [generate_scene(HELD_OUT_SEED + i, hard=i % 2 == 1) for i in range(count)]  # as the demo inbox mixes
    images = [np.asarray(image)[:, :, ::-1].copy() for image, _ in scenes]
    calibration = [np.asarray(generate_scene(CALIBRATION_SEED + i, hard=i % 2 == 1)[0])[:, :, ::-1].copy()
                   for i in range(64)]
    references = pd.DataFrame([{"input_id": str(i), "class_name": o.class_name, "x1": o.x1 / image.width,
                                "y1": o.y1 / image.height, "x2": o.x2 / image.width, "y2": o.y2 / image.height}
                               for i, (image, objects) in enumerate(scenes) for o in objects])
    print(f"(1) {count} held-out demo scenes (synthetic), {len(references)} labelled objects, the demo detector at "
          f"its own size; INT8 calibrated on 64 other scenes; accepted share at target precision "
          f"{task.target_precision or 0.95}")
    print(f"{'runtime':<9} {'precision':<9} {'ms/image':>8} {'mAP50':>7} {'mAP50-95':>8} {'auto-accepted':>13}")
    for runtime in RUNTIMES:
        for precision in ("fp32", "int8"):
            detector = Detector(weights=str(weights), runtime=runtime, precision=precision,
                                conf_floor=task.lowest_lower)
            ms, found = timed_predictions(detector, images, calibration)
            predictions = pd.DataFrame([{"input_id": str(i), "class_name": d.class_name, "confidence": d.confidence,
                                         "x1": d.x1, "y1": d.y1, "x2": d.x2, "y2": d.y2}
                                        for i, detections in enumerate(found) for d in detections])
            concepts = sorted(references["class_name"].unique())
            ap = average_precision(predictions.rename(columns={"class_name": "concept"}),
                                   references.rename(columns={"class_name": "concept"}), concepts)
            accepted = share_auto_accepted(task, predictions, references, task.target_precision or 0.95)
            print(f"{runtime:<9} {precision:<9} {ms:8.2f} {ap['map50']:7.3f} {ap['map50_95']:8.3f} "
                  f"{100 * accepted['share']:12.1f}%")


def photos_part(count: int, work: Path) -> None:
    photos = make_photos(work / "photos", count, seed=5)
    weights = build_yolov8n(work / "yolov8n-random.pt", photos)
    images = [load_oriented_bgr(path.read_bytes()) for path in photos]
    print(f"\n(2) {count} real photographs (0.3-12 MP), YOLOv8n's layout at 640 (random weights: speed only); INT8 "
          "calibrated on the first 64 of them")
    rates = {}
    for runtime in RUNTIMES:
        for precision in ("fp32", "int8"):
            detector = Detector(weights=str(weights), imgsz=640, runtime=runtime, precision=precision)
            rates[runtime, precision], _ = timed_predictions(detector, images, images[:64])
            print(f"{runtime:<9} {precision:<9} {rates[runtime, precision]:8.1f} ms/image (forward pass and NMS)")
    best_fp32 = min(rates[r, "fp32"] for r in RUNTIMES)
    best_int8 = min(rates[r, "int8"] for r in RUNTIMES)
    print(f"INT8 speed-up, best runtime against best runtime: {best_fp32 / best_int8:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--photos", type=int, default=100)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    try:
        scenes_part(args.scenes, work)
        photos_part(args.photos, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
