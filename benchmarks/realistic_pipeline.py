"""The work users run: real photographs of mixed sizes through a standard-size detector, side by side.

Photographs: the real photos scikit-image ships (astronaut, coffee, chelsea, rocket, hubble_deep_field, ...),
turned into distinct files by random crops, scales between 0.3 and 12 MP, quarter turns (portrait and
landscape), JPEG qualities 60-95. Model: YOLOv8n's layout at 640 px, built from Ultralytics' `yolov8n.yaml`
with random weights whose BatchNorm statistics are calibrated on 16 of the photos and whose class bias is
lowered, so it finds ~14 objects per photo with confidences spread over 0.05-0.99 as a trained detector does
(speed does not depend on the weights, but routing, review queues and versions need detections to work on).
Each contender runs in its own process, one after the other, and reports wall time, CPU seconds and peak RSS:

  (a) the ten-line loop: `YOLO(w).predict(path)` per file, writing YOLO label files;
  (b) `autoannotate run` end to end on a fresh home (ingest, predict, route, version), with runtime `auto` (the
      default) and with each CPU runtime (ONNX Runtime, OpenVINO) set, and at `precision: int8` (runtime auto);
  (c) each CPU runtime's bare forward pass, one image at a time, over the very tensors (b) feeds its model:
      decoded and letterboxed to stride-32 rectangles the same way (the ceiling; decoding not timed).

Also: the inference stage's own images/s inside (b), and a run's fixed overhead: process start to the
first image predicted, on a 10-image inbox, for a fresh home and for a home that has run before (the
sensor's case: a small batch into an existing home). The one-time ONNX export (cached next to the
weights) happens before (b) and is reported on its own line.

    PYTHONPATH=. .venv/bin/python benchmarks/realistic_pipeline.py --images 1000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RUNTIMES = ("onnx", "openvino")  # the CPU runtimes `auto` chooses between
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
          "colorwheel"]
LOOP = """
import sys, time
from pathlib import Path
from core.offline import make_ultralytics_offline
make_ultralytics_offline()
from ultralytics import YOLO
weights, out, paths = sys.argv[1], Path(sys.argv[2]), sys.argv[3:]
model = YOLO(weights)
out.mkdir(parents=True, exist_ok=True)
for path in paths:
    result = model.predict(path, imgsz=640, verbose=False)[0]
    lines = [f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}" for c, (x, y, w, h) in
             zip(result.boxes.cls.tolist(), result.boxes.xywhn.tolist())]
    (out / (Path(path).stem + ".txt")).write_text("".join(line + "\\n" for line in lines))
"""
CEILING = """
import sys, time
import numpy as np
from core.image_checks import load_oriented_bgr
from engines.base import letterbox
runtime, onnx_file, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
tensors = []
for path in paths:  # decoded and letterboxed (rectangles) exactly as the pipeline feeds its model
    bgr = load_oriented_bgr(open(path, "rb").read())
    tensors.append(np.ascontiguousarray(letterbox(bgr, 640, 32).array[None, :, :, ::-1].transpose(0, 3, 1, 2),
                                        dtype=np.float32) / 255)
if runtime == "onnx":
    import onnxruntime as ort
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    forward = lambda tensor: session.run(None, {name: tensor})
else:  # the settings the openvino runtime compiles with
    import os, openvino as ov
    request = ov.Core().compile_model(onnx_file, "CPU", {"INFERENCE_NUM_THREADS": os.cpu_count(),
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    forward = lambda tensor: request.infer({0: tensor})
forward(tensors[0])
started = time.perf_counter()
for tensor in tensors:
    forward(tensor)
print(f"forward-only seconds {time.perf_counter() - started:.3f}")
"""
FLOOR = """
import time
started = time.perf_counter()
import os, sys
from pathlib import Path
import dagster as dg
from pipelines.instance import persistent_instance
parts = dg.DynamicPartitionsDefinition(name="batch")

@dg.asset(partitions_def=parts)
def first_step() -> None:
    print(f"{time.perf_counter() - started:.3f}")

instance = persistent_instance(Path(sys.argv[1]))
key = str(time.time())
instance.add_dynamic_partitions("batch", [key])
dg.materialize([first_step], instance=instance, partition_key=key)
"""


# The same floor for a job of the annotate_batch job's shape: its assets, checks, dependencies and partitions,
# every body empty; what it prints: seconds to our modules imported, then to the body in `predictions`' place.
SHAPED_FLOOR = """
import time
started = time.perf_counter()
import sys
from pathlib import Path
import dagster as dg
from assets import concepts, inference, ingestion, triage
from assets.partitions import batch_partitions
from pipelines.instance import persistent_instance
imported = time.perf_counter() - started
modules = [ingestion, inference, triage, concepts]

def empty_asset(real):
    @dg.multi_asset(specs=list(real.specs), name=f"empty_{real.node_def.name}", can_subset=False)
    def body():
        if any(spec.key.path == ["predictions"] for spec in real.specs):
            print(f"{imported:.3f} {time.perf_counter() - started:.3f}")
        for spec in real.specs:
            yield dg.MaterializeResult(asset_key=spec.key)
    return body

def empty_checks(real):
    @dg.multi_asset_check(specs=list(real.check_specs), name=f"empty_{real.node_def.name}")
    def body():
        for spec in real.check_specs:
            yield dg.AssetCheckResult(asset_key=spec.asset_key, check_name=spec.name, passed=True)
    return body

assets = [empty_asset(real) for real in dg.load_assets_from_modules(modules)]
checks = [empty_checks(real) for real in dg.load_asset_checks_from_modules(modules)]
instance = persistent_instance(Path(sys.argv[1]))
key = str(time.time())
instance.add_dynamic_partitions(batch_partitions.name, [key])
dg.materialize([*assets, *checks], instance=instance, partition_key=key)
"""


def make_photos(folder: Path, count: int, seed: int, max_megapixels: float = 12.0, flips: bool = False) -> list[Path]:
    """`count` distinct JPEGs derived from scikit-image's real photographs: random crops, quarter turns (and mirror
    images with `flips`), scales between 0.3 and `max_megapixels`, JPEG qualities 60-95."""
    import skimage.data
    from PIL import Image

    rng = random.Random(seed)
    sources = [Image.fromarray(np.asarray(getattr(skimage.data, name)())).convert("RGB") for name in PHOTOS]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        photo = rng.choice(sources)
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.4, 1.0)), int(h * rng.uniform(0.4, 1.0))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        image = photo.crop((x, y, x + cw, y + ch)).rotate(rng.choice([0, 90, 180, 270]), expand=True)
        if flips and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        megapixels = 10 ** rng.uniform(np.log10(0.3), np.log10(max_megapixels))
        scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
        image = image.resize((max(16, int(image.width * scale)), max(16, int(image.height * scale))),
                             Image.Resampling.BICUBIC)
        path = folder / f"photo_{index:05d}.jpg"
        image.save(path, quality=rng.randint(60, 95), progressive=rng.random() < 0.3)
        paths.append(path)
    return paths


def build_yolov8n(target: Path, photos: list[Path]) -> Path:
    """YOLOv8n's layout with random weights, from the model YAML Ultralytics ships (nothing downloaded).
    Untouched, its activations vanish and it finds nothing at all. BatchNorm statistics from 32 of the photos
    give it image-dependent scores; the class bias is then shifted so that 0.5 % of the anchors score above
    the pipeline's 0.05 floor on those photos (NMS leaves a realistic number of detections per photo)."""
    from core.offline import make_ultralytics_offline

    make_ultralytics_offline()
    import torch
    from ultralytics import YOLO
    from ultralytics.data.augment import LetterBox

    from core.image_checks import load_oriented_bgr

    if target.exists():
        return target
    torch.manual_seed(0)
    network = YOLO("yolov8n.yaml").model
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the calibration batch
    square = LetterBox((640, 640), auto=False)
    arrays = [load_oriented_bgr(path.read_bytes()) for path in photos[:32]]
    batch = torch.stack([torch.from_numpy(np.ascontiguousarray(square(image=a)[:, :, ::-1])).permute(2, 0, 1)
                         for a in arrays]).float() / 255
    with torch.no_grad():
        network.train()
        network(batch)
        network.eval()
        scores = network(batch)[0][:, 4:].amax(1).clamp(1e-12, 1 - 1e-7)
        logits = torch.log(scores / (1 - scores)).flatten()
        shift = float(np.log(0.05 / 0.95) - torch.quantile(logits, 0.995))
        for branch in network.model[-1].cv3:
            branch[-1].bias += shift
    # Ultralytics' own save stores float16, in which the calibrated statistics underflow; keep float32.
    torch.save({"model": network, "train_args": {"imgsz": 640, "task": "detect"}, "date": None}, target)
    return target


def photo_task(work: Path, weights: Path) -> Path:
    """The benchmarks' task over the photographs: one concept, the model at 640 px, two reviewers."""
    task = work / "task.yaml"
    task.write_text(json.dumps({
        "name": "photos", "concepts": ["thing"], "class_map": {"0": "thing"}, "annotator": "bench",
        "model": {"weights": str(weights), "imgsz": 640},
        "thresholds": {"upper": 0.9, "lower": 0.5}, "reviewers": ["r1", "r2"]}))
    return task


MILESTONES = {  # what the run logs, in order, and what was done by then
    "running the pipeline over": "imports, settings, the home's checks, the batch pinned",
    " - inputs - batch ": "the Dagster run started, ingestion done",
    " runs on ": "the model loaded (and `auto` chose its runtime)",
    "predicted 1/": "the first image predicted",
}


def time_to_first_prediction(cli: Path, inbox: Path, task: Path, home: Path) -> tuple[float, dict[str, float]]:
    """Seconds from starting `autoannotate run` to its log line for the first image predicted, and to each of
    `MILESTONES` on the way (the profile of the fixed cost)."""
    started = time.perf_counter()
    process = subprocess.Popen([str(cli), "run", "--inbox", str(inbox), "--task-file", str(task), "--json"],
                               env={**os.environ, "AUTOANNOTATE_HOME": str(home)}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    reached: dict[str, float] = {}
    for line in process.stderr:
        for marker in MILESTONES:
            if marker not in reached and marker in line:
                reached[marker] = time.perf_counter() - started
    if process.wait() != 0 or "predicted 1/" not in reached:
        raise SystemExit("the 10-image run failed or never predicted an image")
    return reached["predicted 1/"], reached


def print_profile(reached: dict[str, float]) -> None:
    before = 0.0
    for marker, meaning in MILESTONES.items():
        if marker in reached:
            print(f"      {reached[marker]:5.2f} s (+{reached[marker] - before:4.2f}) {meaning}")
            before = reached[marker]


def peak_rss_mb(pid: int, done: threading.Event, peak: list[float],
                trace: list[tuple[float, float]] | None = None) -> None:
    """Follow a child's high-water RSS (VmHWM) until it ends, and with `trace` its RSS over time (epoch seconds,
    MB). `wait4`'s ru_maxrss would also count this parent's memory at fork time, before the child's exec."""
    while not done.wait(0.05):
        try:
            with open(f"/proc/{pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]) / 1024)
                    elif line.startswith("VmRSS:") and trace is not None:
                        trace.append((time.time(), int(line.split()[1]) / 1024))
        except (FileNotFoundError, ProcessLookupError):
            return


def measured(command: list[str], env: dict | None = None, trace: list[tuple[float, float]] | None = None) -> dict:
    """Run a process to its end; its wall time, CPU seconds (user + system), peak RSS, output and log (and its
    RSS over time into `trace`)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out, stderr=err)
        done, peak = threading.Event(), [0.0]
        follower = threading.Thread(target=peak_rss_mb, args=(process.pid, done, peak, trace))
        follower.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        done.set()
        follower.join()
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{command[:3]} failed:\n{err.read()[-2000:]}")
        return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": peak[0], "out": out.read(),
                "err": err.read()}


def run_child(code: str, *args: str) -> dict:
    return measured([sys.executable, "-c", code, *args], env={"PYTHONPATH": os.getcwd()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="folder for photos and homes (default: a temp dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-realistic-"))
    paths = make_photos(work / "inbox", args.images, args.seed)
    small_inbox = work / "inbox-10"
    small_inbox.mkdir(exist_ok=True)
    for path in paths[:10]:
        shutil.copyfile(path, small_inbox / path.name)
    for stale in sorted(small_inbox.iterdir())[10:]:  # left by an earlier run with the same --work
        stale.unlink()
    sizes = [os.path.getsize(p) for p in paths]
    weights = build_yolov8n(work / "yolov8n-random.pt", paths)
    task = photo_task(work, weights)
    print(f"{len(paths)} photos ({sum(sizes) / 1e6:.0f} MB), {os.cpu_count()} cores, model YOLOv8n (random) at 640")

    def report(label: str, result: dict, images: int) -> float:
        rate = images / result["wall"]
        print(f"{label:<42} {result['wall']:7.1f} s wall {rate:6.2f} images/s  {result['cpu']:6.1f} CPU s  "
              f"peak RSS {result['rss_mb']:5.0f} MB")
        return rate

    rate_a = report("(a) plain YOLO(w).predict(path) loop", run_child(LOOP, str(weights), str(work / "labels"),
                                                                     *map(str, paths)), len(paths))
    from resources.detector import Detector

    started = time.perf_counter()
    detector = Detector(weights=str(weights), imgsz=640)
    model = detector.load()  # exports to ONNX once, next to the weights
    onnx_file = next(weights.parent.glob(f"{weights.stem}.{model.model_id[:16]}.onnx"))
    print(f"one-time ONNX export and load (runtime {model.runtime}): {time.perf_counter() - started:.1f} s")
    cli = Path(sys.executable).parent / "autoannotate"
    ceilings = {}
    for runtime in RUNTIMES:
        ceiling = run_child(CEILING, runtime, str(onnx_file), *map(str, paths))
        ceilings[runtime] = len(paths) / float(ceiling["out"].split()[-1])
        label = f"(c) bare forward pass only, {runtime}"
        print(f"{label:<42} {len(paths) / ceilings[runtime]:7.1f} s      {ceilings[runtime]:6.2f} images/s")
    best = max(ceilings, key=ceilings.__getitem__)
    rates_b, stages = {}, {}
    for runtime, precision in [("auto", "fp32"), *((r, "fp32") for r in RUNTIMES), ("auto", "int8")]:
        home = work / f"home-{runtime}-{precision}"
        shutil.rmtree(home, ignore_errors=True)  # (b) always starts on a fresh home
        run = measured([str(cli), "run", "--inbox", str(work / "inbox"), "--task-file", str(task), "--json"],
                       env={"AUTOANNOTATE_HOME": str(home), "AUTOANNOTATE_RUNTIME": runtime,
                            "AUTOANNOTATE_PRECISION": precision})
        summary = json.loads(run["out"])
        inference = next(iter(summary["inference"].values()))
        rates_b[runtime, precision] = report(f"(b) autoannotate run, {runtime} {precision}", run, len(paths))
        stages[runtime, precision] = inference["images_per_second"]
        print(f"    ran on {inference['runtime']}; inference stage {stages[runtime, precision]:.2f} images/s = "
              f"{stages[runtime, precision] / ceilings[best]:.2f}x the best float32 bare pass ({best}); "
              f"{sum(summary['predictions'].values())} predictions")
    rate_b, stage, rate_c = rates_b["auto", "fp32"], stages["auto", "fp32"], ceilings[best]
    for home in (work / "home-10", work / "home-floor", work / "home-shaped"):
        shutil.rmtree(home, ignore_errors=True)
    fresh, fresh_profile = time_to_first_prediction(cli, small_inbox, task, work / "home-10")
    for path in paths[10:20]:  # ten more files: the second run finds only those new (settled: copy2 keeps the
        shutil.copy2(path, small_inbox / path.name)  # mtime, else the run waits 1 s to see they are not written to)
    warm, warm_profile = time_to_first_prediction(cli, small_inbox, task, work / "home-10")
    print(f"fixed overhead: process start to first image predicted, 10-image inbox: {fresh:.2f} s on a fresh home, "
          f"{warm:.2f} s on a home that has run before")
    print("    fresh home:")
    print_profile(fresh_profile)
    print("    home that has run before:")
    print_profile(warm_profile)
    floors = [float(run_child(FLOOR, str(work / "home-floor"))["out"]) for _ in range(2)]
    print(f"    Dagster's own floor: process start to the body of one empty asset run in-process: {floors[0]:.2f} s "
          f"on a fresh instance, {floors[1]:.2f} s on an existing one; above it: {fresh - floors[0]:.2f} s (fresh), "
          f"{warm - floors[1]:.2f} s (run before)")
    shaped = [[float(f) for f in run_child(SHAPED_FLOOR, str(work / "home-shaped"))["out"].split()] for _ in range(2)]
    print(f"    the same floor for a job of annotate_batch's shape (6 assets, 12 checks, every body empty): "
          f"{shaped[0][1]:.2f} s fresh, {shaped[1][1]:.2f} s existing, of which importing our asset modules "
          f"{shaped[0][0]:.2f} s; above it: {fresh - shaped[0][1]:.2f} s (fresh), {warm - shaped[1][1]:.2f} s "
          "(run before): ingestion, model load and the first image")
    print(f"ratios: (b)/(a) = {rate_b / rate_a:.2f}x, inference stage/(c) = {stage / rate_c:.2f}x, "
          f"(c)/(a) = {rate_c / rate_a:.2f}x (auto; (c) = the best bare pass, {best})")
    for runtime in RUNTIMES:
        print(f"    {runtime} fp32: (b)/(a) = {rates_b[runtime, 'fp32'] / rate_a:.2f}x, inference stage/(c) = "
              f"{stages[runtime, 'fp32'] / ceilings[runtime]:.2f}x of its own bare pass")
    print(f"    auto int8: (b)/(a) = {rates_b['auto', 'int8'] / rate_a:.2f}x (opt in: what INT8 costs in accuracy "
          "is benchmarks/int8.py's)")
    print("(a) and (b) include process start and model load; (b) also ingests, routes and builds a version.")


if __name__ == "__main__":
    main()
