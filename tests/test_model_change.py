"""A task's model changes (the bundled second demo detector, a fine-tune of the first): the batch runs again and
the new predictions are matched to the annotations the task already has, so no object gets two annotations."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from helpers import autoannotate

from apps.demo_scenes import write_demo_images
from core.quality import iou_one_to_many
from core.settings import DEMO_TASK, REPO_ROOT, Settings
from resources import build_resources

SECOND_MODEL = REPO_ROOT / "models" / "demo_detector_v2.pt"
LIVE = ("SUCCESS", "AWAITING_REVIEW")


def state(home: Path) -> pd.DataFrame:
    store = build_resources(Settings(home=home))["store"]
    return store.read(lambda s: s.df(
        "SELECT a.*, a.annotation_id IN (SELECT annotation_id FROM annotations WHERE source <> 'auto') AS decided, "
        "r.reviewer FROM annotation_state a LEFT JOIN review_assignments r USING (task, input_id)"))


def overlapping_pairs(frame: pd.DataFrame, iou: float = 0.5) -> list[tuple[str, str]]:
    """Pairs of annotations of one image and concept that overlap by at least `iou`: one object, twice."""
    pairs = []
    for _, group in frame.groupby(["input_id", "concept"]):
        boxes, ids = group[["x1", "y1", "x2", "y2"]].to_numpy(float), group["annotation_id"].tolist()
        for i in range(len(boxes)):
            overlap = iou_one_to_many(boxes[i], boxes[i + 1:])
            pairs += [(ids[i], ids[i + 1 + j]) for j in np.flatnonzero(overlap >= iou)]
    return pairs


def test_a_new_model_matches_existing_annotations_instead_of_adding_a_second_set(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_demo_images(tmp_path / "inbox", 16, seed=131)
    autoannotate("run", "--inbox", str(tmp_path / "inbox"), home=home)
    first = state(home)
    first_model = first["model_id"].dropna().unique()
    assert len(first_model) == 1

    # People decide two of them: one box to review accepted, one auto-accepted box rejected.
    to_review = first[first.status == "AWAITING_REVIEW"].iloc[0]
    accepted = first[(first.status == "SUCCESS") & (first.input_id != to_review.input_id)].iloc[0]
    autoannotate("review", "accept", to_review.annotation_id, "--reviewer", to_review.reviewer, home=home)
    autoannotate("review", "reject", accepted.annotation_id, "--reviewer",
                 accepted.reviewer if isinstance(accepted.reviewer, str) else "alice", home=home)
    before = state(home)

    task = yaml.safe_load(DEMO_TASK.read_text())
    task["model"]["weights"] = str(SECOND_MODEL)
    second = tmp_path / "demo-v2.yaml"
    second.write_text(yaml.safe_dump(task))
    summary = json.loads(autoannotate("run", "--inbox", str(tmp_path / "inbox"), "--task-file", str(second), "--json",
                                      home=home).stdout)
    assert len(summary["resumed"]) == 1  # the batch runs again, with the task's new model
    after = state(home).set_index("annotation_id")
    live = after[after.status.isin(LIVE)].reset_index()
    # Never two annotations of one object: overlapping live annotations are only ever two boxes one model
    # itself gave for one image (its NMS keeps boxes overlapping by less than 0.7), never two sources' views.
    by_id = live.set_index("annotation_id")
    # Two boxes the first model itself gave for one object (its NMS keeps overlaps below 0.7) were a pair before
    # the change; the new model adopting one of them leaves that pair as it was, it does not make it.
    earlier_pairs = {frozenset(p) for p in overlapping_pairs(before[before.status.isin(LIVE)])}
    for a, b in (p for p in overlapping_pairs(live) if frozenset(p) not in earlier_pairs):
        assert by_id.model_id[a] == by_id.model_id[b] and not by_id.decided[a] and not by_id.decided[b], (a, b)
        box = by_id.loc[[b], ["x1", "y1", "x2", "y2"]].to_numpy(float)
        assert iou_one_to_many(by_id.loc[a, ["x1", "y1", "x2", "y2"]].to_numpy(float), box)[0] < 0.7

    # A person's decision wins: both stay as they were, and nothing new sits on the rejected box.
    assert after.loc[to_review.annotation_id, "status"] == "SUCCESS"
    assert after.loc[to_review.annotation_id, "source"] == "review"
    assert after.loc[accepted.annotation_id, "status"] == "REJECTED"
    same_place = live[(live.input_id == accepted.input_id) & (live.concept == accepted.concept)]
    box = accepted[["x1", "y1", "x2", "y2"]].to_numpy(float)
    assert not (iou_one_to_many(box, same_place[["x1", "y1", "x2", "y2"]].to_numpy(float)) >= 0.5).any()

    # The first model's auto annotations: matched ones took the new model's prediction (same annotation id);
    # the ones the new model no longer finds went to review; none vanished.
    earlier = before[~before.decided & before.status.isin(LIVE)].set_index("annotation_id")
    now = after.loc[earlier.index]
    adopted = now[now.model_id != first_model[0]]
    unfound = now[now.model_id == first_model[0]]
    assert len(adopted) > 0 and (now.status != "RETIRED").all()
    assert (unfound.status == "AWAITING_REVIEW").all()
    second_model = (set(after.model_id.dropna()) - set(first_model)).pop()
    assert (adopted.model_id == second_model).all()
    assert not adopted.prediction_id.isin(earlier.prediction_id).any()  # the new prediction, its confidence
    # New objects are annotations of their own; every live auto annotation is the new model's or awaits review.
    fresh = live[~live.annotation_id.isin(before.annotation_id)]
    assert (fresh.model_id == second_model).all()

    events = build_resources(Settings(home=home))["store"].read(lambda s: s.scalar("SELECT count(*) FROM annotations"))
    autoannotate("run", "--inbox", str(tmp_path / "inbox"), "--task-file", str(second), "--reroute", home=home)
    assert build_resources(Settings(home=home))["store"].read(
        lambda s: s.scalar("SELECT count(*) FROM annotations")) == events  # a re-run writes nothing new


@pytest.mark.parametrize("name", ["demo_detector_v2.pt"])
def test_the_second_demo_model_is_bundled_small_and_described(name: str) -> None:
    weights = REPO_ROOT / "models" / name
    report = json.loads(weights.with_suffix(".json").read_text())
    assert weights.stat().st_size == report["weights_bytes"] <= 8_000_000
    assert report["fine_tuned_from"] == "demo_detector.pt" and report["val_map50"] > 0.5
