"""The model loop: a detector fine-tuned on a dataset version, measured against the current one on the same val
split, promoted only by the task's rule or a person, rolled back; what the next batches predict with."""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from helpers import autoannotate, query, suggestions_dataset, write_task_file, yolo_dataset

from apps.model_registry import list_models, promote_model, rollback_model
from assets.model_loop import detector_models
from assets.versions import dataset_versions
from core.model_loop import promotion_decision, share_auto_accepted, training_classes
from core.settings import DEMO_TASK, DEMO_WEIGHTS, REPO_ROOT
from core.task_config import PromoteWhen, load_task
from engines.base import file_sha256
from resources.tasks import LabelingTasks
from resources.training import DetectorTraining
from services.datasets import import_labels


def test_the_promotion_rule_needs_the_gain_and_says_why() -> None:
    rule = PromoteWhen(metric="map50", min_gain=0.01)
    assert promotion_decision(rule, {"map50": 0.62, "map50_95": 0.3}, {"map50": 0.60, "map50_95": 0.4}) == (
        True, "promoted: map50 0.6200 against the current model's 0.6000 (gain +0.0200, needed +0.0100)")
    assert promotion_decision(rule, {"map50": 0.605, "map50_95": 0.5}, {"map50": 0.60, "map50_95": 0.4}) == (
        False, "not promoted: map50 0.6050 against the current model's 0.6000 (gain +0.0050, needed +0.0100)")
    worse = promotion_decision(PromoteWhen(metric="map50_95", min_gain=0.0), {"map50": 0.9, "map50_95": 0.39},
                               {"map50": 0.6, "map50_95": 0.4})
    assert worse == (False, "not promoted: map50_95 0.3900 against the current model's 0.4000 (gain -0.0100, "
                            "needed +0.0000)")
    assert promotion_decision(None, {"map50": 1.0, "map50_95": 1.0}, {"map50": 0.0, "map50_95": 0.0})[0] is False


def test_the_share_auto_accepted_at_a_target_precision() -> None:
    """40 right boxes of class circle (ball) at 0.9 and 10 wrong ones at 0.3: calibrated to precision 0.9 the
    wrong ones fall below the upper threshold, so 40 of 50 predictions are auto-accepted; class cross is not a
    concept of the task and counts for nothing."""
    import pandas as pd

    demo = load_task(DEMO_TASK)
    right = [{"input_id": f"i{n}", "class_name": "circle", "confidence": 0.9, "x1": 0.1, "y1": 0.1, "x2": 0.3,
              "y2": 0.3} for n in range(40)]
    wrong = [{"input_id": f"i{n}", "class_name": "circle", "confidence": 0.3, "x1": 0.6, "y1": 0.6, "x2": 0.8,
              "y2": 0.8} for n in range(10)]
    cross = [{"input_id": "i0", "class_name": "cross", "confidence": 0.99, "x1": 0.4, "y1": 0.4, "x2": 0.5,
              "y2": 0.5}]
    references = pd.DataFrame([{k: v for k, v in r.items() if k != "confidence"} for r in right])
    measured = share_auto_accepted(demo, pd.DataFrame(right + wrong + cross), references, 0.9)
    assert measured == {"share": 0.8, "per_concept": {"ball": 0.8, "box": 0.0, "sign": 0.0}, "target_precision": 0.9}


def test_training_keeps_the_detector_s_own_classes() -> None:
    demo = load_task(DEMO_TASK)
    assert training_classes(demo, ["circle", "square", "triangle", "cross"]) == {
        "ball": "circle", "box": "square", "sign": "triangle"}


def test_a_detector_trained_on_a_version_is_measured_promoted_by_hand_and_rolled_back(
        resources: dict, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    task_file = write_task_file(tmp_path, promote_when={"metric": "map50", "min_gain": 1.0})
    resources["tasks"] = tasks = LabelingTasks(task_files=[str(task_file)],
                                               models=str(tmp_path / "home-models"))
    resources["training"] = DetectorTraining(root=str(tmp_path / "trained"), epochs=1, imgsz=128, batch=8)
    suggestions_dataset(tmp_path / "labelled", 16)
    task = tasks.load()[0]
    import_labels(resources["store"], resources["images"], "yolo", tmp_path / "labelled", task.name, "truth",
                  50_000_000, task.concepts)
    day = datetime.now(UTC).date().isoformat()
    assert dg.materialize([dataset_versions], partition_key=day, instance=instance, resources=resources).success
    result = dg.materialize([detector_models], partition_key=day, instance=instance, resources=resources)
    assert result.success
    outcome = result.asset_materializations_for_node("detector_models")[0].metadata["tasks"].value[task.name]
    demo_id = file_sha256(DEMO_WEIGHTS)
    assert (outcome["trained"], outcome["parent_id"], outcome["version"], outcome["promoted"]) == (
        True, demo_id, f"{task.name}@{day}", False)
    # A gain of 1.0 in mAP50 is out of reach: the candidate stays a candidate, and the log says why.
    assert outcome["reason"] == (
        f"not promoted: map50 {outcome['candidate map50']:.4f} against the current model's "
        f"{outcome['current map50']:.4f} (gain {outcome['candidate map50'] - outcome['current map50']:+.4f}, "
        "needed +1.0000)")
    logged = [e.user_message for e in instance.all_logs(result.run_id) if "epoch 1/1" in e.user_message]
    assert len(logged) == 1 and "box_loss" in logged[0]
    candidate = outcome["model_id"]
    assert (tmp_path / "trained" / f"{candidate}.pt").is_file()
    for which in ("candidate", "current"):
        assert 0.0 <= outcome[f"{which} auto-accepted at precision 0.95"] <= 1.0
    evaluations = query(resources["store"], "SELECT model_id, version_key, images, auto_accepted "
                                            "FROM model_evaluations")
    assert evaluations["auto_accepted"].notna().all()
    assert sorted(evaluations["model_id"]) == sorted([candidate, demo_id])
    assert set(evaluations["version_key"]) == {f"{task.name}@{day}"} and min(evaluations["images"]) > 0
    assert tasks.load()[0].weights_path() == DEMO_WEIGHTS.resolve()
    assert "learning curves" in result.asset_materializations_for_node("detector_models")[0].metadata
    curve = resources["store"].read(lambda s: s.models.learning_curve(task.name))
    assert curve["labelled_images"].tolist() == [16] and curve["map50"].tolist() == pytest.approx(
        [outcome["candidate map50"]], abs=1e-4)

    listed = {m["model_id"]: m for m in list_models(resources["store"], tasks)}
    assert listed[candidate]["parent_id"] == demo_id and listed[candidate]["version_key"] == f"{task.name}@{day}"
    assert (listed[demo_id]["current"], listed[candidate]["current"]) == (True, False)
    assert listed[candidate]["map50"] == pytest.approx(outcome["candidate map50"], abs=1e-4)
    # The current detector was measured on the same val split: its figures stand beside the candidate's.
    assert listed[demo_id]["map50"] == pytest.approx(outcome["current map50"], abs=1e-4)
    assert listed[demo_id]["evaluated_on"] == listed[candidate]["evaluated_on"] == f"{task.name}@{day}"
    assert (listed[demo_id]["version_key"], listed[demo_id]["parent_id"]) == (None, None)  # bundled, not trained

    promote_model(resources["store"], tasks, candidate[:12], "alice")
    assert tasks.load()[0].weights_path() == (tmp_path / "trained" / f"{candidate}.pt").resolve()
    assert json.loads((tmp_path / "home-models" / "promoted.json").read_text()) == {
        task.name: {"weights": str((tmp_path / "trained" / f"{candidate}.pt").resolve()), "sha256": candidate}}
    with pytest.raises(ValueError) as again:
        promote_model(resources["store"], tasks, candidate, "alice")
    assert str(again.value) == f"Model {candidate[:12]} is already task 'demo-shapes''s detector."

    rolled = rollback_model(resources["store"], tasks, "bob")
    assert (rolled["model_id"], rolled["from"]) == (demo_id, candidate)
    assert tasks.load()[0].weights_path() == DEMO_WEIGHTS.resolve()
    assert json.loads((tmp_path / "home-models" / "promoted.json").read_text()) == {}
    history = query(resources["store"], "SELECT model_id, previous_model_id, action, decided_by FROM "
                                        "model_promotions ORDER BY decided_at")
    assert list(history.itertuples(index=False, name=None)) == [
        (candidate, demo_id, "promote", "alice"), (demo_id, candidate, "rollback", "bob")]
    with pytest.raises(ValueError) as nothing:
        rollback_model(resources["store"], tasks, "bob")
    assert "there is nothing to roll back" in str(nothing.value)


def live_duplicates(rows) -> int:
    """Pairs of live annotations of one image and concept whose boxes overlap by IoU > 0.7: one object, two
    annotations."""
    from core.quality import iou_one_to_many

    pairs = 0
    for _, group in rows.groupby(["input_id", "concept"]):
        boxes = group[["x1", "y1", "x2", "y2"]].to_numpy()
        pairs += sum(int((iou_one_to_many(box, boxes[i + 1:]) > 0.7).sum()) for i, box in enumerate(boxes))
    return pairs


def test_a_promoted_detector_re_annotates_earlier_batches_and_keeps_people_s_decisions(tmp_path: Path) -> None:
    """From the command line: demo run, a review decision, `model train`, `model promote`; the next `run`
    predicts the earlier batch again with the promoted detector, people's decisions stay, no object gets two
    annotations; `model rollback` and the next run go back."""

    home, env = tmp_path / "home", {"AUTOANNOTATE_TRAIN_EPOCHS": "1", "AUTOANNOTATE_TRAIN_IMGSZ": "128"}
    autoannotate("demo", "--count", "16", home=home)
    autoannotate("run", "--version", home=home, env=env)
    queue = json.loads(autoannotate("review", "list", "--reviewer", "alice", "--json", home=home).stdout)
    decided = queue["undecided"][0]["annotation_id"]
    autoannotate("review", "accept", decided, "--reviewer", "alice", home=home)
    autoannotate("version", "create", home=home, env=env)
    trained = json.loads(autoannotate("model", "train", "--json", home=home, env=env).stdout)
    outcome = trained["tasks"]["demo-shapes"]
    assert outcome["trained"] and not outcome["promoted"]  # the demo task sets no promote_when
    assert "not promoted: the task sets no promote_when" in outcome["reason"]
    autoannotate("model", "promote", outcome["model_id"][:12], "--user", "alice", home=home)
    status = json.loads(autoannotate("status", "--json", home=home).stdout)
    assert status["tasks"]["demo-shapes"]["model_id"] == outcome["model_id"]
    assert list(status["unfinished_batches"].values()) == ["not predicted"]

    rerun = json.loads(autoannotate("run", "--json", home=home, env=env).stdout)
    assert [r["stage"] for r in rerun["resumed"]] == ["not predicted"]
    from core.settings import Settings
    from resources import build_resources

    store = build_resources(Settings(home=home))["store"]
    predicted_by = store.read(lambda s: s.df("SELECT DISTINCT model_id FROM processed_inputs"))["model_id"]
    assert outcome["model_id"] in set(predicted_by)
    live = store.read(lambda s: s.df(
        "SELECT annotation_id, input_id, concept, status, source, x1, y1, x2, y2 FROM annotation_state "
        "WHERE status IN ('SUCCESS', 'AWAITING_REVIEW')"))
    assert live.set_index("annotation_id").loc[decided, ["status", "source"]].tolist() == ["SUCCESS", "review"]
    assert live_duplicates(live) == 0

    autoannotate("model", "rollback", "--user", "bob", home=home)
    listed = json.loads(autoannotate("model", "list", "--json", home=home).stdout)
    assert [m["model_id"] for m in listed["models"] if m["current"]] == [file_sha256(DEMO_WEIGHTS)]
    assert [(p["action"], p["decided_by"], p["reason"]) for p in listed["promotions"]] == [
        ("promote", "alice", "promoted by alice"),
        ("rollback", "bob", f"rolled back by bob from {outcome['model_id'][:12]}")]


def test_training_from_a_model_yaml_starts_from_scratch_and_a_missing_one_is_one_sentence(tmp_path: Path) -> None:
    from ultralytics import YOLO

    yolo_dataset(tmp_path / "data", 6)
    architecture = Path(__file__).resolve().parents[1] / "scripts" / "demo_detector.yaml"
    training = DetectorTraining(root=str(tmp_path / "trained"), epochs=1, imgsz=64, batch=4,
                                architecture=str(architecture))
    logged: list[str] = []
    trained = training.train(DEMO_WEIGHTS, tmp_path / "data" / "data.yaml", logged.append)
    assert trained.parent == tmp_path / "trained" and trained.name == f"{file_sha256(trained)}.pt"
    assert YOLO(str(trained)).names == {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
    assert [line.split(":")[0] for line in logged] == ["epoch 1/1"]
    missing = DetectorTraining(root=str(tmp_path / "trained"), architecture=str(tmp_path / "nope.yaml"))
    with pytest.raises(FileNotFoundError) as refused:
        missing.train(DEMO_WEIGHTS, tmp_path / "data" / "data.yaml", logged.append)
    assert str(refused.value) == (f"AUTOANNOTATE_TRAIN_ARCHITECTURE={tmp_path / 'nope.yaml'} does not exist: give a "
                                  "model YAML on disk (autoannotate never downloads one), or leave it unset to "
                                  "fine-tune.")


def test_model_train_without_a_task_that_detects_is_one_sentence(tmp_path: Path) -> None:
    """`model train` with only an image-level concept task configured printed nothing and exited 0."""
    concepts_only = {"AUTOANNOTATE_TASKS": str(REPO_ROOT / "tasks" / "demo_concepts.yaml")}
    trained = autoannotate("model", "train", home=tmp_path / "home", env=concepts_only, check=False)
    assert (trained.returncode, trained.stderr.strip()) == (1, (
        "autoannotate: No configured task detects objects (configured: demo-scenes): the model loop trains a "
        "task's detector, so it needs a task with `model.weights`."))


def test_average_precision_is_coco_s_101_point_ap() -> None:
    """One reference box: a true positive alone gives AP 1; a more confident false positive before it gives 0.5
    (pycocotools' figure for the same case); a concept without references is left out of the mean."""
    import pandas as pd

    from core.model_loop import average_precision

    truth = pd.DataFrame([{"input_id": "a", "concept": "ball", "x1": 0.1, "y1": 0.1, "x2": 0.5, "y2": 0.5}])
    hit = {"input_id": "a", "concept": "ball", "confidence": 0.8, "x1": 0.1, "y1": 0.1, "x2": 0.5, "y2": 0.5}
    miss = {"input_id": "a", "concept": "ball", "confidence": 0.9, "x1": 0.6, "y1": 0.6, "x2": 0.9, "y2": 0.9}
    alone = average_precision(pd.DataFrame([hit]), truth, ["ball", "box"])
    assert (alone["map50"], alone["map50_95"], list(alone["per_class"])) == (1.0, 1.0, ["ball"])
    assert average_precision(pd.DataFrame([hit, miss]), truth, ["ball"])["map50"] == pytest.approx(0.5)
    shifted = {**hit, "x2": 0.45}  # IoU 0.875: a hit up to IoU 0.85, a miss above
    assert average_precision(pd.DataFrame([shifted]), truth, ["ball"])["map50_95"] == pytest.approx(0.8)


def test_a_concept_the_detector_has_no_class_for_is_learned_with_a_new_head(
        resources: dict, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    """The task names `plus`, which no class of the bundled detector stands for (its `cross` is unmapped): the
    model loop trains in the task's concept space, so the candidate's classes are the task's concepts, its train
    split kept every label (the plus boxes too), and both detectors are measured on those concepts. A version
    whose train split holds no label trains nothing and registers nothing."""
    from apps.demo_scenes import generate_scene

    task_file = write_task_file(tmp_path, name="plus-task", concepts=["ball", "box", "sign", "plus"])
    resources["tasks"] = tasks = LabelingTasks(task_files=[str(task_file)],
                                               models=str(tmp_path / "home-models"))
    resources["training"] = DetectorTraining(root=str(tmp_path / "trained"), epochs=1, imgsz=128, batch=8)
    task = tasks.load()[0]
    day = datetime.now(UTC).date().isoformat()
    names = {"circle": "ball", "square": "box", "triangle": "sign", "cross": "plus"}
    root = tmp_path / "labelled"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    boxes = {"plus": 0}
    for index in range(24):
        image, objects = generate_scene(9_300_000 + index, min_objects=3)
        image.save(root / "images" / "train" / f"p{index:02d}.png")
        lines = [f"{task.concepts.index(names[o.class_name])} {(o.x1 + o.x2) / 2 / image.width:.6f} "
                 f"{(o.y1 + o.y2) / 2 / image.height:.6f} {(o.x2 - o.x1) / image.width:.6f} "
                 f"{(o.y2 - o.y1) / image.height:.6f}" for o in objects]
        boxes["plus"] += sum(o.class_name == "cross" for o in objects)
        (root / "labels" / "train" / f"p{index:02d}.txt").write_text("\n".join(lines) + "\n")
    (root / "data.yaml").write_text("train: images/train\nnames: [ball, box, sign, plus]\n")
    import_labels(resources["store"], resources["images"], "yolo", root, task.name, "truth", 50_000_000,
                  task.concepts)
    assert boxes["plus"] > 0
    assert dg.materialize([dataset_versions], partition_key=day, instance=instance, resources=resources).success
    result = dg.materialize([detector_models], partition_key=day, instance=instance, resources=resources)
    outcome = result.asset_materializations_for_node("detector_models")[0].metadata["tasks"].value[task.name]
    assert outcome["trained"] is True and outcome["training"]["classes"] == "task concepts"
    version = resources["store"].read(lambda s: s.versions.get(f"{task.name}@{day}"))
    assert outcome["training"]["train_labels"] > 0
    registered = query(resources["store"], "SELECT class_names FROM models WHERE model_id = ?",
                       [outcome["model_id"]])["class_names"][0]
    assert list(registered) == ["ball", "box", "sign", "plus"]
    assert set(outcome["per_class"]) <= {"ball", "box", "sign", "plus"}
    assert 0.0 <= outcome["candidate map50"] <= 1.0 and 0.0 <= outcome["current map50"] <= 1.0
    assert version["annotations"] == sum(len(p.read_text().splitlines()) for p in (root / "labels" / "train")
                                         .glob("*.txt"))
    logged = [e.user_message for e in instance.all_logs(result.run_id) if "concept space" in e.user_message]
    assert logged and "new head for plus" in logged[0]
    # Promoted, the detector's classes are the concepts themselves: the task's class_map still passes its check.
    promote_model(resources["store"], tasks, outcome["model_id"][:12], "alice")
    from core.task_config import check_class_map

    check_class_map(tasks.load()[0], list(registered), "candidate")


def test_a_version_whose_train_split_has_no_label_trains_nothing(
        resources: dict, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    """Labelled scenes only in the val split (chosen by content hash), grey negatives in train: the train split
    has images but no label, so nothing is trained and no model is registered."""
    import hashlib
    import io

    from PIL import Image

    from apps.demo_scenes import generate_scene
    from core.manifests import split_of

    task_file = write_task_file(tmp_path, name="empty-task")
    resources["tasks"] = tasks = LabelingTasks(task_files=[str(task_file)],
                                               models=str(tmp_path / "home-models"))
    resources["training"] = DetectorTraining(root=str(tmp_path / "trained"), epochs=1, imgsz=128, batch=8)
    root = tmp_path / "dataset"
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    wanted = {"val": 2, "train": 4}
    for index in range(400):
        scene = index % 2 == 0
        image = generate_scene(9_400_000 + index, min_objects=2)[0] if scene else \
            Image.new("RGB", (64, 48), (index % 256, 90, 90))
        data = io.BytesIO()
        image.save(data, format="PNG")
        split = split_of(hashlib.sha256(data.getvalue()).hexdigest(), 0.2, 0.1)
        if (split != "val") if scene else (split != "train"):
            continue
        if not wanted[split]:
            continue
        wanted[split] -= 1
        (root / "images" / "train" / f"i{index:03d}.png").write_bytes(data.getvalue())
        (root / "labels" / "train" / f"i{index:03d}.txt").write_text("0 0.5 0.5 0.2 0.2\n" if scene else "")
        if not any(wanted.values()):
            break
    assert not any(wanted.values())
    (root / "data.yaml").write_text("train: images/train\nnames: [ball, box, sign]\n")
    task = tasks.load()[0]
    import_labels(resources["store"], resources["images"], "yolo", root, task.name, "truth", 50_000_000,
                  task.concepts)
    day = datetime.now(UTC).date().isoformat()
    assert dg.materialize([dataset_versions], partition_key=day, instance=instance, resources=resources).success
    result = dg.materialize([detector_models], partition_key=day, instance=instance, resources=resources)
    outcome = result.asset_materializations_for_node("detector_models")[0].metadata["tasks"].value[task.name]
    assert outcome == {"trained": False, "why": f"{task.name}@{day} has 4 train images holding 0 labels the "
                                                "detector can learn, and 2 val images: both splits need images and "
                                                "the train split labels"}
    assert query(resources["store"], "SELECT count(*) AS n FROM models")["n"][0] == 0
    assert not (tmp_path / "trained").exists() or list((tmp_path / "trained").iterdir()) == []
