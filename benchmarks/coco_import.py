"""How long a COCO file with many annotations on one image takes to read, and to import into a fresh home.

Synthetic: one generated 1000x800 image and N boxes spread over it (a crowd-counting file, the worst case for a
reader that searched the text once per annotation: 20 000 annotations took 105 s that way, 100 000 did not finish
in 300 s). Prints seconds and annotations per second per size.

    PYTHONPATH=. .venv/bin/python benchmarks/coco_import.py --sizes 10000 50000 100000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from PIL import Image


def coco_file(folder: Path, count: int) -> Path:
    Image.new("RGB", (1000, 800), (90, 140, 30)).save(folder / "crowd.png")
    boxes = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [i % 980, (i // 980) % 780, 12, 12],
              "area": 144, "iscrowd": 0} for i in range(count)]
    path = folder / f"crowd-{count}.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "crowd.png", "width": 1000, "height": 800}],
                                "annotations": boxes, "categories": [{"id": 1, "name": "ball"}]}, indent=1))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--import-too", action="store_true", help="also import each file into a fresh home")
    args = parser.parse_args()

    from core.formats.coco import read_coco
    from core.settings import Settings
    from resources import build_resources
    from services.datasets import import_labels

    print("annotations  read s  annotations/s  import s (synthetic boxes on one generated image)")
    for count in args.sizes:
        with tempfile.TemporaryDirectory() as scratch:
            path = coco_file(Path(scratch), count)
            started = time.perf_counter()
            read = len(read_coco(path))
            reading = time.perf_counter() - started
            imported = ""
            if args.import_too:
                resources = build_resources(Settings(home=Path(scratch) / "home"))
                started = time.perf_counter()
                import_labels(resources["store"], resources["images"], "coco", path, "crowd", "bench", 50_000_000,
                              ["ball"])
                imported = f"{time.perf_counter() - started:8.2f}"
            assert read == count
            print(f"{count:11d}  {reading:6.2f}  {count / reading:13.0f}  {imported}")


if __name__ == "__main__":
    main()
