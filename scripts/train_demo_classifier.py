"""Train the bundled demo classification model (`-cls`) from scratch on generated concept scenes (CPU is fine).

    python scripts/train_demo_classifier.py --train 600 --val 150 --epochs 12

The classes are the demo scene concepts (blurry, crowded, night); a scene goes into the training set only when it
has exactly one of them, since a classification model answers one class per image (its probabilities sum to 1).
The network is Ultralytics' own `yolov8n-cls.yaml` architecture built from the installed package, so no weights
are downloaded. Writes `models/demo_classifier-cls.pt` and `models/demo_classifier-cls.json` (how it was made and
its top-1 accuracy on held-out scenes whose seeds never overlap the training seeds).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from apps.demo_scenes import SCENE_CONCEPTS, concept_scene
from core.offline import make_ultralytics_offline
from scripts.bundled_model import save_bundled_model

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = "yolov8n-cls.yaml"
VAL_SEED_OFFSET = 30_000_000  # held-out scenes never share a seed with training scenes


def single_concept_scenes(seed_offset: int) -> Iterator[tuple[object, str]]:
    """Generated scenes that have exactly one concept, with it."""
    seed = seed_offset
    while True:
        image, concepts = concept_scene(seed)
        seed += 1
        if len(concepts) == 1:
            yield image, next(iter(concepts))


def write_split(root: Path, split: str, count: int, seed_offset: int) -> None:
    for concept in SCENE_CONCEPTS:
        (root / split / concept).mkdir(parents=True)
    scenes = single_concept_scenes(seed_offset)
    for index in range(count):
        image, concept = next(scenes)
        image.save(root / split / concept / f"{index:06d}.jpg", quality=92)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=600, help="generated training scenes")
    parser.add_argument("--val", type=int, default=150, help="generated held-out scenes")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", type=Path, default=REPO / "models" / "demo_classifier-cls.pt")
    args = parser.parse_args()

    make_ultralytics_offline()
    from ultralytics import YOLO

    work = Path(tempfile.mkdtemp(prefix="demo-classifier-"))
    write_split(work, "train", args.train, seed_offset=0)
    write_split(work, "val", args.val, seed_offset=VAL_SEED_OFFSET)
    started = time.time()
    model = YOLO(ARCHITECTURE, task="classify")
    model.train(data=str(work), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device="cpu", workers=2,
                project=str(work / "runs"), name="train", plots=False, amp=False, seed=0, deterministic=True,
                pretrained=False, patience=100, verbose=False)
    best = work / "runs" / "train" / "weights" / "best.pt"
    metrics = YOLO(str(best)).val(data=str(work), imgsz=args.imgsz, batch=args.batch, device="cpu", plots=False)
    save_bundled_model(best, args.out, {
        "architecture": ARCHITECTURE,
        "classes": sorted(SCENE_CONCEPTS),
        "train_scenes": args.train,
        "val_scenes": args.val,
        "val_seed_offset": VAL_SEED_OFFSET,
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "val_top1": round(float(metrics.top1), 4),
        "train_minutes": round((time.time() - started) / 60, 1),
    })


if __name__ == "__main__":
    main()
