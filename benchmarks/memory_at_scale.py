"""Peak memory of one `autoannotate run` over many images: does it grow with the batch?

By default synthetic inputs: generated demo scenes (256 px) and the bundled demo detector, so that 10 000 images
run in minutes. With `--photos`: distinct variants of scikit-image's real photographs (crops, quarter turns, mirror
images, 0.3 MP up to `--max-megapixels`) through YOLOv8n's layout at 640, as in `realistic_pipeline.py`. Printed
per batch size: peak RSS, wall time and images/s, and the throughput of the largest batch against the smallest.

    PYTHONPATH=. .venv/bin/python benchmarks/memory_at_scale.py --images 10000
    PYTHONPATH=. .venv/bin/python benchmarks/memory_at_scale.py --photos --images 1000 10000 --max-megapixels 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from apps.demo_scenes import write_demo_images
from benchmarks.realistic_pipeline import build_yolov8n, make_photos, measured, photo_task


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
        if args.photos:
            weights = build_yolov8n(Path(work) / "yolov8n-random.pt",
                                    make_photos(Path(work) / "calibration", 32, seed=91))
            task = ["--task-file", str(photo_task(Path(work), weights))]
        for count in args.images:
            inbox, home = Path(work) / f"inbox-{count}", Path(work) / f"home-{count}"
            if args.photos:
                make_photos(inbox, count, seed=77, max_megapixels=args.max_megapixels, flips=True)
                what = (f"real-photo variants (crops, turns, mirrors, 0.3-{args.max_megapixels:g} MP), YOLOv8n "
                        "layout at 640")
            else:
                write_demo_images(inbox, count, seed=77)
                what = "demo scenes (synthetic inputs), bundled demo detector"
            result = measured([str(cli), "run", "--inbox", str(inbox), *task, "--json"],
                              env={"AUTOANNOTATE_HOME": str(home)})
            rates[count] = count / result["wall"]
            print(f"{count:>6} {what} in one batch: peak RSS {result['rss_mb']:5.0f} MB, {result['wall']:6.1f} s "
                  f"wall, {rates[count]:.2f} images/s", flush=True)
            shutil.rmtree(home)
            shutil.rmtree(inbox)
    smallest, largest = min(rates), max(rates)
    print(f"throughput at {largest} images / at {smallest}: {rates[largest] / rates[smallest]:.2f}x")


if __name__ == "__main__":
    main()
