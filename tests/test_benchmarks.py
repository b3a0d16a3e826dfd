"""Every benchmark still runs: each script under benchmarks/ at a tiny size, to its printed figures.

No timing is asserted (speed is what the scripts print, at their real sizes: docs/benchmarks.md); what fails here
is a script a schema or API change broke, or one that stopped printing the figure it exists for."""

from pathlib import Path

import pytest
from helpers import BENCHMARKS, run_benchmark_at_a_tiny_size

# script -> (tiny arguments, a line its figures are printed on)
SMOKE: dict[str, tuple[list[str], str]] = {
    "coco_import.py": (["--sizes", "300", "--import-too"], r"^\s+300\s+\d+\.\d\d\s+\d+"),
    "concept_classifier.py": (["--held-out", "10", "--labelled", "12", "--repeats", "2"], r"^\s+12\s+\d\.\d{3}"),
    "history_cost.py": (["--predictions", "30000", "--events", "12000", "--images", "3", "--repeats", "1"],
                        r"^ratio full/empty \(best of 1\): \d+\.\d\dx"),
    "inference_throughput.py": (["--images", "6"], r"^ratios: \(b\)/\(a\) = \d+\.\d\dx"),
    "int8.py": (["--scenes", "10", "--photos", "4"], r"^INT8 speed-up, best runtime against best runtime: \d+\.\d\dx"),
    "kept_safe.py": (["--export-photos", "4", "--check-photos", "4"], r"^\(2\) autoannotate check over 4 stored "),
    "label_audit.py": (["--scenes", "10", "--fold-epochs", "1", "--pool", "8", "--held-out", "6", "--budgets", "4",
                        "--epochs", "1", "--weak-scenes", "6", "--weak-epochs", "1"], r"^diverse\s+\d\.\d{3}"),
    "label_quality.py": (["--scenes", "40", "--target-precision", "0.8"], r"^\s+ball\s+\d+\s+\d"),
    "memory_at_scale.py": (["--photos", "--images", "4", "8", "--max-megapixels", "1"],
                           r"^throughput at 8 images / at 4: \d+\.\d\dx"),
    "model_loop.py": (["--weak-scenes", "6", "--weak-epochs", "1", "--labelled", "10", "--held-out", "6",
                       "--epochs", "1"], r"mAP50 \d\.\d{3} -> "),
    "object_storage.py": (["--photos", "4", "--scenes", "3"], r"^row counts equal in all \d+ tables: True"),
    "objects_gallery.py": (["--objects", "2000", "--repeat", "1"], r"^first page \(60 objects\)\s+\d+\.\d"),
    "realistic_pipeline.py": (["--images", "20"], r"^ratios: \(b\)/\(a\) = \d+\.\d\dx"),
    "routing_throughput.py": (["--rows", "5000", "--images", "200"], r"^5,000 predictions routed .* rows/s"),
    "similar_objects.py": (["--scenes", "6", "--objects", "2000"], r"HNSW index \(vss\): built in"),
    "team_review_latency.py": (["--mode", "embedded", "--first", "12", "--decisions", "10", "--batch-images", "2"],
                               r"^embedded\s+10\s+0\s"),
    "video_pipeline.py": (["--seconds", "2", "--scenes", "1"], r"MOTA \d\.\d{3}"),
}


# Run in tests/test_team_celery.py, one after the other with the team tests: two Celery clusters at once on two
# cores starve each other's workers.
TEAM_SMOKE = ("team_throughput.py",)


def test_every_benchmark_has_a_smoke_run() -> None:
    assert sorted([*SMOKE, *TEAM_SMOKE]) == sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_the_benchmark_runs_at_a_tiny_size_and_prints_its_figures(script: str, tmp_path: Path) -> None:
    run_benchmark_at_a_tiny_size(script, *SMOKE[script], tmp_path)
