"""The `annotations` asset with real predictions: threshold changes, human decisions, progress, dry-run."""

import json
from pathlib import Path

import dagster as dg
from helpers import autoannotate, materialize_batch, new_batch, query, table_count, write_task_file

from apps.demo_scenes import write_demo_images
from apps.review_desk import ReviewDesk
from assets.inference import predictions
from assets.ingestion import inputs
from assets.triage import (
    annotation_state_schema_check,
    annotations,
    annotations_schema_check,
    auto_success_passes_upper_rule,
    boxes_are_inside_the_image,
    no_input_has_two_reviewers,
    one_annotation_per_object,
    review_assignments_schema_check,
    state_is_latest_event,
    upper_rule_violations,
)
from core.settings import DEMO_TASK
from resources import build_resources
from resources.tasks import LabelingTasks
from store.history import CURRENT as CURRENT_ANNOTATIONS

CHECKS = [annotations_schema_check, annotation_state_schema_check, review_assignments_schema_check,
          auto_success_passes_upper_rule, no_input_has_two_reviewers, boxes_are_inside_the_image, state_is_latest_event,
          one_annotation_per_object]


def write_task(folder: Path, upper: float, lower: float) -> Path:
    return write_task_file(folder, thresholds={"upper": upper, "lower": lower})


def routed_demo_batch(resources: dict, instance: dg.DagsterInstance, inbox: Path, task_file: Path, count: int,
                      seed: int) -> str:
    """`count` demo images ingested, predicted and routed for the task in `task_file`, as one batch."""
    resources["tasks"] = LabelingTasks(task_files=[str(task_file)])
    write_demo_images(inbox, count, seed=seed)
    batch = new_batch(resources, instance)
    materialize_batch([inputs, predictions, annotations], resources, instance, batch, CHECKS)
    return batch


def current(resources: dict) -> dict[str, tuple[str, str]]:
    rows = query(resources["store"], f"SELECT annotation_id, status, source FROM ({CURRENT_ANNOTATIONS})")
    return {r.annotation_id: (r.status, r.source) for r in rows.itertuples()}


def test_threshold_change_moves_auto_statuses_but_not_human_decisions(
        resources: dict, inbox: Path, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    batch = routed_demo_batch(resources, instance, inbox, write_task(tmp_path, upper=0.85, lower=0.3), 24, seed=11)
    before = current(resources)
    confidences = query(resources["store"], f"SELECT annotation_id, confidence FROM ({CURRENT_ANNOTATIONS})")
    movable = confidences[(confidences["confidence"] > 0.5) & (confidences["confidence"] <= 0.85)]
    assert len(movable) >= 3, "the demo scenes should give several predictions between 0.5 and 0.85"
    reviewed = movable["annotation_id"].iloc[0]
    assert before[reviewed] == ("AWAITING_REVIEW", "auto")
    store = resources["store"]
    owner = query(store, f"SELECT r.reviewer FROM review_assignments r JOIN ({CURRENT_ANNOTATIONS}) c "
                         "USING (task, input_id) WHERE c.annotation_id = ?", [reviewed])["reviewer"][0]
    ReviewDesk(store, resources["tasks"].load()).decide(reviewed, "reject", owner)

    write_task(tmp_path, upper=0.5, lower=0.3)  # lower the upper threshold, then backfill the batch
    materialize_batch([annotations], resources, instance, batch, CHECKS)
    after = current(resources)
    assert after[reviewed] == ("REJECTED", "review")
    for annotation_id in movable["annotation_id"].iloc[1:]:
        assert after[annotation_id] == ("SUCCESS", "auto")
    events = table_count(resources, "annotations")
    materialize_batch([annotations], resources, instance, batch, CHECKS)
    assert table_count(resources, "annotations") == events  # same thresholds again: nothing appended


def test_every_processed_input_is_recorded_even_without_objects(
        resources: dict, inbox: Path, instance: dg.DagsterInstance) -> None:
    write_demo_images(inbox, 3, seed=2)
    from PIL import Image

    Image.new("RGB", (320, 240), (128, 128, 128)).save(inbox / "blank.png")
    batch = new_batch(resources, instance)
    materialize_batch([inputs, predictions, annotations], resources, instance, batch, CHECKS)
    assert table_count(resources, "task_inputs") == 4
    blank = query(resources["store"],
        "SELECT t.annotation_count FROM task_inputs t JOIN inputs i USING (input_id) WHERE i.uri LIKE '%blank.png'")
    assert blank["annotation_count"].tolist() == [0]


def test_status_json_matches_the_rows_in_duckdb(home: Path, inbox: Path) -> None:

    write_demo_images(inbox, 12, seed=4)
    autoannotate("run", "--task-file", str(DEMO_TASK), "--json", home=home)
    status = json.loads(autoannotate("status", "--task", "demo-shapes", "--json", home=home).stdout)
    from core.settings import Settings
    from resources import build_resources

    store = build_resources(Settings(home=home))["store"]
    truth = query(store, f"SELECT status, count(*) AS n FROM ({CURRENT_ANNOTATIONS}) GROUP BY 1")
    assert status["annotations"] == {r.status: int(r.n) for r in truth.itertuples()}
    assert status["inputs"] == 12
    assert status["inputs_processed"] == 12
    assigned = query(store, "SELECT reviewer, count(*) AS n FROM review_assignments GROUP BY 1")
    assert {r: q["assigned"] for r, q in status["review"].items()} == {
        r.reviewer: int(r.n) for r in assigned.itertuples()}
    assert max(q["assigned"] for q in status["review"].values()) - min(
        q["assigned"] for q in status["review"].values()) <= 1


def test_dry_run_writes_nothing(home: Path, inbox: Path) -> None:

    write_demo_images(inbox, 4, seed=6)
    autoannotate("run", "--json", home=home)
    database = home / "autoannotate.duckdb"
    tables = ["inputs", "predictions", "annotations", "review_assignments", "task_inputs", "models"]
    from core.settings import Settings
    from resources import build_resources

    store = build_resources(Settings(home=home))["store"]
    before = [int(query(store, f"SELECT count(*) FROM {t}").iloc[0, 0]) for t in tables]
    extra = home / "extra"
    paths = write_demo_images(extra, 2, seed=99)
    result = json.loads(autoannotate("dry-run", "--task-file", str(DEMO_TASK), *map(str, paths), "--json",
                                     home=home).stdout)
    assert len(result["images"]) == 2
    bands = {p["band"] for image in result["images"] for p in image["predictions"]}
    assert bands <= {"accept", "review", "discard"} and bands
    after = [int(query(store, f"SELECT count(*) FROM {t}").iloc[0, 0]) for t in tables]
    assert before == after
    assert database.exists()


def test_two_tasks_side_by_side_keep_their_own_annotations(
        resources: dict, inbox: Path, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    strict = write_task_file(tmp_path, name="strict", thresholds={"upper": 0.95, "lower": 0.9},
                             reviewers=["zoe"], annotator="strict-bot")
    balls = write_task_file(tmp_path, name="balls-only", concepts=["ball"], class_map={"circle": "ball"},
                            thresholds={"upper": 0.5, "lower": 0.5}, reviewers=[], annotator="ball-bot")
    resources["tasks"] = LabelingTasks(task_files=[str(strict), str(balls)])
    write_demo_images(inbox, 10, seed=8)
    batch = new_batch(resources, instance)
    materialize_batch([inputs, predictions, annotations], resources, instance, batch, CHECKS)
    rows = query(resources["store"],
        f"SELECT task, annotator, concept, status, confidence FROM ({CURRENT_ANNOTATIONS})")
    strict_rows, ball_rows = rows[rows["task"] == "strict"], rows[rows["task"] == "balls-only"]
    assert len(strict_rows) > 0 and len(ball_rows) > 0
    assert set(strict_rows["annotator"]) == {"strict-bot"} and set(ball_rows["annotator"]) == {"ball-bot"}
    assert set(ball_rows["concept"]) == {"ball"} and set(ball_rows["status"]) == {"SUCCESS"}
    assert (strict_rows["confidence"] > 0.9).all()
    assert set(query(resources["store"], "SELECT DISTINCT reviewer FROM review_assignments")["reviewer"]) <= {"zoe"}
    assert table_count(resources, "task_inputs", "task = 'strict'") == 10
    assert table_count(resources, "task_inputs", "task = 'balls-only'") == 10


def test_tightening_a_threshold_then_rerouting_keeps_people_decisions(tmp_path: Path) -> None:
    """A user tightens `upper` after a first batch: later runs succeed, the first batch's annotations still pass the
    check of the rules that wrote them, `status` says the batch was routed under earlier rules, and
    `run --reroute` re-routes it from the stored predictions, keeping a reviewer's decision."""
    from core.settings import Settings
    from core.task_config import load_task

    home = tmp_path / "home"
    loose = {"upper": 0.6, "lower": 0.2, "upper_operator": ">", "lower_operator": ">"}
    task_file = write_task_file(tmp_path, thresholds=loose)
    write_demo_images(tmp_path / "first", 16, seed=31)
    first = json.loads(autoannotate("run", "--inbox", str(tmp_path / "first"), "--task-file", str(task_file), "--json",
                                    home=home).stdout)["batch"]
    store = build_resources(Settings(home=home))["store"]
    pending = query(store, "SELECT annotation_id, confidence FROM annotation_state WHERE status = 'AWAITING_REVIEW' "
                           "ORDER BY confidence LIMIT 1")
    owner = query(store, "SELECT reviewer FROM review_assignments r JOIN annotation_state a USING (task, input_id) "
                         "WHERE a.annotation_id = ?", [pending.annotation_id[0]]).reviewer[0]
    autoannotate("review", "accept", pending.annotation_id[0], "--reviewer", owner, home=home)
    loose_accepted = query(store, "SELECT count(*) AS n FROM annotation_state WHERE source = 'auto' AND "
                                  "status = 'SUCCESS' AND confidence <= 0.95").n[0]
    assert loose_accepted > 0  # the tightening below has something to move

    task_file = write_task_file(tmp_path, thresholds={**loose, "upper": 0.95})
    write_demo_images(tmp_path / "second", 4, seed=32)
    autoannotate("run", "--inbox", str(tmp_path / "second"), "--task-file", str(task_file), "--json", home=home)
    # The first batch's annotations pass the rules that wrote them, though `loose_accepted` of them would not
    # pass the tightened ones.
    assert upper_rule_violations(store, [load_task(task_file)], first) == {}
    status = json.loads(autoannotate("status", "--task", "demo-shapes", "--json", home=home,
                                     env={"AUTOANNOTATE_TASKS": str(task_file)}).stdout)
    assert status["batches_routed_under_older_rules"] == {"demo-shapes": 1}

    rerouted = json.loads(autoannotate("run", "--inbox", str(tmp_path / "second"), "--task-file", str(task_file),
                                       "--reroute", "--json", home=home).stdout)
    assert rerouted["rerouted"] == [first] and rerouted["batch"] is None
    assert query(store, "SELECT count(*) AS n FROM annotation_state WHERE source = 'auto' AND status = 'SUCCESS' "
                        "AND confidence <= 0.95").n[0] == 0
    decided = query(store, "SELECT status, source, annotator FROM annotation_state WHERE annotation_id = ?",
                    [pending.annotation_id[0]])
    assert decided.to_dict("records") == [{"status": "SUCCESS", "source": "review", "annotator": owner}]
    status = json.loads(autoannotate("status", "--json", home=home, env={"AUTOANNOTATE_TASKS": str(task_file)}).stdout)
    assert status["batches_routed_under_older_rules"] == {}


def test_a_lower_threshold_of_002_gets_predictions_down_to_002_and_a_lower_one_needs_new_predictions(
        resources: dict, inbox: Path, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    batch = routed_demo_batch(resources, instance, inbox, write_task(tmp_path, upper=0.85, lower=0.02), 12, seed=31)
    store = resources["store"]
    stored = query(store, "SELECT min(confidence) AS low, count(*) FILTER (WHERE confidence < 0.05 AND "
                          "class_name <> 'cross') AS under FROM predictions")  # the task drops class cross
    assert 0.02 < stored["low"][0] < 0.05 and stored["under"][0] > 0  # the old fixed floor would have cut these
    assert set(query(store, "SELECT DISTINCT conf_floor FROM processed_inputs")["conf_floor"]) == {0.02}
    kept = query(store, f"SELECT status, count(*) AS n FROM ({CURRENT_ANNOTATIONS}) WHERE confidence < 0.05 "
                        "GROUP BY 1")
    assert dict(zip(kept["status"], kept["n"], strict=True)) == {"AWAITING_REVIEW": stored["under"][0]}

    write_task_file(tmp_path, thresholds={"upper": 0.85, "lower": 0.3, "per_concept": {"box": {"lower": 0.01}}})
    events = table_count(resources, "annotations")
    refused = dg.materialize([annotations], partition_key=batch, instance=instance, resources=resources,
                             raise_on_error=False)
    assert not refused.success
    failure = refused.get_step_failure_events()[0].step_failure_data.error
    assert f"Task 'demo-shapes' has a lower threshold of 0.01, but batch {batch}'s predictions were made at a " \
           "confidence floor of 0.02" in failure.to_string()
    assert table_count(resources, "annotations") == events  # nothing half-routed
    materialize_batch([predictions, annotations], resources, instance, batch, CHECKS)
    assert set(query(store, "SELECT DISTINCT conf_floor FROM processed_inputs")["conf_floor"]) == {0.01}


def test_a_task_switched_off_writes_nothing_a_scoped_task_routes_its_folder_and_priority_orders_tasks(
        resources: dict, inbox: Path, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    from apps.status import collect_status
    from resources.tasks import models_by_task

    files = [write_task_file(tmp_path, name="scoped", priority="low", inputs={"paths": ["camera-a/*"]}),
             write_task_file(tmp_path, name="off", auto_annotate=False),
             write_task_file(tmp_path, name="everything", priority="high")]
    resources["tasks"] = LabelingTasks(task_files=[str(f) for f in files])
    tasks = resources["tasks"].load()
    assert [t.name for t in tasks] == ["everything", "off", "scoped"]  # high, medium, low
    write_demo_images(inbox / "camera-a", 5, seed=41)
    write_demo_images(inbox / "camera-b", 4, seed=42)
    batch = new_batch(resources, instance)
    materialize_batch([inputs, predictions, annotations], resources, instance, batch, CHECKS)
    store = resources["store"]
    camera_a = set(query(store, "SELECT input_id FROM input_sources WHERE uri LIKE '%/camera-a/%'")["input_id"])
    routed = query(store, "SELECT task, count(*) AS n FROM task_inputs GROUP BY 1")
    assert dict(zip(routed["task"], routed["n"], strict=True)) == {"everything": 9, "scoped": 5}
    assert table_count(resources, "processed_inputs") == 9  # the switched-off task's model ran
    written = query(store, f"SELECT task, input_id FROM ({CURRENT_ANNOTATIONS})")
    assert "off" not in set(written["task"])
    assert set(written[written["task"] == "scoped"]["input_id"]) <= camera_a
    assert len(written[written["task"] == "scoped"]) > 0
    status = collect_status(store, batches=[batch], rules_of=tasks,
                            models=models_by_task(tasks, resources["detector"]))
    # Every configured task is listed, by priority: the switched-off one too, saying so.
    assert [(name, t["priority"], t["switched_off"]) for name, t in status["tasks"].items()] == [
        ("everything", "high", False), ("off", "medium", True), ("scoped", "low", False)]
    assert status["unfinished_batches"] == {}  # neither the scope nor the switch leaves the batch unfinished
    events = table_count(resources, "annotations")
    materialize_batch([annotations], resources, instance, batch, CHECKS)
    assert table_count(resources, "annotations") == events


def test_a_removed_reviewer_s_open_images_go_evenly_to_the_others_and_the_run_log_says_so(
        resources: dict, inbox: Path, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    task_file = write_task_file(tmp_path, reviewers=["alice", "bob", "carol"],
                                thresholds={"upper": 0.95, "lower": 0.3})
    batch = routed_demo_batch(resources, instance, inbox, task_file, 24, seed=51)
    store = resources["store"]
    before = query(store, "SELECT input_id, reviewer FROM review_assignments")
    carol = set(before[before["reviewer"] == "carol"]["input_id"])
    assert len(carol) >= 3
    decided = sorted(carol)[0]  # carol decides one image before she leaves: it stays hers
    desk = ReviewDesk(store, resources["tasks"].load())
    for annotation_id in query(store, f"SELECT annotation_id FROM ({CURRENT_ANNOTATIONS}) WHERE input_id = ? AND "
                                      "status = 'AWAITING_REVIEW'", [decided])["annotation_id"]:
        desk.decide(annotation_id, "accept", "carol")

    write_task_file(tmp_path, reviewers=["alice", "bob"], thresholds={"upper": 0.95, "lower": 0.3})
    result = materialize_batch([annotations], resources, instance, batch)
    after = query(store, "SELECT input_id, reviewer FROM review_assignments")
    mine = dict(zip(after["input_id"], after["reviewer"], strict=True))
    moved = carol - {decided}
    assert mine[decided] == "carol" and {mine[i] for i in moved} <= {"alice", "bob"}
    open_per_reviewer = query(store, f"""
        SELECT r.reviewer, count(DISTINCT r.input_id) AS n FROM review_assignments r JOIN ({CURRENT_ANNOTATIONS}) c
        USING (task, input_id) WHERE c.status = 'AWAITING_REVIEW' GROUP BY 1""")
    counts = dict(zip(open_per_reviewer["reviewer"], open_per_reviewer["n"], strict=True))
    assert set(counts) == {"alice", "bob"} and abs(counts["alice"] - counts["bob"]) <= 1
    taken = {r: n for r in ("alice", "bob") if (n := sum(1 for i in moved if mine[i] == r))}
    logged = [e.user_message for e in instance.all_logs(result.run_id) if "no longer a reviewer" in e.user_message]
    assert logged == [f"task demo-shapes: carol is no longer a reviewer; their {len(moved)} open images went to "
                      + ", ".join(f"{r} ({n})" for r, n in taken.items())]
