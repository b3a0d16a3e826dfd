"""Pure triage logic: operators at their boundaries, overrides, mapping, reviewer split, config errors."""

import pandas as pd
import pytest

from core.routing import assign_reviewers, route_predictions
from core.task_config import TaskConfigError, parse_task

BASE = {
    "name": "t", "concepts": ["car", "person"], "class_map": {"auto": "car"},
    "thresholds": {"upper": 0.8, "lower": 0.4}, "reviewers": ["r1"], "annotator": "bot",
}


def task(**changes):
    data = {**BASE, **changes}
    return parse_task(data, "task.yaml")


def bands(t, confidences: list[float], class_name: str = "car") -> list[str]:
    frame = pd.DataFrame({"prediction_id": [str(i) for i in range(len(confidences))],
                          "class_name": class_name, "confidence": confidences})
    return route_predictions(frame, t).sort_values("prediction_id")["band"].tolist()


@pytest.mark.parametrize(("operator", "expected"), [
    (">", ["review", "review", "accept"]),
    (">=", ["review", "accept", "accept"]),
    ("=", ["review", "accept", "review"]),
    ("<=", ["accept", "accept", "review"]),
    ("<", ["accept", "review", "review"]),
])
def test_upper_operator_just_below_at_and_just_above(operator: str, expected: list[str]) -> None:
    t = task(thresholds={"upper": 0.8, "lower": 0.4, "upper_operator": operator})
    assert bands(t, [0.7999999, 0.8, 0.8000001]) == expected


@pytest.mark.parametrize(("operator", "expected"), [
    (">", ["discard", "discard", "review"]),
    (">=", ["discard", "review", "review"]),
    ("=", ["discard", "review", "discard"]),
    ("<=", ["review", "review", "discard"]),
    ("<", ["review", "discard", "discard"]),
])
def test_lower_operator_just_below_at_and_just_above(operator: str, expected: list[str]) -> None:
    t = task(thresholds={"upper": 0.8, "lower": 0.4, "lower_operator": operator})
    assert bands(t, [0.3999999, 0.4, 0.4000001]) == expected


def test_per_concept_override_beats_the_global_value() -> None:
    t = task(thresholds={"upper": 0.8, "lower": 0.4, "per_concept": {"person": {"upper": 0.95, "lower": 0.6}}})
    assert bands(t, [0.9, 0.5], class_name="person") == ["review", "discard"]
    assert bands(t, [0.9, 0.5], class_name="auto") == ["accept", "review"]


def test_class_mapping_and_unmapped_classes_are_dropped() -> None:
    frame = pd.DataFrame({"prediction_id": ["a", "b", "c"], "class_name": ["auto", "person", "dog"],
                          "confidence": [0.9, 0.9, 0.9]})
    routed = route_predictions(frame, task())
    assert dict(zip(routed["prediction_id"], routed["concept"])) == {"a": "car", "b": "person"}


def test_three_reviewers_share_100_inputs_evenly_and_stably() -> None:
    reviewers = ["ann", "ben", "cy"]
    inputs = [f"{i:064x}" for i in range(100)]
    first = assign_reviewers({}, inputs[:60], reviewers)
    second = assign_reviewers(first, inputs, reviewers)  # a new batch arrives
    combined = {**first, **second}
    counts = [list(combined.values()).count(r) for r in reviewers]
    assert sorted(combined) == sorted(inputs)  # every input exactly once
    assert max(counts) - min(counts) <= 1
    assert sum(counts) == 100
    assert assign_reviewers(combined, inputs, reviewers) == {}  # a re-run moves nothing
    assert all(combined[i] == first[i] for i in first)


@pytest.mark.parametrize(("changes", "message"), [
    ({"class_map": {"auto": "truck"}}, "task.yaml: class_map.auto: unknown concept 'truck'"),
    ({"thresholds": {"upper": 0.8, "lower": 0.4, "per_concept": {"bike": {"upper": 0.9}}}},
     "task.yaml: thresholds.per_concept.bike: unknown concept 'bike'"),
    ({"thresholds": {"upper": 0.4, "lower": 0.8}}, "task.yaml: thresholds.lower (0.8) is above thresholds.upper (0.4)"),
    ({"thresholds": {"upper": 0.8, "lower": 0.4, "per_concept": {"car": {"lower": 0.9}}}},
     "task.yaml: thresholds.per_concept.car.lower (0.9) is above thresholds.per_concept.car.upper (0.8)"),
    ({"thresholds": {"upper": 1.5, "lower": 0.4}}, "task.yaml: thresholds.upper: 1.5 is outside [0, 1]"),
    ({"thresholds": {"upper": 0.8, "lower": -0.1}}, "task.yaml: thresholds.lower: -0.1 is outside [0, 1]"),
    ({"thresholds": {"upper": 0.8, "lower": 0.4, "upper_operator": "=>"}},
     "task.yaml: thresholds.upper_operator: unknown value '=>'"),
    ({"reviewers": []}, "task.yaml: reviewers: the thresholds leave a review band, so at least one reviewer"),
])
def test_every_config_mistake_names_its_field(changes: dict, message: str) -> None:
    with pytest.raises(TaskConfigError) as raised:
        task(**changes)
    assert str(raised.value).startswith(message)


def test_every_mistake_of_a_task_file_is_named_at_once(tmp_path) -> None:
    from resources.tasks import LabelingTasks

    with pytest.raises(TaskConfigError) as raised:
        task(priority="urgent", thresholds={"upper": 1.5, "lower": 0.4, "upper_operator": "=>"})
    assert str(raised.value) == (
        "task.yaml: thresholds.upper: 1.5 is outside [0, 1]; thresholds.upper_operator: unknown value '=>'; input "
        "should be '>', '>=', '=', '<=' or '<'; priority: unknown value 'urgent'; input should be 'low', 'medium' "
        "or 'high'.")
    with pytest.raises(TaskConfigError) as raised:
        task(class_map={"auto": "truck", "bus": "van"}, reviewers=["ann", "ann"])
    assert str(raised.value) == ("task.yaml: class_map.auto: unknown concept 'truck' (concepts: car, person); "
                                 "class_map.bus: unknown concept 'van' (concepts: car, person); reviewers: a reviewer "
                                 "is listed twice.")
    (tmp_path / "a.yaml").write_text("name: a\n")
    (tmp_path / "b.yaml").write_text("- not a mapping\n")
    with pytest.raises(TaskConfigError) as raised:
        LabelingTasks(task_files=[str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]).load()
    assert str(tmp_path / "a.yaml") in str(raised.value) and str(tmp_path / "b.yaml") in str(raised.value)
    assert "concepts: field required" in str(raised.value).lower()


def test_a_misspelled_field_is_named_with_the_field_it_was_meant_to_be() -> None:
    """Before: "threshold: Extra inputs are not permitted", nothing more."""
    with pytest.raises(TaskConfigError) as raised:
        task(threshold={"upper": 0.9}, reviewrs=["ann"], zzz=1)
    assert str(raised.value) == ("task.yaml: threshold: no such field (did you mean `thresholds`?); reviewrs: no "
                                 "such field (did you mean `reviewers`?); zzz: no such field.")


def test_no_reviewers_needed_without_a_review_band() -> None:
    assert task(thresholds={"upper": 0.5, "lower": 0.5}, reviewers=[]).reviewers == []


def test_demo_task_file_is_valid() -> None:
    from core.settings import DEMO_TASK, DEMO_WEIGHTS
    from core.task_config import load_task

    demo = load_task(DEMO_TASK)
    assert demo.weights_path() == DEMO_WEIGHTS
    assert demo.concept_for("cross") is None


def test_a_task_without_annotator_is_annotated_by_autoannotate() -> None:
    data = {k: v for k, v in BASE.items() if k != "annotator"}
    assert parse_task(data, "task.yaml").annotator == "autoannotate"
    with pytest.raises(TaskConfigError, match=r"task\.yaml: annotator"):
        task(annotator="")
