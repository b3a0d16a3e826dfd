"""Every benchmark still runs: each script under benchmarks/ at a tiny size, to its printed figures.

No timing is asserted (speed is what the scripts print, at their real sizes: docs/benchmarks.md); what fails here
is a script a schema or API change broke, or one that stopped printing the figure it exists for."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"

# script -> (tiny arguments, a line its figures are printed on)
SMOKE: dict[str, tuple[list[str], str]] = {
    "coco_import.py": (["--sizes", "300", "--import-too"], r"^\s+300\s+\d+\.\d\d\s+\d+"),
    "concept_classifier.py": (["--held-out", "8", "--labelled", "4", "--repeats", "1"], r"^\s+4\s+\d\.\d{3}"),
    "history_cost.py": (["--predictions", "30000", "--events", "12000", "--images", "3", "--repeats", "1"],
                        r"^ratio full/empty \(best of 1\): \d+\.\d\dx"),
    "inference_throughput.py": (["--images", "6"], r"^ratios: \(b\)/\(a\) = \d+\.\d\dx"),
    "int8.py": (["--scenes", "10", "--photos", "4"], r"^INT8 speed-up, best runtime against best runtime: \d+\.\d\dx"),
    "label_audit.py": (["--scenes", "10", "--fold-epochs", "1", "--pool", "8", "--held-out", "6", "--budgets", "4",
                        "--epochs", "1", "--weak-scenes", "6", "--weak-epochs", "1"], r"^diverse\s+\d\.\d{3}"),
    "label_quality.py": (["--scenes", "40", "--target-precision", "0.8"], r"^\s+ball\s+\d+\s+\d"),
    "memory_at_scale.py": (["--images", "6", "12"], r"^\s+12 demo scenes in one batch: peak RSS\s+\d+ MB"),
    "model_loop.py": (["--weak-scenes", "6", "--weak-epochs", "1", "--labelled", "10", "--held-out", "6",
                       "--epochs", "1"], r"mAP50 \d\.\d{3} -> "),
    "objects_gallery.py": (["--objects", "2000", "--repeat", "1"], r"^first page \(60 objects\)\s+\d+\.\d"),
    "realistic_pipeline.py": (["--images", "20"], r"^ratios: \(b\)/\(a\) = \d+\.\d\dx"),
    "routing_throughput.py": (["--rows", "5000", "--images", "200"], r"^5,000 predictions routed .* rows/s"),
    "similar_objects.py": (["--scenes", "6", "--objects", "2000"], r"HNSW index \(vss\): built in"),
    "team_review_latency.py": (["--mode", "embedded", "--first", "12", "--decisions", "10", "--batch-images", "2"],
                               r"^embedded\s+10\s+0\s"),
    "team_throughput.py": (["--images", "4", "--batches", "2"], r"^2 workers / 1 worker: \d+\.\d\dx"),
    "video_pipeline.py": (["--seconds", "2", "--scenes", "1"], r"MOTA \d\.\d{3}"),
}


def test_every_benchmark_has_a_smoke_run() -> None:
    assert sorted(SMOKE) == sorted(path.name for path in BENCHMARKS.glob("*.py") if path.name != "__init__.py")


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_the_benchmark_runs_at_a_tiny_size_and_prints_its_figures(script: str, tmp_path: Path) -> None:
    arguments, figure = SMOKE[script]
    env = {**os.environ, "PYTHONPATH": str(REPO), "AUTOANNOTATE_HOME": str(tmp_path / "home"),
           "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *arguments], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert re.search(figure, done.stdout, re.MULTILINE), f"{script} printed no figure /{figure}/:\n{done.stdout}"
