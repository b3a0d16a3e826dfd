"""Label quality and calibrated thresholds, measured, and the reviewer time they save.

Synthetic inputs (said so): generated demo scenes with exact ground truth, through the bundled demo detector.
A calibration set of scenes is run and its ground truth imported (as a team imports the labels it already has);
`autoannotate quality` gives each concept's figures under the demo task's thresholds; `autoannotate calibrate
--target-precision P --target-recall R --write` proposes thresholds; a held-out set of scenes is then run under
the calibrated task file, its ground truth imported, and measured the same way. Reviewer time saved: each
auto-accepted box is a decision no person had to make (without auto-acceptance every box the model keeps would
need one); seconds per decision is a parameter (default 4 s, a stated assumption).

    PYTHONPATH=. .venv/bin/python benchmarks/label_quality.py [--scenes 300] [--target-precision 0.95]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from apps.demo_scenes import generate_scene, write_demo_images

CONCEPT_OF = {"circle": "ball", "square": "box", "triangle": "sign"}  # tasks/demo.yaml's class map
CLI = str(Path(sys.executable).parent / "autoannotate")


def autoannotate(home: Path, *args: str) -> dict:
    result = subprocess.run([CLI, "--json", *args], env={**os.environ, "AUTOANNOTATE_HOME": str(home)},
                            capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout)


def labelled_scenes(folder: Path, count: int, seed: int) -> Path:
    """Scenes in `folder` and their exact boxes as a COCO file beside them; the file's path."""
    paths = write_demo_images(folder, count, seed=seed)
    images, annotations = [], []
    for index, path in enumerate(paths):
        image, objects = generate_scene(seed * 1_000_003 + index, hard=index % 2 == 1)
        images.append({"id": index + 1, "file_name": path.name, "width": image.width, "height": image.height})
        annotations += [{"id": len(annotations) + 1, "image_id": index + 1, "iscrowd": 0,
                         "category_id": ["ball", "box", "sign"].index(CONCEPT_OF[o.class_name]) + 1,
                         "bbox": [o.x1, o.y1, o.x2 - o.x1, o.y2 - o.y1]}
                        for o in objects if o.class_name in CONCEPT_OF]
    document = {"images": images, "annotations": annotations,
                "categories": [{"id": i + 1, "name": n} for i, n in enumerate(["ball", "box", "sign"])]}
    (folder / "truth.json").write_text(json.dumps(document))
    return folder / "truth.json"


def measured(home: Path, scenes: Path, truth: Path, task: str | None = None) -> dict:
    autoannotate(home, "run", "--inbox", str(scenes), *(["--task-file", task] if task else []))
    autoannotate(home, "import", "--format", "coco", "--task", "demo-shapes", "--user", "truth", str(truth))
    return autoannotate(home, "quality")["concepts"]


def table(figures: dict, seconds: float) -> pd.DataFrame:
    rows = []
    for concept, f in figures.items():
        rows.append({"concept": concept, "reference boxes": f["reference_boxes"],
                     "thresholds": f"{f['upper']:.3g} / {f['lower']:.3g}",
                     "precision [95% CI]": "-" if f["precision"] is None else
                     f"{f['precision']:.3f} [{f['precision_low']:.3f}, {f['precision_high']:.3f}]",
                     "recall": "-" if f["recall"] is None else f"{f['recall']:.3f}",
                     "recall with review": "-" if f["recall_with_review"] is None else
                     f"{f['recall_with_review']:.3f}",
                     "auto-accepted": "-" if f["share_auto_accepted"] is None else f"{f['share_auto_accepted']:.1%}",
                     "review load": f["review_load"],
                     "reviewer minutes saved": f"{f['auto_accepted'] * seconds / 60:.1f}"})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=300, help="scenes in each of the two sets")
    parser.add_argument("--target-precision", type=float, default=0.95)
    parser.add_argument("--target-recall", type=float, default=0.9)
    parser.add_argument("--seconds-per-decision", type=float, default=4.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    calibration = measured(work / "home", work / "calibration",
                           labelled_scenes(work / "calibration", args.scenes, seed=401))
    print(f"{args.scenes} calibration scenes (synthetic demo scenes, exact ground truth), demo detector, "
          f"tasks/demo.yaml thresholds; {args.seconds_per_decision:g} s per review decision (assumed)")
    print(table(calibration, args.seconds_per_decision).to_string(index=False))
    proposal = autoannotate(work / "home", "calibrate", "--target-precision", str(args.target_precision),
                            "--target-recall", str(args.target_recall), "--write")
    print(f"\ncalibrated for precision >= {args.target_precision} (lower 95% bound) and recall with review >= "
          f"{args.target_recall}:")
    for concept, p in proposal["concepts"].items():
        upper = "none reaches it" if p["upper"] is None else f"{p['upper']:.4g}"
        print(f"  {concept}: upper {p['current_upper']:.3g} -> {upper}, lower {p['current_lower']:.3g} -> "
              f"{p['lower']:.4g}")
    calibrated = Path(proposal["written"])
    try:
        held_out = measured(work / "held-out", work / "held-out-scenes",
                            labelled_scenes(work / "held-out-scenes", args.scenes, seed=402), str(calibrated))
    finally:
        calibrated.unlink()
    print(f"\n{args.scenes} held-out scenes under the calibrated thresholds:")
    print(table(held_out, args.seconds_per_decision).to_string(index=False))


if __name__ == "__main__":
    main()
