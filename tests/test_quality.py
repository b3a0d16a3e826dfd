"""Label quality's plain logic: COCO matching (checked against pycocotools), Wilson intervals, band figures at
their boundaries, the precision/recall curve and calibration."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import autoannotate

from apps.demo_scenes import generate_scene, write_demo_images
from core.quality import (
    band_quality,
    calibrate_concept,
    match_predictions,
    precision_recall_curve,
    wilson_interval,
)
from core.settings import REPO_ROOT, Settings
from core.task_config import ConceptRule
from resources import build_resources


def rule(upper: float, upper_operator: str, lower: float, lower_operator: str) -> ConceptRule:
    return ConceptRule(concept="ball", upper=upper, lower=lower, upper_operator=upper_operator,
                       lower_operator=lower_operator)


def random_boxes(rng: np.random.Generator, count: int, images: int, scored: bool) -> pd.DataFrame:
    x1, y1 = rng.uniform(0, 0.8, count), rng.uniform(0, 0.8, count)
    frame = pd.DataFrame({"input_id": [f"img{i}" for i in rng.integers(0, images, count)],
                          "concept": rng.choice(["ball", "box"], count), "x1": x1, "y1": y1,
                          "x2": x1 + rng.uniform(0.05, 0.2, count), "y2": y1 + rng.uniform(0.05, 0.2, count)})
    if scored:
        frame["confidence"] = rng.uniform(0.05, 1.0, count).round(3)  # rounded: ties in confidence happen
    return frame


def test_matching_agrees_with_pycocotools_cocoeval_detection_by_detection() -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(7)
    references = random_boxes(rng, 400, 40, scored=False)
    jitter = references.sample(300, random_state=1).copy()  # near copies: overlaps around the threshold
    for column in ("x1", "y1", "x2", "y2"):
        jitter[column] += rng.normal(0, 0.03, len(jitter))
    jitter["x2"], jitter["y2"] = np.maximum(jitter.x2, jitter.x1 + 0.01), np.maximum(jitter.y2, jitter.y1 + 0.01)
    jitter["confidence"] = rng.uniform(0.05, 1.0, len(jitter)).round(2)
    predictions = pd.concat([jitter, random_boxes(rng, 300, 40, scored=True)], ignore_index=True)
    ours = match_predictions(predictions, references, iou_threshold=0.5)

    scale = 1000.0  # COCO wants pixels; any common scale gives the same IoU
    images = sorted(set(references.input_id) | set(predictions.input_id))
    image_ids, concept_ids = {name: i + 1 for i, name in enumerate(images)}, {"ball": 1, "box": 2}

    def coco_boxes(frame: pd.DataFrame) -> list[dict]:
        return [{"id": i + 1, "image_id": image_ids[r.input_id], "category_id": concept_ids[r.concept],
                 "bbox": [r.x1 * scale, r.y1 * scale, (r.x2 - r.x1) * scale, (r.y2 - r.y1) * scale],
                 "area": (r.x2 - r.x1) * (r.y2 - r.y1) * scale * scale, "iscrowd": 0,
                 **({"score": r.confidence} if "confidence" in frame else {})}
                for i, r in enumerate(frame.itertuples())]

    truth = COCO()
    truth.dataset = {"images": [{"id": i} for i in image_ids.values()], "annotations": coco_boxes(references),
                     "categories": [{"id": i, "name": n} for n, i in concept_ids.items()]}
    truth.createIndex()
    detections = truth.loadRes(coco_boxes(predictions))
    evaluation = COCOeval(truth, detections, "bbox")
    evaluation.params.iouThrs, evaluation.params.maxDets = np.array([0.5]), [10_000]
    evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0, 1e10]], ["all"]
    evaluation.evaluate()
    theirs = np.zeros(len(predictions), dtype=bool)
    for image in filter(None, evaluation.evalImgs):
        for detection, match in zip(image["dtIds"], image["dtMatches"][0], strict=True):
            theirs[detection - 1] = match > 0
    assert 100 < ours.sum() < len(predictions)  # a real mix of hits and misses
    assert (ours == theirs).all(), np.flatnonzero(ours != theirs)


def test_matching_is_one_to_one_greedy_by_confidence_and_inclusive_at_the_threshold() -> None:
    reference = pd.DataFrame({"input_id": ["a"], "concept": ["ball"], "x1": [0.0], "y1": [0.0], "x2": [1.0],
                              "y2": [1.0]})
    predictions = pd.DataFrame({"input_id": ["a", "a", "a", "b"], "concept": ["ball", "ball", "box", "ball"],
                                "x1": [0.0, 0.0, 0.0, 0.0], "y1": [0.0, 0.0, 0.0, 0.0],
                                "x2": [0.5, 1.0, 1.0, 1.0], "y2": [1.0, 1.0, 1.0, 1.0],
                                "confidence": [0.9, 0.6, 0.99, 0.99]})
    # IoU exactly 0.5 matches (COCO's >=); the second, better-overlapping but less confident box finds the
    # reference taken; another concept or another image never matches.
    assert match_predictions(predictions, reference).tolist() == [True, False, False, False]
    assert match_predictions(predictions, reference, iou_threshold=0.51).tolist() == [False, True, False, False]


def test_wilson_intervals_are_the_published_values() -> None:
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson_interval(95, 100, confidence=0.99) == pytest.approx((0.86085, 0.98315), abs=1e-5)  # by hand
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_band_figures_follow_the_task_operators_at_the_threshold_and_withhold_numbers_on_too_few_boxes() -> None:
    confidence = np.array([0.9, 0.8, 0.8, 0.6, 0.5, 0.3, 0.2])
    matched = np.array([True, True, False, True, False, True, False])
    strict = band_quality(confidence, matched, 25, rule(0.8, ">", 0.3, ">"))
    assert (strict["accepted"], strict["to_review"]) == (1, 4)
    assert strict["precision"] == 1.0 and strict["recall"] == 1 / 25
    assert strict["precision_with_review"] == 3 / 5 and strict["recall_with_review"] == 3 / 25
    assert strict["share_auto_accepted"] == 1 / 7
    inclusive = band_quality(confidence, matched, 25, rule(0.8, ">=", 0.3, ">="))
    assert (inclusive["accepted"], inclusive["to_review"]) == (3, 3)
    assert inclusive["precision"] == 2 / 3 and inclusive["recall_with_review"] == 4 / 25
    assert inclusive["precision_low"] == pytest.approx(wilson_interval(2, 3)[0])
    few = band_quality(confidence, matched, 19, rule(0.8, ">", 0.3, ">"))
    assert few["precision"] is None and few["recall_low"] is None
    assert few["note"].startswith("only 19 reference boxes (at least 20 are needed")


def test_precision_recall_curve_has_one_point_per_distinct_confidence() -> None:
    curve = precision_recall_curve(np.array([0.9, 0.8, 0.8, 0.5]), np.array([True, False, True, False]), 4)
    assert curve.threshold.tolist() == [0.9, 0.8, 0.5]
    assert curve.precision.tolist() == [1.0, 2 / 3, 0.5] and curve.recall.tolist() == [0.25, 0.5, 0.5]


def test_calibration_picks_the_lowest_threshold_of_the_first_passing_run_scanning_down() -> None:
    rng = np.random.default_rng(3)
    confidence = np.round(rng.uniform(0.05, 1.0, 2000), 3)
    matched = rng.uniform(size=2000) < confidence  # a calibrated model: P(correct) = confidence
    result = calibrate_concept(confidence, matched, int(matched.sum()) + 50, rule(0.5, ">", 0.1, ">"),
                               target_precision=0.9, level=0.95, target_recall=0.8)
    upper = result["upper"]

    def lower_bound(threshold: float) -> float:
        band = confidence > threshold
        return wilson_interval(int((band & matched).sum()), int(band.sum()))[0]

    passing = [t for t in np.unique(confidence) if lower_bound(t) >= 0.9]
    assert lower_bound(upper) >= 0.9
    assert lower_bound(np.unique(confidence[confidence < upper])[-1]) < 0.9  # the one just below fails
    assert all(lower_bound(t) >= 0.9 for t in np.unique(confidence) if upper <= t <= max(passing))
    assert result["expected_precision_low"] == pytest.approx(lower_bound(upper))
    assert result["share_auto_accepted"] == pytest.approx((confidence > upper).mean())
    kept = (matched & (confidence > result["lower"])).sum() / (matched.sum() + 50)
    assert kept >= 0.8 and result["target_recall_reached"]
    above = np.unique(confidence[(confidence > result["lower"]) & (confidence <= upper)])
    assert all((matched & (confidence > t)).sum() / (matched.sum() + 50) < 0.8 for t in above)
    assert result["review_load"] == int(((confidence > result["lower"]) & ~(confidence > upper)).sum())
    unreachable = calibrate_concept(confidence, matched, 2000, rule(0.5, ">", 0.1, ">"), target_precision=0.999)
    assert unreachable["upper"] is None and unreachable["share_auto_accepted"] is None


CONCEPT_OF = {"circle": "ball", "square": "box", "triangle": "sign"}  # tasks/demo.yaml's class map


def scenes_with_truth(folder: Path, count: int, seed: int) -> pd.DataFrame:
    """Demo scenes written as the inbox gets them, and their exact boxes (normalised) by file name."""
    paths = write_demo_images(folder, count, seed=seed)
    rows = []
    for index, path in enumerate(paths):
        image, objects = generate_scene(seed * 1_000_003 + index, hard=index % 2 == 1)
        rows += [{"file": path.name, "width": image.width, "height": image.height, "concept": CONCEPT_OF[o.class_name],
                  "x1": o.x1 / image.width, "y1": o.y1 / image.height, "x2": o.x2 / image.width,
                  "y2": o.y2 / image.height} for o in objects if o.class_name in CONCEPT_OF]
    return pd.DataFrame(rows)


def write_coco(folder: Path, truth: pd.DataFrame) -> Path:
    """The ground truth as a COCO file beside the images (what a team's existing labels look like)."""
    files = {name: i + 1 for i, name in enumerate(sorted(truth.file.unique()))}
    sizes = truth.drop_duplicates("file").set_index("file")
    document = {"images": [{"id": i, "file_name": f, "width": int(sizes.width[f]), "height": int(sizes.height[f])}
                           for f, i in files.items()],
                "categories": [{"id": i + 1, "name": c} for i, c in enumerate(["ball", "box", "sign"])],
                "annotations": [{"id": n + 1, "image_id": files[r.file], "category_id": ["ball", "box", "sign"]
                                 .index(r.concept) + 1, "iscrowd": 0,
                                 "bbox": [r.x1 * r.width, r.y1 * r.height, (r.x2 - r.x1) * r.width,
                                          (r.y2 - r.y1) * r.height]} for n, r in enumerate(truth.itertuples())]}
    path = folder / "truth.json"
    path.write_text(json.dumps(document))
    return path


@pytest.fixture(scope="module")
def labelled_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A home that ran 120 demo scenes, with their ground truth imported as a team's existing labels."""
    folder = tmp_path_factory.mktemp("labelled")
    truth = scenes_with_truth(folder / "calibration", 120, seed=301)
    autoannotate("run", "--inbox", str(folder / "calibration"), home=folder / "home")
    autoannotate("import", "--format", "coco", "--task", "demo-shapes", "--user", "truth",
                 str(write_coco(folder / "calibration", truth)), home=folder / "home")
    return folder / "home", truth


def test_quality_and_calibration_on_demo_scenes_reach_the_target_on_held_out_scenes(
        tmp_path: Path, labelled_home: tuple[Path, pd.DataFrame]) -> None:
    """Ground truth imported for 120 scenes: `quality` counts exactly their boxes and agrees with matching the
    stored predictions to the generator's boxes; `calibrate --write` proposes thresholds whose accepted band,
    on 120 held-out scenes run under the calibrated task file, reaches the target precision (each concept
    within its interval, the band as a whole by its point estimate)."""
    (home, truth), target = labelled_home, 0.9
    report = json.loads(autoannotate("--json", "quality", "--task", "demo-shapes", home=home).stdout)
    for concept in ("ball", "box", "sign"):
        assert report["concepts"][concept]["reference_boxes"] == int((truth.concept == concept).sum())

    store = build_resources(Settings(home=home))["store"]
    predictions = store.read(lambda s: s.df(
        "SELECT s.file, p.class_name, p.confidence, p.x1, p.y1, p.x2, p.y2 FROM predictions p JOIN (SELECT "
        "DISTINCT input_id, regexp_extract(uri, '[^/]+$') AS file FROM input_sources) s USING (input_id)"))
    predictions["concept"] = predictions.class_name.map(CONCEPT_OF)
    predictions = predictions.dropna(subset=["concept"]).rename(columns={"file": "input_id"}).reset_index(drop=True)
    matched = match_predictions(predictions, truth.rename(columns={"file": "input_id"}))
    for concept in ("ball", "box"):
        upper = 0.9
        accepted = (predictions.concept == concept).to_numpy() & (predictions.confidence > upper).to_numpy()
        assert report["concepts"][concept]["accepted"] == accepted.sum() > 0
        assert report["concepts"][concept]["precision"] == pytest.approx(matched[accepted].mean())

    proposal = json.loads(autoannotate("--json", "calibrate", "--task", "demo-shapes", "--target-precision",
                                       str(target), "--target-recall", "0.9", "--write", home=home).stdout)
    calibrated = Path(proposal["written"])
    assert calibrated.name == "demo.calibrated.yaml" and calibrated.parent == (REPO_ROOT / "tasks")
    try:
        held_out = scenes_with_truth(tmp_path / "held-out", 120, seed=302)
        other = tmp_path / "held-out-home"
        autoannotate("run", "--inbox", str(tmp_path / "held-out"), "--task-file", str(calibrated), home=other)
        autoannotate("import", "--format", "coco", "--task", "demo-shapes", "--user", "truth",
                     str(write_coco(tmp_path / "held-out", held_out)), home=other)
        checked = json.loads(autoannotate("--json", "quality", home=other).stdout)
    finally:
        calibrated.unlink()
    calibrated_concepts = [c for c, p in proposal["concepts"].items() if p["upper"] is not None]
    assert len(calibrated_concepts) >= 2
    for concept in calibrated_concepts:
        figures = checked["concepts"][concept]
        assert figures["upper"] == proposal["concepts"][concept]["upper"]
        # Each concept's held-out precision is consistent with the target (its interval reaches it) ...
        assert figures["precision_high"] >= target, (concept, proposal["concepts"][concept], figures)
    # ... and the accepted band as a whole reaches it.
    accepted = sum(checked["concepts"][c]["accepted"] for c in calibrated_concepts)
    correct = sum(checked["concepts"][c]["precision"] * checked["concepts"][c]["accepted"] for c in calibrated_concepts)
    assert correct / accepted >= target, checked["concepts"]


def test_label_quality_asset_records_the_figures_and_its_check_warns_below_a_target(
        tmp_path: Path, labelled_home: tuple[Path, pd.DataFrame]) -> None:
    import dagster as dg
    import yaml

    from assets.quality import label_quality
    from core.settings import DEMO_TASK, DEMO_WEIGHTS
    from resources.tasks import LabelingTasks

    home, _ = labelled_home
    cli = json.loads(autoannotate("--json", "quality", home=home).stdout)["concepts"]
    task = yaml.safe_load(DEMO_TASK.read_text())
    task["model"]["weights"], task["target_precision"] = str(DEMO_WEIGHTS), 0.95
    path = tmp_path / "demo-target.yaml"
    path.write_text(yaml.safe_dump(task))
    resources = {"store": build_resources(Settings(home=home))["store"],
                 "tasks": LabelingTasks(task_files=[str(path)])}
    result = dg.materialize([label_quality], resources=resources)
    metadata = result.asset_materializations_for_node("label_quality")[0].metadata
    recorded = metadata["demo-shapes"].value
    for concept in ("ball", "box", "sign"):
        assert recorded[concept]["precision_low"] == pytest.approx(cli[concept]["precision_low"])
        assert recorded[concept]["reference_boxes"] == cli[concept]["reference_boxes"]
    assert metadata["demo-shapes/ball precision (low)"].value == pytest.approx(cli["ball"]["precision_low"])
    assert metadata["demo-shapes: precision and recall"].value.startswith("![precision and recall of demo-shapes]")
    check = result.get_asset_check_evaluations()[0]
    below = {k for k, c in cli.items() if c["precision_low"] is not None and c["precision_low"] < 0.95}
    assert below  # 0.95 at the lower bound needs more reference boxes than these scenes give
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert set(check.metadata["below_target"].value) == {f"demo-shapes/{c}" for c in below}


def test_calibrate_refuses_a_target_that_is_not_a_proportion(labelled_home: tuple[Path, pd.DataFrame]) -> None:
    result = autoannotate("calibrate", "--target-precision", "95", home=labelled_home[0], check=False)
    assert result.returncode == 1
    assert result.stderr == "autoannotate: --target-precision 95.0 is not a proportion between 0 and 1 (e.g. 0.95).\n"


def test_calibrate_reads_the_tasks_target_precision_and_names_the_option_when_there_is_none(tmp_path: Path) -> None:
    """Before, `calibrate` required --target-precision although the task states `target_precision`."""
    from helpers import write_task_file

    (tmp_path / "stated").mkdir()
    (tmp_path / "bare").mkdir()
    stated = write_task_file(tmp_path / "stated", target_precision=0.9)
    home = tmp_path / "home"
    autoannotate("run", "--task-file", str(stated), home=home)
    proposal = json.loads(autoannotate("--json", "calibrate", home=home).stdout)
    assert proposal["target_precision"] == 0.9
    bare = write_task_file(tmp_path / "bare")
    other = tmp_path / "other"
    autoannotate("run", "--task-file", str(bare), home=other)
    refused = autoannotate("calibrate", home=other, check=False)
    assert refused.returncode == 1 and refused.stderr.strip() == (
        "autoannotate: Task 'demo-shapes' states no target_precision: give one, e.g. `autoannotate calibrate --task "
        "demo-shapes --target-precision 0.95`, or set `target_precision` in its file.")
