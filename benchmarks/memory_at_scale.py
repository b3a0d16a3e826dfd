"""Peak memory of one `autoannotate run` over many images: does it grow with the batch?

Each batch size runs on a new home, after one first run of the weights that exports them and measures the
runtimes (a once-per-model cost, printed apart). Inputs by default: generated demo scenes (synthetic, 256 px) and
the bundled demo detector, so that 10 000 images run in minutes; with `--photos`: distinct variants of
scikit-image's real photographs (crops, quarter turns, mirror images, 0.3 MP up to `--max-megapixels`) through
YOLOv8n's layout at 640, as in `realistic_pipeline.py`. Printed per batch size: peak RSS, wall time, images/s and
the RSS at each stage of the run; then the throughput of the largest batch against the smallest.

    PYTHONPATH=. .venv/bin/python benchmarks/memory_at_scale.py --images 10000
    PYTHONPATH=. .venv/bin/python benchmarks/memory_at_scale.py --photos --images 1000 10000 --max-megapixels 3
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from apps.demo_scenes import write_demo_images
from benchmarks.realistic_pipeline import build_yolov8n, make_photos, measured, photo_task

STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}) - dagster - ")


def print_memory_profile(trace: list[tuple[float, float]], log: str, count: int) -> None:
    """Where the memory went: the RSS when the run logged each stage's progress (a Dagster log line is
    timestamped to the second), so growth shows up as the stage it happened in."""
    halfway = count // 2 // 100 * 100  # progress is logged every 100 images
    marks = {"ingested": " - inputs - batch ", "model loaded": " runs on ", "first image predicted": "predicted 1/",
             **({f"{halfway} predicted": f"predicted {halfway}/"} if halfway else {}),
             f"all {count} predicted": f"predicted {count}/"}
    seconds: dict[str, float] = {}
    for line in log.splitlines():
        stamp = STAMP.match(line)
        for mark, text in marks.items():
            if stamp and text in line and mark not in seconds:
                seconds[mark] = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S %z").timestamp()

    def rss_from(start: float, end: float) -> float:
        return max((mb for t, mb in trace if start <= t < end), default=0.0)

    points = sorted(seconds.items(), key=lambda item: item[1])
    figures = [f"{mark} {rss_from(at, at + 1):.0f}" for mark, at in points]
    if points:
        figures.append(f"after predicting (routing, annotations, checks, the version) peak "
                       f"{rss_from(points[-1][1] + 1, float('inf')):.0f}")
    print("       RSS (MB) at: " + ", ".join(figures), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--photos", action="store_true", help="real-photo variants and YOLOv8n's layout at 640 "
                        "instead of demo scenes and the demo detector")
    parser.add_argument("--max-megapixels", type=float, default=12.0, help="largest photo variant (--photos)")
    args = parser.parse_args()
    cli = Path(sys.executable).parent / "autoannotate"
    rates = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as work:
        task: list[str] = []
        calibration = Path(work) / "calibration"
        if args.photos:
            weights = build_yolov8n(Path(work) / "yolov8n-random.pt", make_photos(calibration, 32, seed=91))
            task = ["--task-file", str(photo_task(Path(work), weights))]
        else:
            write_demo_images(calibration, 32, seed=91)
        # The weights' first run exports them (importing Ultralytics and torch) and times the CPU runtimes: a cost
        # paid once per model, measured apart so that the batches below compare runs as every later one is.
        first = measured([str(cli), "run", "--inbox", str(calibration), *task, "--json"],
                         env={"AUTOANNOTATE_HOME": str(Path(work) / "home-first")})
        print(f"the model's first run (export, runtime measurement, 32 images): peak RSS {first['rss_mb']:5.0f} MB, "
              f"{first['wall']:5.1f} s", flush=True)
        for count in args.images:
            inbox, home = Path(work) / f"inbox-{count}", Path(work) / f"home-{count}"
            if args.photos:
                make_photos(inbox, count, seed=77, max_megapixels=args.max_megapixels, flips=True)
                what = (f"real-photo variants (crops, turns, mirrors, 0.3-{args.max_megapixels:g} MP), YOLOv8n "
                        "layout at 640")
            else:
                write_demo_images(inbox, count, seed=77)
                what = "demo scenes (synthetic inputs), bundled demo detector"
            trace: list[tuple[float, float]] = []
            result = measured([str(cli), "run", "--inbox", str(inbox), *task, "--json"],
                              env={"AUTOANNOTATE_HOME": str(home)}, trace=trace)
            rates[count] = count / result["wall"]
            print(f"{count:>6} {what} in one batch: peak RSS {result['rss_mb']:5.0f} MB, {result['wall']:6.1f} s "
                  f"wall, {rates[count]:.2f} images/s", flush=True)
            print_memory_profile(trace, result["err"], count)
            shutil.rmtree(home)
            shutil.rmtree(inbox)
    smallest, largest = min(rates), max(rates)
    print(f"throughput at {largest} images / at {smallest}: {rates[largest] / rates[smallest]:.2f}x")


if __name__ == "__main__":
    main()
