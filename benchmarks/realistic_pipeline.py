"""The work users run: real photographs of mixed sizes through a standard-size detector, side by side.

Photographs: the real photos scikit-image ships (astronaut, coffee, chelsea, rocket, hubble_deep_field, ...),
turned into distinct files by random crops, scales between 0.3 and 12 MP, quarter turns (portrait and
landscape), JPEG qualities 60-95. Model: YOLOv8n's layout at 640 px, built from Ultralytics' `yolov8n.yaml`
with random weights (speed does not depend on the weights). Each contender runs in its own process, one after
the other, and reports wall time, CPU seconds and peak RSS:

  (a) the ten-line loop: `YOLO(w).predict(path)` per file, writing YOLO label files;
  (b) `autoannotate run` end to end on a fresh home (ingest, predict, route, version);
  (c) ONNX Runtime's bare forward pass over the same images letterboxed to 640x640 (the ceiling).

    PYTHONPATH=. .venv/bin/python benchmarks/realistic_pipeline.py --images 200
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
import time
from pathlib import Path

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
import numpy as np, onnxruntime as ort
from PIL import Image
from ultralytics.data.augment import LetterBox
onnx_file, paths = sys.argv[1], sys.argv[2:]
box = LetterBox((640, 640), auto=False)
tensors = []
for path in paths:
    bgr = np.asarray(Image.open(path).convert("RGB"))[:, :, ::-1]
    tensors.append(np.ascontiguousarray(box(image=bgr)[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255)
session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
session.run(None, {name: tensors[0]})
started = time.perf_counter()
for tensor in tensors:
    session.run(None, {name: tensor})
print(f"forward-only seconds {time.perf_counter() - started:.3f}")
"""


def make_photos(folder: Path, count: int, seed: int) -> list[Path]:
    """`count` distinct JPEGs derived from scikit-image's real photographs."""
    import numpy as np
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
        megapixels = 10 ** rng.uniform(np.log10(0.3), np.log10(12.0))
        scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
        image = image.resize((max(16, int(image.width * scale)), max(16, int(image.height * scale))),
                             Image.Resampling.BICUBIC)
        path = folder / f"photo_{index:05d}.jpg"
        image.save(path, quality=rng.randint(60, 95), progressive=rng.random() < 0.3)
        paths.append(path)
    return paths


def build_yolov8n(target: Path) -> Path:
    """YOLOv8n's layout with random weights, from the model YAML Ultralytics ships (nothing downloaded)."""
    from core.offline import make_ultralytics_offline

    make_ultralytics_offline()
    from ultralytics import YOLO

    if not target.exists():
        YOLO("yolov8n.yaml").save(str(target))
    return target


def measured(command: list[str], env: dict | None = None) -> dict:
    """Run a process to its end; its wall time, CPU seconds (user + system), peak RSS (from wait4) and output."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{command[:3]} failed:\n{err.read()[-2000:]}")
        return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss_mb": usage.ru_maxrss / 1024,
                "out": out.read()}


def run_child(code: str, *args: str) -> dict:
    return measured([sys.executable, "-c", code, *args], env={"PYTHONPATH": os.getcwd()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="folder for photos and homes (default: a temp dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-realistic-"))
    paths = make_photos(work / "inbox", args.images, args.seed)
    sizes = [os.path.getsize(p) for p in paths]
    weights = build_yolov8n(work / "yolov8n-random.pt")
    task = work / "task.yaml"
    task.write_text(json.dumps({
        "name": "photos", "concepts": ["thing"], "class_map": {"0": "thing"}, "annotator": "bench",
        "model": {"weights": str(weights), "imgsz": 640},
        "thresholds": {"upper": 0.9, "lower": 0.5}, "reviewers": ["r1", "r2"]}))
    print(f"{len(paths)} photos ({sum(sizes) / 1e6:.0f} MB), {os.cpu_count()} cores, model YOLOv8n (random) at 640")

    def report(label: str, result: dict, images: int) -> float:
        rate = images / result["wall"]
        print(f"{label:<42} {result['wall']:7.1f} s wall {rate:6.2f} images/s  {result['cpu']:6.1f} CPU s  "
              f"peak RSS {result['rss_mb']:5.0f} MB")
        return rate

    rate_a = report("(a) plain YOLO(w).predict(path) loop", run_child(LOOP, str(weights), str(work / "labels"),
                                                                     *map(str, paths)), len(paths))
    home = work / "home"
    shutil.rmtree(home, ignore_errors=True)  # (b) always starts on a fresh home
    cli = Path(sys.executable).parent / "autoannotate"
    rate_b = report("(b) autoannotate run, fresh home", measured(
        [str(cli), "run", "--inbox", str(work / "inbox"), "--task", str(task), "--json"],
        env={"AUTOANNOTATE_HOME": str(home)}), len(paths))
    from ultralytics import YOLO

    onnx_file = YOLO(str(weights)).export(format="onnx", imgsz=640, dynamic=True, simplify=True, verbose=False)
    ceiling = run_child(CEILING, str(onnx_file), *map(str, paths))
    forward = float(ceiling["out"].split()[-1])
    label = "(c) ONNX Runtime forward pass only, 640x640"
    print(f"{label:<42} {forward:7.1f} s      {len(paths) / forward:6.2f} images/s")
    print(f"ratios: (b)/(a) = {rate_b / rate_a:.2f}x, (c)/(a) = {len(paths) / forward / rate_a:.2f}x")
    print("(a) and (b) include process start and model load; (b) also ingests, routes and builds a version.")


if __name__ == "__main__":
    main()
