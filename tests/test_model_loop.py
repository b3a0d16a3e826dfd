"""The model loop: a detector fine-tuned on a dataset version, measured against the current one on the same val
split, promoted only by the task's rule or a person, rolled back; what the next batches predict with."""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from helpers import query, suggestions_dataset, write_task_file

from apps.dataset_io import import_labels
from apps.model_registry import list_models, promote_model, rollback_model
from assets.model_loop import detector_models
from assets.versions import dataset_versions
from core.model_loop import promotion_decision, training_classes
from core.settings import DEMO_TASK, DEMO_WEIGHTS
from core.task_config import PromoteWhen, load_task
from resources.detector import file_sha256
from resources.tasks import LabelingTasks
from resources.training import DetectorTraining


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


def test_training_keeps_the_detector_s_own_classes() -> None:
    demo = load_task(DEMO_TASK)
    assert training_classes(demo, ["circle", "square", "triangle", "cross"]) == {
        "ball": "circle", "box": "square", "sign": "triangle"}


def test_a_detector_trained_on_a_version_is_measured_promoted_by_hand_and_rolled_back(
        resources: dict, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    task_file = write_task_file(tmp_path, promote_when={"metric": "map50", "min_gain": 1.0})
    resources["tasks"] = tasks = LabelingTasks(task_files=[str(task_file)],
                                               promoted=str(tmp_path / "home-models" / "promoted.json"))
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
    evaluations = query(resources["store"], "SELECT model_id, version_key, images FROM model_evaluations")
    assert sorted(evaluations["model_id"]) == sorted([candidate, demo_id])
    assert set(evaluations["version_key"]) == {f"{task.name}@{day}"} and min(evaluations["images"]) > 0
    assert tasks.load()[0].weights_path() == DEMO_WEIGHTS.resolve()

    listed = {m["model_id"]: m for m in list_models(resources["store"], tasks)}
    assert listed[candidate]["parent_id"] == demo_id and listed[candidate]["version_key"] == f"{task.name}@{day}"
    assert (listed[demo_id]["current"], listed[candidate]["current"]) == (True, False)
    assert listed[candidate]["map50"] == pytest.approx(outcome["candidate map50"], abs=1e-4)

    promote_model(resources["store"], tasks, candidate[:12], "alice")
    assert tasks.load()[0].weights_path() == (tmp_path / "trained" / f"{candidate}.pt").resolve()
    assert json.loads((tmp_path / "home-models" / "promoted.json").read_text()) == {
        task.name: str((tmp_path / "trained" / f"{candidate}.pt").resolve())}
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
