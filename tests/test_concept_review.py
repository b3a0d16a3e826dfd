"""Reviewing image-level concepts: `review list` with every undecided item's id, decisions by id from the CLI, the
API's concept actions, and the review page's Classifications pane in Chromium."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from helpers import (
    BROWSER_AVAILABLE,
    autoannotate,
    copy_home,
    launch_chromium,
    open_review_page,
    query,
    review_server,
    write_labels_csv,
)

from apps.demo_scenes import write_concept_scenes
from apps.review_server import create_app
from apps.runner import run_pipeline
from core.annotations import Kind, Status
from core.settings import REPO_ROOT, Settings
from resources import build_resources
from services.datasets import import_labels
from store.history import CURRENT

AWAITING = str(Status.AWAITING_REVIEW)


@pytest.fixture(scope="module")
def concept_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo scenes task with a wide review band (0.2 to 0.999), taught by 20 labelled scenes (CSV import), run
    over 16 new scenes: most concepts wait for a reviewer (built once, copied per test)."""
    home = tmp_path_factory.mktemp("concept-review")
    data = yaml.safe_load((REPO_ROOT / "tasks" / "demo_concepts.yaml").read_text())
    data["classifier"]["backbone"] = str(REPO_ROOT / "models" / "demo_detector.pt")
    data["thresholds"] = {"upper": 0.999, "lower": 0.2}
    task_file = home / "scenes.yaml"
    task_file.write_text(yaml.safe_dump(data))
    settings = Settings(home=home, task_files=(str(task_file),))
    resources = build_resources(settings)
    labelled = write_concept_scenes(tmp_path_factory.mktemp("labelled"), 20, seed=7)
    csv_path = next(iter(labelled)).parent / "labels.csv"
    write_labels_csv(labelled, csv_path)
    import_labels(resources["store"], resources["images"], "concepts-csv", csv_path, data["name"], "carol",
                  50_000_000, data["concepts"])
    write_concept_scenes(home / "inbox", 16, seed=8)
    run_pipeline(settings)
    return home


@pytest.fixture
def home(concept_home: Path, tmp_path: Path) -> Path:
    return copy_home(concept_home, tmp_path / "home", "scenes.yaml")


@pytest.fixture
def resources(home: Path) -> dict:
    return build_resources(Settings(home=home, task_files=(str(home / "scenes.yaml"),)))


def undecided_in_sql(resources: dict, reviewer: str) -> set[str]:
    return set(query(resources["store"], f"""
        SELECT c.annotation_id FROM ({CURRENT}) c JOIN review_assignments r USING (task, input_id)
        WHERE c.status = ? AND r.reviewer = ?""", [AWAITING, reviewer])["annotation_id"])


def latest_event(resources: dict, annotation_id: str) -> tuple:
    return tuple(query(resources["store"], "SELECT status, source, annotator, kind FROM annotations "
                                           "WHERE annotation_id = ? ORDER BY event_at DESC, seq DESC LIMIT 1",
                       [annotation_id]).iloc[0])


def test_review_list_names_every_undecided_concept_and_decisions_take_those_ids(home: Path, resources: dict) -> None:
    listed = json.loads(autoannotate("--json", "review", "list", "--reviewer", "alice", home=home).stdout)
    items = listed["undecided"]
    ids = [item["annotation_id"] for item in items]
    assert set(ids) == undecided_in_sql(resources, "alice") and len(ids) == len(set(ids)) >= 3
    assert {item["kind"] for item in items} == {str(Kind.CONCEPT)}
    assert all(0.2 < item["confidence"] <= 0.999 and item["status"] == AWAITING for item in items)
    assert sum(image["pending"] for image in listed["items"]) == len(items)  # the image table counts the same items
    text = autoannotate("review", "list", "--reviewer", "alice", home=home).stdout
    assert f"undecided items ({len(items)})" in text and all(i in text for i in ids)

    first, second, third = items[:3]
    autoannotate("review", "accept", first["annotation_id"], "--reviewer", "alice", home=home)
    autoannotate("review", "reject", second["annotation_id"], "--reviewer", "alice", home=home)
    other = next(c for c in ("blurry", "crowded", "night") if c != third["concept"])
    relabelled = json.loads(autoannotate("--json", "review", "relabel", third["annotation_id"], "--concept", other,
                                         "--reviewer", "alice", home=home).stdout)
    assert latest_event(resources, first["annotation_id"]) == ("SUCCESS", "review", "alice", "concept")
    assert latest_event(resources, second["annotation_id"]) == ("REJECTED", "review", "alice", "concept")
    assert latest_event(resources, third["annotation_id"]) == ("RETIRED", "review", "alice", "concept")
    assert latest_event(resources, relabelled["annotation_id"]) == ("SUCCESS", "review", "alice", "concept")
    relabel_box = query(resources["store"], "SELECT x1, y1, x2, y2, concept FROM annotation_state "
                                            "WHERE annotation_id = ?", [relabelled["annotation_id"]]).iloc[0]
    assert tuple(relabel_box) == (0.0, 0.0, 1.0, 1.0, other)  # still the whole image
    after = json.loads(autoannotate("--json", "review", "list", "--reviewer", "alice", home=home).stdout)
    assert {i["annotation_id"] for i in after["undecided"]} == set(ids) - {first["annotation_id"],
                                                                         second["annotation_id"],
                                                                         third["annotation_id"]}


@pytest.fixture
def client(resources: dict) -> Callable[[str], TestClient]:
    app = create_app(resources["store"], resources["images"], resources["tasks"].load())
    return lambda reviewer: TestClient(app, headers={"Authorization": f"Bearer {app.state.desk.invite(reviewer)}"})


def image_to_review(store, waiting: int) -> dict:
    """A reviewer's image with at least `waiting` concepts awaiting review and one concept it has not got at all."""
    chosen = query(store, f"""
        SELECT c.task, r.reviewer, c.input_id, count(*) FILTER (WHERE c.status = $awaiting) AS waiting,
               list(c.concept) FILTER (WHERE c.status <> 'RETIRED') AS present
        FROM ({CURRENT}) c JOIN review_assignments r USING (task, input_id)
        GROUP BY ALL HAVING waiting >= $waiting AND len(present) < 3 ORDER BY waiting DESC, c.input_id LIMIT 1""",
        {"awaiting": AWAITING, "waiting": waiting})
    assert len(chosen) == 1, f"the scenes should give an image with {waiting} concepts to review and one missing"
    row = chosen.iloc[0].to_dict()
    row["missed"] = sorted({"blurry", "crowded", "night"} - set(row["present"]))[0]
    row["awaiting"] = query(store, f"SELECT annotation_id, concept, confidence FROM ({CURRENT}) WHERE input_id = ? "
                                   "AND status = ? ORDER BY confidence DESC", [row["input_id"], AWAITING])
    return row


def test_adding_a_missed_concept_and_accepting_only_concepts(client: Callable, resources: dict) -> None:
    item = image_to_review(resources["store"], 1)
    api = client(item["reviewer"])
    url = f"/api/inputs/{item['input_id']}/concepts"
    added = api.post(url, json={"task": item["task"], "concept": item["missed"]})
    assert added.status_code == 200 and added.json()["written"] == 1
    assert api.post(url, json={"task": item["task"], "concept": item["missed"]}).json()["written"] == 0
    assert latest_event(resources, added.json()["annotation_id"]) == ("SUCCESS", "review", item["reviewer"],
                                                                    "concept")
    refused = api.post(url, json={"task": item["task"], "concept": "zebra"})
    assert refused.status_code == 422 and "'zebra' is not an image-level concept" in refused.json()["detail"]

    pending = list(item["awaiting"]["annotation_id"])
    no_box = api.post(f"/api/annotations/{pending[0]}/correct",
                      json={"box": {"x1": 0.1, "y1": 0.1, "x2": 0.5, "y2": 0.5}})
    assert no_box.status_code == 422 and "has no box to correct" in no_box.json()["detail"]
    nothing = api.post(f"/api/inputs/{item['input_id']}/accept-above",
                       json={"task": item["task"], "threshold": 0.0, "kind": "box"}).json()
    assert nothing["accepted"] == 0  # the image has no box
    accepted = api.post(f"/api/inputs/{item['input_id']}/accept-above",
                        json={"task": item["task"], "threshold": 0.0, "kind": "concept"}).json()
    assert sorted(accepted["annotation_ids"]) == sorted(pending)
    again = api.post(url, json={"task": item["task"], "concept": item["awaiting"]["concept"][0]})
    assert again.status_code == 409 and "already has the concept" in again.json()["detail"]


@pytest.mark.skipif(not BROWSER_AVAILABLE, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_classifications_pane_filters_accepts_rejects_adds_and_accepts_all(resources: dict,
                                                                           output_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    store = resources["store"]
    item = image_to_review(store, 2)
    reviewer, input_id, missed, waiting = item["reviewer"], item["input_id"], item["missed"], item["awaiting"]
    with review_server(resources) as (port, app), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = open_review_page(browser, port, app, reviewer, input_id, (1400, 850))
            rows = page.locator("#concepts .concept")
            rows.first.wait_for(timeout=20_000)
            shown = {rows.nth(i).get_attribute("data-id"): rows.nth(i).inner_text() for i in range(rows.count())}
            for row in waiting.itertuples():  # each suggestion with its probability and status
                assert row.concept in shown[row.annotation_id] and f"{row.confidence:.3f}" in shown[row.annotation_id]
                assert AWAITING in shown[row.annotation_id]

            # The probability filter hides suggestions below it.
            lowest = float(waiting["confidence"].min())
            page.fill("#concept-min", f"{lowest + 0.0005:.4f}")
            page.wait_for_function("n => document.querySelectorAll('#concepts .concept').length === n",
                                   arg=len(shown) - 1)
            page.fill("#concept-min", "0")
            page.wait_for_function("n => document.querySelectorAll('#concepts .concept').length === n",
                                   arg=len(shown))

            top, second = waiting["annotation_id"][0], waiting["annotation_id"][1]
            page.locator(f'#concepts .concept[data-id="{top}"] .name').click()
            page.keyboard.press("a")  # accept the picked concept with the keyboard
            wait_for_concept(page, top, "SUCCESS")
            page.locator(f'#concepts .concept[data-id="{second}"] .c-reject').click()  # reject with the mouse
            wait_for_concept(page, second, "REJECTED")
            page.keyboard.press("u")  # undo the rejection: the concept waits again
            wait_for_concept(page, second, AWAITING)

            page.select_option("#add-concept", missed)
            page.click("#add-concept-go")  # a concept the classifier missed
            page.wait_for_function(f"[...document.querySelectorAll('#concepts .concept')].some("
                                   f"r => r.innerText.includes('{missed}') && r.innerText.includes('SUCCESS'))")
            page.screenshot(path=str(output_dir / "classifications-pane.png"))
            page.keyboard.press("Shift+A")  # accept all shown suggestions still waiting
            for annotation_id in waiting["annotation_id"]:
                wait_for_concept(page, annotation_id, "SUCCESS")
        finally:
            browser.close()

    assert latest_event(resources, top) == ("SUCCESS", "review", reviewer, "concept")
    assert [tuple(e) for e in query(store, "SELECT status, source FROM annotations WHERE annotation_id = ? "
                                           "ORDER BY event_at, seq", [second]).itertuples(index=False)] == [
        (AWAITING, "auto"), ("REJECTED", "review"), (AWAITING, "review"), ("SUCCESS", "review")]
    added = query(store, "SELECT status, source, annotator, kind, x1, y1, x2, y2 FROM annotation_state "
                         "WHERE input_id = ? AND concept = ? AND source = 'review'", [input_id, missed])
    assert [tuple(r) for r in added.itertuples(index=False)] == [
        ("SUCCESS", "review", reviewer, "concept", 0.0, 0.0, 1.0, 1.0)]
    assert query(store, f"SELECT count(*) AS n FROM ({CURRENT}) WHERE input_id = ? AND status = ?",
                 [input_id, AWAITING])["n"][0] == 0


def wait_for_concept(page, annotation_id: str, status: str) -> None:
    page.wait_for_function(
        "([id, status]) => { const row = document.querySelector(`#concepts .concept[data-id='${id}']`);"
        " return !!row && row.innerText.includes(status); }", arg=[annotation_id, status], timeout=20_000)


def test_dry_run_and_status_cover_image_level_concepts(home: Path, resources: dict) -> None:
    events = query(resources["store"], "SELECT count(*) AS n FROM annotations")["n"][0]
    files = sorted((home / "inbox").glob("*.jpg"))[:3]
    dry = json.loads(autoannotate("--json", "dry-run", "--task-file", str(home / "scenes.yaml"), *map(str, files),
                                  home=home).stdout)
    stored = query(resources["store"], """
        SELECT regexp_extract(i.uri, '[^/]*$') AS file, p.class_name, p.confidence FROM predictions p
        JOIN inputs i USING (input_id) WHERE p.model_id = ?""", [dry["classifier_id"]])
    assert dry["model_id"] is None  # the task runs no detector
    for image in dry["images"]:
        assert "predictions" not in image and len(image["concepts"]) == 3  # every concept the classifier learned
        for score in image["concepts"]:
            same = stored[(stored.file == Path(image["image"]).name) & (stored.class_name == score["class_name"])]
            assert score["confidence"] == pytest.approx(float(same["confidence"].iloc[0]), abs=1e-4)
            expected = ("accept", "SUCCESS") if score["confidence"] > 0.999 else \
                ("review", AWAITING) if score["confidence"] > 0.2 else ("discard", "not written")
            assert (score["band"], score["status"]) == expected
    assert query(resources["store"], "SELECT count(*) AS n FROM annotations")["n"][0] == events  # nothing written

    status = json.loads(autoannotate("--json", "status", home=home).stdout)
    counts = query(resources["store"], "SELECT concept, status, count(*) AS n FROM annotation_state "
                                       "WHERE kind = 'concept' AND status <> 'RETIRED' GROUP BY ALL")
    assert status["image_concepts_by_concept"] == {
        c: dict(zip(g.status, g.n.astype(int), strict=True)) for c, g in counts.groupby("concept")}
    assert status["annotations_by_concept"] == {}  # no boxes
    assert status["tasks"]["demo-scenes"]["inputs_scored_for_concepts"] == 16
    text = autoannotate("status", home=home).stdout
    assert "image-level concepts (current state):" in text
    assert f"16/{status['inputs']} inputs scored for image-level concepts" in text  # labelled ones are not scored
