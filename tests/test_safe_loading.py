"""Weights never run code: a checkpoint whose pickle calls `os.system` is refused before any of it runs, in every
command that loads weights; the bundled and trained detectors still load."""

from __future__ import annotations

import os
from pathlib import Path

from helpers import autoannotate, malicious_weights, write_task_file

from apps.demo_scenes import write_demo_images


def test_a_checkpoint_that_runs_code_is_refused_unread_everywhere(tmp_path: Path) -> None:
    weights, marker = malicious_weights(tmp_path)
    home = tmp_path / "home"
    refusal = f"Detector weights {weights} were refused unread: their pickle names objects outside the model classes"
    classes = autoannotate("model", "classes", str(weights), home=home, check=False)
    assert classes.returncode == 1 and refusal in classes.stderr and not marker.exists()

    images = write_demo_images(home / "inbox", 2, seed=91)
    task = write_task_file(tmp_path, name="pickled", model={"weights": str(weights)})
    dry = autoannotate("dry-run", "--task", str(task), str(images[0]), home=home, check=False)
    assert dry.returncode == 1 and refusal in dry.stderr and not marker.exists()
    run = autoannotate("run", "--task-file", str(task), home=home, check=False)
    assert run.returncode == 1 and refusal in run.stderr + run.stdout and not marker.exists()
    # The bundled detector loads as before, under the same safe loader.
    assert "circle" in autoannotate("model", "classes", home=home).stdout


def test_a_task_that_pins_its_weights_refuses_any_other_file(tmp_path: Path) -> None:
    import shutil

    from core.settings import REPO_ROOT
    from engines.base import model_ref

    home, weights = tmp_path / "home", tmp_path / "detector.pt"
    shutil.copyfile(REPO_ROOT / "models" / "demo_detector.pt", weights)
    pin = model_ref(weights).model_id
    images = write_demo_images(home / "inbox", 2, seed=93)
    task = write_task_file(tmp_path, name="pinned", model={"weights": str(weights), "sha256": pin})
    assert autoannotate("dry-run", "--task", str(task), str(images[0]), home=home).returncode == 0

    shutil.copyfile(REPO_ROOT / "models" / "demo_detector_v2.pt", weights)  # other weights, same name
    other = model_ref(REPO_ROOT / "models" / "demo_detector_v2.pt").model_id
    refusal = (f"Detector weights {weights} were refused unread: their sha256 is {other[:16]}..., not the pinned "
               f"{pin[:16]}... (the file changed since it was pinned or published).")
    dry = autoannotate("dry-run", "--task", str(task), str(images[0]), home=home, check=False)
    assert dry.returncode == 1 and refusal in dry.stderr
    run = autoannotate("run", "--task-file", str(task), home=home, check=False)
    assert run.returncode == 1 and refusal in run.stderr + run.stdout
    assert sorted(p.name for p in (home / "inbox").iterdir()) == sorted(p.name for p in images)  # nothing taken

    bad_pin = write_task_file(tmp_path, name="typo", model={"weights": str(weights), "sha256": "abc"})
    typo = autoannotate("dry-run", "--task", str(bad_pin), str(images[0]), home=home, check=False)
    assert typo.returncode == 1 and "sha256" in typo.stderr and "abc" in typo.stderr


def test_weight_copies_a_killed_export_left_are_removed_by_the_next(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from core.settings import REPO_ROOT
    from engines.base import SCRATCH, model_ref
    from engines.onnx_runtime import exported_onnx

    weights = tmp_path / "detector.pt"
    shutil.copyfile(REPO_ROOT / "models" / "demo_detector.pt", weights)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    abandoned = tmp_path / f"{SCRATCH}{int(gone.stdout)}-x1"  # as a run killed mid-export leaves it
    running = tmp_path / f"{SCRATCH}{os.getpid()}-x2"  # another export of a process still running
    for scratch in (abandoned, running):
        scratch.mkdir()
        shutil.copyfile(weights, scratch / weights.name)
    exported = exported_onnx(weights, model_ref(weights).model_id)
    assert exported.is_file() and not abandoned.exists() and running.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(SCRATCH)) == [running.name]
