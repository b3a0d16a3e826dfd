"""Spot checks: a task's shares of each batch's auto-accepted annotations and discarded predictions go to a
reviewer, exactly as many as the rates say and always the same ones for a seed; the quality report estimates the
bands nobody reviews from what reviewers decided."""

import hashlib
import json
from datetime import datetime
from math import floor
from pathlib import Path

import pytest
import yaml
from helpers import autoannotate

from apps.demo_scenes import write_demo_images
from core.annotations import auto_annotation_id
from core.routing import route_predictions
from core.settings import DEMO_TASK, DEMO_WEIGHTS, Settings
from resources import build_resources
from resources.tasks import LabelingTasks

RATES = {"accepted": 0.25, "discarded": 0.1, "seed": 7}


def drawn_first(ids: list[str], share: float) -> set[str]:
    """The oracle: round(share x count), halves up, of the ids whose sha256 with the seed sorts first."""
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{RATES['seed']}|{i}".encode()).hexdigest())
    return set(ranked[:floor(share * len(ids) + 0.5)])


@pytest.fixture(scope="module")
def spot_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("spot")
    task = yaml.safe_load(DEMO_TASK.read_text())
    task["model"]["weights"], task["spot_check"] = str(DEMO_WEIGHTS), RATES
    path = folder / "spot.yaml"
    path.write_text(yaml.safe_dump(task))
    write_demo_images(folder / "inbox", 24, seed=141)
    autoannotate("run", "--inbox", str(folder / "inbox"), "--task-file", str(path), home=folder / "home")
    return folder / "home", path


def test_spot_checks_draw_exact_shares_the_seed_fixes_and_keep_accepted_statuses(spot_home: tuple[Path, Path]) -> None:
    home, path = spot_home
    task = LabelingTasks(task_files=[str(path)]).load()[0]
    store = build_resources(Settings(home=home, task_files=(str(path),)))["store"]
    predictions = store.read(lambda s: s.df("SELECT * FROM predictions"))
    routed = route_predictions(predictions, task)
    accepted = [auto_annotation_id(task.name, p) for p in routed[routed.band == "accept"].prediction_id]
    discarded = [auto_annotation_id(task.name, p) for p in routed[routed.band == "discard"].prediction_id]
    assert len(accepted) >= 20 and len(discarded) >= 10
    drawn = store.read(lambda s: s.df("SELECT * FROM spot_checks"))
    assert set(drawn[drawn.band == "accept"].annotation_id) == drawn_first(accepted, 0.25)
    assert set(drawn[drawn.band == "discard"].annotation_id) == drawn_first(discarded, 0.1)

    state = store.read(lambda s: s.df("SELECT * FROM annotation_state")).set_index("annotation_id")
    checked_accepted = drawn[drawn.band == "accept"].annotation_id
    assert (state.loc[checked_accepted, "status"] == "SUCCESS").all()  # a spot check changes no status
    assert (state.loc[drawn[drawn.band == "discard"].annotation_id, "status"] == "AWAITING_REVIEW").all()
    # Every image holding a spot check is in some reviewer's queue, counted as pending there.
    queued = {}
    for reviewer in task.reviewers:
        items = json.loads(autoannotate("--json", "review", "list", "--reviewer", reviewer, "--task", task.name,
                                        home=home).stdout)["items"]
        queued |= {item["input_id"]: item["pending"] for item in items}
    assert set(drawn.input_id) <= set(queued) and all(queued[i] > 0 for i in drawn.input_id)

    # Routing the batch again draws nothing new and writes no event.
    events = store.read(lambda s: s.scalar("SELECT count(*) FROM annotations"))
    batch, model_id = drawn.batch.iat[0], predictions.model_id.iat[0]
    store.write(lambda s: s.history.sync_auto(task, batch, model_id, datetime.now()))
    assert store.read(lambda s: s.scalar("SELECT count(*) FROM spot_checks")) == len(drawn)
    assert store.read(lambda s: s.scalar("SELECT count(*) FROM annotations")) == events


def test_reviewers_decisions_on_spot_checks_estimate_the_unreviewed_bands(spot_home: tuple[Path, Path]) -> None:
    home, path = spot_home
    store = build_resources(Settings(home=home, task_files=(str(path),)))["store"]
    drawn = store.read(lambda s: s.df(
        "SELECT s.*, a.concept, r.reviewer FROM spot_checks s JOIN annotation_state a USING (task, annotation_id) "
        "JOIN review_assignments r ON r.task = s.task AND r.input_id = s.input_id ORDER BY s.annotation_id"))
    concept = drawn[drawn.band == "accept"].concept.value_counts().index[0]
    mine = drawn[drawn.concept == concept]
    rejected, missed = mine[mine.band == "accept"].annotation_id.iat[0], None
    for row in mine.itertuples():
        keep = row.annotation_id != rejected if row.band == "accept" else missed is None
        missed = row.annotation_id if row.band == "discard" and keep else missed
        autoannotate("review", "accept" if keep else "reject", row.annotation_id, "--reviewer", row.reviewer,
                     home=home)
    report = json.loads(autoannotate("--json", "quality", home=home).stdout)["concepts"][concept]
    checks, accepted_n = report["spot_checks"], int((mine.band == "accept").sum())
    discarded_n = int((mine.band == "discard").sum())
    assert checks["accepted_checked"] == accepted_n
    assert checks["accepted_precision"] == pytest.approx((accepted_n - 1) / accepted_n)
    assert checks["estimated_false_accepts"] == pytest.approx(round(report["auto_accepted"] / accepted_n, 1),
                                                              abs=0.051)
    assert checks["discarded_checked"] == discarded_n
    if discarded_n:
        assert checks["miss_rate"] == pytest.approx(1 / discarded_n)
    assert checks["accepted_precision_low"] < checks["accepted_precision"] <= checks["accepted_precision_high"]
    text = autoannotate("quality", home=home).stdout
    assert "spot checks (decided by a person), scaled to their whole band:" in text
