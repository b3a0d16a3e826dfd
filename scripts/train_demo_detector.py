"""Train the bundled demo detector from scratch on generated scenes (CPU is fine).

    python scripts/train_demo_detector.py --train 1200 --val 200 --epochs 40

The second bundled model (`models/demo_detector_v2.pt`, what a team's next model looks like: re-runs with it
are matched to the first model's annotations) is a short fine-tune of the first on scenes it never saw:

    python scripts/train_demo_detector.py --fine-tune models/demo_detector.pt --train 200 --val 100 \
        --epochs 3 --imgsz 256 --out models/demo_detector_v2.pt

Writes `models/demo_detector.pt` and `models/demo_detector.json` (how it was made and
its validation mAP50 on held-out generated scenes, whose seeds never overlap the
training seeds). No weights are downloaded: the network is built from the
architecture file next to this script.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from apps.demo_scenes import SHAPE_CLASSES, generate_scene
from core.offline import make_ultralytics_offline
from scripts.bundled_model import save_bundled_model

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "scripts" / "demo_detector.yaml"
VAL_SEED_OFFSET = 10_000_000  # validation scenes never share a seed with training scenes
FINE_TUNE_SEED_OFFSET = 20_000_000  # nor do a fine-tune's training scenes with the first training's


def write_split(root: Path, split: str, count: int, seed_offset: int) -> None:
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for index in range(count):
        image, objects = generate_scene(seed_offset + index)
        image.save(images / f"{index:06d}.jpg", quality=92)
        lines = []
        for obj in objects:
            cx = (obj.x1 + obj.x2) / 2 / image.width
            cy = (obj.y1 + obj.y2) / 2 / image.height
            w, h = (obj.x2 - obj.x1) / image.width, (obj.y2 - obj.y1) / image.height
            lines.append(f"{SHAPE_CLASSES.index(obj.class_name)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        (labels / f"{index:06d}.txt").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=1200, help="generated training scenes")
    parser.add_argument("--val", type=int, default=200, help="generated held-out validation scenes")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", type=Path, default=REPO / "models" / "demo_detector.pt")
    parser.add_argument("--fine-tune", type=Path, help="start from these weights instead of from scratch")
    args = parser.parse_args()

    make_ultralytics_offline()
    from ultralytics import YOLO

    work = Path(tempfile.mkdtemp(prefix="demo-detector-"))
    write_split(work, "train", args.train, seed_offset=FINE_TUNE_SEED_OFFSET if args.fine_tune else 0)
    write_split(work, "val", args.val, seed_offset=VAL_SEED_OFFSET)
    data = work / "data.yaml"
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(SHAPE_CLASSES))
    data.write_text(f"path: {work}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")

    started = time.time()
    model = YOLO(str(args.fine_tune or ARCHITECTURE), task="detect")
    model.train(
        data=str(data), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, device="cpu", workers=2,
        project=str(work / "runs"), name="train", plots=False, amp=False, seed=0, deterministic=True,
        pretrained=bool(args.fine_tune), mosaic=1.0, close_mosaic=5, patience=100, verbose=False,
    )
    best = work / "runs" / "train" / "weights" / "best.pt"
    metrics = YOLO(str(best)).val(data=str(data), imgsz=args.imgsz, batch=args.batch, device="cpu", plots=False)
    save_bundled_model(best, args.out, {
        "architecture": ARCHITECTURE.name,
        **({"fine_tuned_from": args.fine_tune.name} if args.fine_tune else {}),
        "classes": list(SHAPE_CLASSES),
        "train_scenes": args.train,
        "val_scenes": args.val,
        "val_seed_offset": VAL_SEED_OFFSET,
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "val_map50": round(float(metrics.box.map50), 4),
        "val_map50_95": round(float(metrics.box.map), 4),
        "train_minutes": round((time.time() - started) / 60, 1),
    })


if __name__ == "__main__":
    main()
