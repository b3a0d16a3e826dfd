"""The model loop, measured: a deliberately weak start detector, a dataset version of labelled scenes, one
`autoannotate model train` (fine-tune, evaluate, promote by the task's rule), and the task's label quality on
held-out scenes before and after.

Synthetic inputs (said so): generated demo scenes with exact ground truth. The weak start model is the demo
architecture trained briefly from scratch (`scripts/train_demo_detector.py`, few scenes, few epochs). The labelled
scenes are imported as a team imports the labels it has; `model train` fine-tunes the task's detector on that
version's train split and compares it with the current one on the version's val split (Ultralytics' validator);
the task's `promote_when` decides. Then held-out scenes are run under the weak and under the promoted detector,
their truth imported, and `autoannotate quality` measures each under the task's thresholds.

    PYTHONPATH=. .venv/bin/python benchmarks/model_loop.py [--labelled 400] [--held-out 200] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.label_quality import labelled_scenes, table
from core.settings import DEMO_TASK

CLI = str(Path(sys.executable).parent / "autoannotate")
REPO = Path(__file__).resolve().parents[1]


def cli(home: Path, task_file: Path, *args: str, env: dict | None = None) -> dict:
    result = subprocess.run([CLI, "--json", *args], capture_output=True, text=True, check=False, env={
        **os.environ, "AUTOANNOTATE_HOME": str(home), "AUTOANNOTATE_TASKS": str(task_file), **(env or {})})
    if result.returncode:
        raise SystemExit(result.stderr)
    return json.loads(result.stdout)


def task_file(folder: Path, weights: Path) -> Path:
    """The demo task on `weights`, promoting a trained detector that gains 0.01 mAP50."""
    data = yaml.safe_load(DEMO_TASK.read_text())
    data["model"]["weights"] = str(weights)
    data["promote_when"] = {"metric": "map50", "min_gain": 0.01}
    path = folder / f"task-{weights.stem[:16]}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def held_out_quality(home: Path, task: Path, scenes: Path, truth: Path) -> dict:
    cli(home, task, "run", "--inbox", str(scenes))
    cli(home, task, "import", "--format", "coco", "--task", "demo-shapes", "--user", "truth", str(truth))
    return cli(home, task, "quality")["concepts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weak-scenes", type=int, default=150, help="scenes the weak start model is trained on")
    parser.add_argument("--weak-epochs", type=int, default=12)
    parser.add_argument("--labelled", type=int, default=400, help="labelled scenes in the dataset version")
    parser.add_argument("--held-out", type=int, default=200, help="held-out scenes measured before and after")
    parser.add_argument("--epochs", type=int, default=20, help="fine-tuning epochs of `model train`")
    parser.add_argument("--imgsz", type=int, default=256)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-model-loop-"))

    weak = work / "weak.pt"
    subprocess.run([sys.executable, str(REPO / "scripts" / "train_demo_detector.py"), "--train",
                    str(args.weak_scenes), "--val", "20", "--epochs", str(args.weak_epochs), "--imgsz",
                    str(args.imgsz), "--out", str(weak)], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(REPO)})
    weak_task = task_file(work, weak)
    held_out = work / "held-out"
    truth = labelled_scenes(held_out, args.held_out, seed=502)
    before = held_out_quality(work / "before", weak_task, held_out, truth)

    loop = work / "loop"
    labelled = labelled_scenes(work / "labelled", args.labelled, seed=501)
    cli(loop, weak_task, "import", "--format", "coco", "--task", "demo-shapes", "--user", "team", str(labelled))
    cli(loop, weak_task, "version", "create")
    started = time.perf_counter()
    trained = cli(loop, weak_task, "model", "train", env={"AUTOANNOTATE_TRAIN_EPOCHS": str(args.epochs),
                                                          "AUTOANNOTATE_TRAIN_IMGSZ": str(args.imgsz)})
    seconds = time.perf_counter() - started
    outcome = trained["tasks"]["demo-shapes"]
    listed = cli(loop, weak_task, "model", "list")["models"]
    promoted = next(Path(m["path"]) for m in listed if m["model_id"] == outcome["model_id"])
    after = held_out_quality(work / "after", task_file(work, promoted), held_out, truth)

    print(f"weak start: the demo architecture trained {args.weak_epochs} epochs on {args.weak_scenes} scenes; "
          f"dataset version: {args.labelled} labelled scenes (synthetic demo scenes, exact ground truth); "
          f"`model train`: {args.epochs} epochs at {args.imgsz} px on CPU in {seconds:.0f} s (with evaluation)")
    print(f"val split of the version ({outcome['version']}): mAP50 {outcome['current map50']:.3f} -> "
          f"{outcome['candidate map50']:.3f}, mAP50-95 {outcome['current map50_95']:.3f} -> "
          f"{outcome['candidate map50_95']:.3f}; {outcome['reason']}")
    print(f"\n{args.held_out} held-out scenes under tasks/demo.yaml's thresholds, weak start detector:")
    print(table(before, 4.0).to_string(index=False))
    print(f"\nthe same scenes, promoted detector {outcome['model_id'][:12]}:")
    print(table(after, 4.0).to_string(index=False))


if __name__ == "__main__":
    main()
