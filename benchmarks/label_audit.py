"""Label audits and review orders, measured side by side.

1. Audit: labelled scenes with known injected errors (10 % of boxes removed, 10 % shifted to IoU < 0.4 with their
   object, 5 % given another concept), imported into a fresh store and audited (`services.audit.audit_task`, what
   `autoannotate audit` runs) by the bundled detector, which never saw these scenes; then with `--folds 2` (two
   detectors fine-tuned on the other fold's labels, errors included). Per kind: precision and recall of the top-k
   findings, k = the number injected of that kind.
2. Review order: a deliberately weak start detector (the demo architecture trained briefly from scratch), a pool
   of unlabelled scenes and a fixed held-out split. At each budget, the images `doubt`, `diverse` (k-center greedy
   on the start detector's image embeddings) and a seeded random order choose are labelled (their truth, as a
   perfect reviewer would), the start detector is fine-tuned on them, and mAP50 on the held-out split is measured
   with Ultralytics' validator.

Synthetic inputs (said so): generated demo scenes with exact ground truth; every figure below comes from them. No
detector of real photographs' objects is on this machine (nothing is downloaded), so no audit of real photos.

    PYTHONPATH=. .venv/bin/python benchmarks/label_audit.py [--scenes 300] [--pool 150] [--budgets 15 30 60]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from apps.demo_scenes import generate_scene
from core.audit import FindingKind, top_k_precision_recall
from core.quality import iou_one_to_many
from core.review_order import order_for_review
from core.settings import DEMO_WEIGHTS, Settings
from resources import build_resources
from resources.concepts import ConceptModels
from resources.detector import Detector
from resources.tasks import detector_for
from resources.training import DetectorTraining
from services.audit import audit_task
from services.datasets import import_labels

REPO = Path(__file__).resolve().parents[1]
SHAPES = ("circle", "square", "triangle")
THRESHOLDS = {"upper": 0.9, "lower": 0.5}


def scene(seed: int) -> tuple:
    return generate_scene(seed, shapes=SHAPES, hard=seed % 3 == 0)


def write_yolo(root: Path, split: str, seeds: list[int], boxes_of=None) -> None:
    """Scenes as an Ultralytics split; `boxes_of(seed, image, objects)` gives each scene's label rows."""
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        image, objects = scene(seed)
        image.save(root / "images" / split / f"s{seed}.png")
        rows = boxes_of(seed, image, objects) if boxes_of else [
            [SHAPES.index(o.class_name), o.x1 / image.width, o.y1 / image.height, o.x2 / image.width,
             o.y2 / image.height] for o in objects]
        (root / "labels" / split / f"s{seed}.txt").write_text("".join(
            f"{c} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}\n" for c, x1, y1, x2, y2 in rows))


def audit_benchmark(scenes: int, fold_epochs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    rng = random.Random(0)
    injected = {kind: set() for kind in (FindingKind.MISSED_OBJECT, FindingKind.BAD_BOX, FindingKind.WRONG_CONCEPT)}

    def with_errors(seed: int, image, objects) -> list:
        rows = []
        for index, o in enumerate(objects):
            box = [o.x1 / image.width, o.y1 / image.height, o.x2 / image.width, o.y2 / image.height]
            draw = rng.random()
            if draw < 0.10:
                injected[FindingKind.MISSED_OBJECT].add((f"s{seed}", index))
                continue
            concept = SHAPES.index(o.class_name)
            if draw < 0.20:  # shifted along x by 0.7 of its width: IoU 0.18 with the object (less where clipped)
                width = box[2] - box[0]
                box = [min(box[0] + 0.7 * width, 0.98), box[1], min(box[2] + 0.7 * width, 1.0), box[3]]
                injected[FindingKind.BAD_BOX].add((f"s{seed}", index))
            elif draw < 0.25:
                concept = (concept + rng.choice([1, 2])) % 3
                injected[FindingKind.WRONG_CONCEPT].add((f"s{seed}", index))
            rows.append([concept, *box])
        return rows

    seeds = list(range(9_100_000, 9_100_000 + scenes))
    write_yolo(work / "dataset", "train", seeds, with_errors)
    (work / "dataset" / "data.yaml").write_text(yaml.safe_dump({
        "path": str(work / "dataset"), "train": "images/train", "val": "images/train",
        "names": dict(enumerate(SHAPES))}))
    task_file = work / "audited.yaml"
    task_file.write_text(yaml.safe_dump({"name": "audited", "model": {"weights": str(DEMO_WEIGHTS)},
                                         "concepts": list(SHAPES), "thresholds": THRESHOLDS, "reviewers": ["r"]}))
    resources = build_resources(Settings(home=work / "home", inbox=work / "inbox", task_files=(str(task_file),)))
    (work / "inbox").mkdir(exist_ok=True)
    import_labels(resources["store"], resources["images"], "yolo", work / "dataset", "audited", "team", 50_000_000,
                  list(SHAPES))
    stored = resources["store"].read(lambda s: s.df(
        "SELECT input_id, regexp_extract(uri, '[^/]*$') AS file FROM inputs"))
    file_of = dict(zip(stored["input_id"], stored["file"].str.removesuffix(".png"), strict=False))
    # Each injected error as the finding that points at it: the label (bad box, wrong concept), or for a box left
    # out, the object whose box the finding's box overlaps.
    truth_boxes = {f"s{s}": scene(s) for s in seeds}

    def key_of(finding) -> tuple:
        name = file_of[finding.input_id]
        image, objects = truth_boxes[name]
        boxes = np.array([[o.x1 / image.width, o.y1 / image.height, o.x2 / image.width, o.y2 / image.height]
                          for o in objects])
        if finding.kind == FindingKind.MISSED_OBJECT:
            overlaps = iou_one_to_many(np.array(finding.box), boxes)
        else:  # the label's own object: where its box started (a shift keeps y)
            overlaps = -np.abs(boxes[:, 1] - finding.box.y1) - np.abs(boxes[:, 3] - finding.box.y2)
        return name, int(np.argmax(overlaps))

    task = resources["tasks"].load()[0]
    labels = sum(len(scene(s)[1]) for s in seeds) - len(injected[FindingKind.MISSED_OBJECT])
    for folds in (0, 2):
        training = resources["training"].model_copy(update={"epochs": fold_epochs})
        started = time.perf_counter()
        report = audit_task(resources["store"], resources["images"], resources["versions"], task,
                            detector_for(task, resources["detector"]), training, folds=folds, log=lambda _: None)
        seconds = time.perf_counter() - started
        figures = {}
        for kind, truth in injected.items():
            figures.update(top_k_precision_recall(report.findings, {kind: truth}, len(truth), key_of))
        how = "the bundled detector (never saw these scenes)" if not folds else (
            f"2 folds, each detector fine-tuned {fold_epochs} epochs on the other fold")
        print(f"\naudit of {scenes} scenes, {labels} labels, by {how}: {seconds:.1f} s on this CPU "
              f"({len(report.findings)} findings)")
        print(f"{'kind':16} {'injected':>8} {'top-k':>6} {'precision':>9} {'recall':>7}")
        for kind, row in figures.items():
            print(f"{kind:16} {row['injected']:8d} {row['top_k']:6d} {row['precision']:9.3f} {row['recall']:7.3f}")


def learning_curves(pool: int, held_out: int, budgets: list[int], epochs: int, weak_scenes: int,
                    weak_epochs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-order-"))
    weak = work / "weak.pt"
    started = time.perf_counter()
    subprocess.run([sys.executable, str(REPO / "scripts" / "train_demo_detector.py"), "--train", str(weak_scenes),
                    "--val", "20", "--epochs", str(weak_epochs), "--imgsz", "256", "--out", str(weak)], check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    print(f"\nweak start detector: the demo architecture, {weak_epochs} epochs on {weak_scenes} scenes "
          f"({time.perf_counter() - started:.0f} s)")
    pool_seeds = list(range(9_200_000, 9_200_000 + pool))
    held_seeds = list(range(9_300_000, 9_300_000 + held_out))
    write_yolo(work / "held", "val", held_seeds)
    detector = Detector(weights=str(weak), conf_floor=0.05, runtime="torch")
    model = detector.load()
    class_id = {n: i for i, n in enumerate(model.class_names)}
    # The start detector's doubt on each pool image (its most doubtful box's distance to a threshold) and the
    # image embeddings k-center greedy covers.
    images = [np.array(scene(s)[0])[:, :, ::-1] for s in pool_seeds]
    doubts = []
    for found in detector.predict_stream(images, model):
        band = [d.confidence for d in found if THRESHOLDS["lower"] < d.confidence <= THRESHOLDS["upper"]]
        doubts.append(min(min(abs(c - THRESHOLDS["upper"]), abs(c - THRESHOLDS["lower"])) for c in band)
                      if band else None)
    backbone = ConceptModels(root=str(work)).backbone(weak)
    vectors = np.stack([backbone.embed(image) for image in images])
    training = DetectorTraining(root=str(work / "trained"), epochs=epochs, imgsz=256)
    results: dict[str, list] = {}
    for order in ("doubt", "diverse", "random"):
        for budget in budgets:
            if order == "random":
                chosen = random.Random(budget).sample(range(pool), budget)
            else:
                chosen = [p.index for p in order_for_review(order, budget, doubts, vectors)]
            data = work / f"{order}-{budget}"
            write_yolo(data, "train", [pool_seeds[i] for i in chosen], lambda s, image, objects: [
                [class_id[o.class_name], o.x1 / image.width, o.y1 / image.height, o.x2 / image.width,
                 o.y2 / image.height] for o in objects])
            (data / "images" / "val").symlink_to(work / "held" / "images" / "val")
            (data / "labels" / "val").symlink_to(work / "held" / "labels" / "val")
            (data / "data.yaml").write_text(yaml.safe_dump({"train": "images/train", "val": "images/val",
                                                            "names": dict(enumerate(model.class_names))}))
            trained = training.train(weak, data / "data.yaml", lambda _: None)
            results.setdefault(order, []).append(training.evaluate(trained, data / "data.yaml")["map50"])
    start = training.evaluate(weak, work / f"doubt-{budgets[0]}" / "data.yaml")["map50"]
    bundled = training.evaluate(DEMO_WEIGHTS, work / f"doubt-{budgets[0]}" / "data.yaml")["map50"]
    print(f"held-out mAP50 ({held_out} scenes; the start detector: {start:.3f}, the bundled one: {bundled:.3f}) after "
          f"fine-tuning {epochs} epochs on the images each order picked from a pool of {pool}:")
    print(f"{'order':8} " + " ".join(f"{b:>7d}" for b in budgets))
    for order, row in results.items():
        print(f"{order:8} " + " ".join(f"{v:7.3f}" for v in row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=300, help="labelled scenes audited")
    parser.add_argument("--fold-epochs", type=int, default=3)
    parser.add_argument("--pool", type=int, default=150)
    parser.add_argument("--held-out", type=int, default=80)
    parser.add_argument("--budgets", type=int, nargs="+", default=[15, 30, 60])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--weak-scenes", type=int, default=150)
    parser.add_argument("--weak-epochs", type=int, default=12)
    parser.add_argument("--skip-audit", action="store_true")
    parser.add_argument("--skip-curves", action="store_true")
    args = parser.parse_args()
    if not args.skip_audit:
        audit_benchmark(args.scenes, args.fold_epochs)
    if not args.skip_curves:
        learning_curves(args.pool, args.held_out, args.budgets, args.epochs, args.weak_scenes, args.weak_epochs)


if __name__ == "__main__":
    main()
