"""AI-assisted review: labels imported as suggestions, the probability slider, number keys, per-concept counts,
sending an accepted box back to review, and relabelling that keeps the original concept (in the page and in the
version's manifest)."""

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from helpers import (
    BROWSER_AVAILABLE,
    launch_chromium,
    open_review_page,
    query,
    review_server,
    suggestions_dataset,
    write_task_file,
)

from assets.versions import dataset_versions
from core.results import ImportSummary
from resources.tasks import LabelingTasks
from services.datasets import import_labels
from store.history import CURRENT


def import_suggestions(resources: dict, root: Path) -> ImportSummary:
    task = resources["tasks"].load()[0]
    return import_labels(resources["store"], resources["images"], "yolo", root, task.name, "model-v2", 50_000_000,
                         task.concepts, suggestions_for=task)


def test_labels_imported_as_suggestions_wait_in_the_reviewers_queues_with_their_confidences(
        resources: dict, tmp_path: Path) -> None:
    truth = suggestions_dataset(tmp_path / "suggested", 9)
    result = import_suggestions(resources, tmp_path / "suggested")
    expected = sum(len(pairs) for pairs in truth.values())
    assert (result.status, result.annotations_written, result.newly_assigned) == (
        "AWAITING_REVIEW", expected, 9)
    rows = query(resources["store"], f"SELECT c.concept, c.confidence, c.status, c.source, c.annotator, "
                                     f"s.uri FROM ({CURRENT}) c JOIN inputs s USING (input_id)")
    assert set(zip(rows["status"], rows["source"], rows["annotator"], strict=True)) == {
        ("AWAITING_REVIEW", "import", "model-v2")}
    stored = Counter((Path(u).stem, c, round(p, 2)) for u, c, p in zip(rows["uri"], rows["concept"],
                                                                          rows["confidence"], strict=True))
    assert stored == Counter((name, c, p) for name, pairs in truth.items() for c, p in pairs)
    queues = Counter(query(resources["store"], "SELECT reviewer FROM review_assignments")["reviewer"])
    assert queues == {"alice": 3, "bob": 3, "carol": 3}  # every image in a queue, evenly
    assert import_suggestions(resources, tmp_path / "suggested").annotations_written == 0

    lonely = write_task_file(tmp_path, name="no-reviewers", reviewers=[],
                             thresholds={"upper": 0.5, "lower": 0.5})
    resources["tasks"] = LabelingTasks(task_files=[str(lonely)])
    with pytest.raises(ValueError) as refused:
        import_suggestions(resources, tmp_path / "suggested")
    assert str(refused.value) == ("Task 'no-reviewers' has no reviewers to review suggestions: add `reviewers` to "
                                  "its file, or import the labels as they are (without --as suggestions).")


def rows_shown(page) -> list[tuple[str, str]]:
    """(annotation id, text) of every box row the page lists, in its order."""
    rows = page.locator("#boxes .box")
    return [(rows.nth(i).get_attribute("data-id"), rows.nth(i).inner_text()) for i in range(rows.count())]


def wait_until(page, script: str, arg: object = None) -> None:
    page.wait_for_function(script, arg=arg, timeout=20_000)


@pytest.mark.skipif(not BROWSER_AVAILABLE, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_slider_number_keys_counts_send_back_and_the_original_concept(
        resources: dict, instance: dg.DagsterInstance, tmp_path: Path, output_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    truth = suggestions_dataset(tmp_path / "suggested", 6)
    import_suggestions(resources, tmp_path / "suggested")
    store = resources["store"]
    name = max(sorted(truth), key=lambda n: len(truth[n]))
    pairs = truth[name]
    assert len(pairs) >= 3
    image = query(store, f"SELECT c.input_id, r.reviewer FROM ({CURRENT}) c JOIN inputs i USING (input_id) "
                         "JOIN review_assignments r USING (task, input_id) WHERE i.uri LIKE ? LIMIT 1",
                  [f"%{name}.png"]).iloc[0]
    boxes = query(store, f"SELECT annotation_id, concept, confidence FROM ({CURRENT}) WHERE input_id = ? "
                         "ORDER BY confidence DESC", [image["input_id"]])
    with review_server(resources) as (port, app), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = open_review_page(browser, port, app, image["reviewer"], image["input_id"])
            wait_until(page, "n => document.querySelectorAll('#boxes .box').length === n", len(boxes))
            # Suggestions most probable first, and the image's boxes counted per concept.
            assert [row_id for row_id, _ in rows_shown(page)] == list(boxes["annotation_id"])
            counts = Counter(boxes["concept"])
            assert page.locator("#box-counts").inner_text() == " · ".join(f"{c} {counts[c]}" for c in sorted(counts))

            # The slider hides the suggestions below it, in the list, the counts and on the canvas.
            cut = 0.75
            page.locator("#box-min").fill(str(cut))
            above = boxes[boxes["confidence"] >= cut]
            wait_until(page, "n => document.querySelectorAll('#boxes .box').length === n", len(above))
            assert [row_id for row_id, _ in rows_shown(page)] == list(above["annotation_id"])
            kept = Counter(above["concept"])
            hidden = len(boxes) - len(above)
            assert page.locator("#box-counts").inner_text() == (
                " · ".join(f"{c} {kept[c]}" for c in sorted(kept))
                + f" ({hidden} suggestion{'s' if hidden > 1 else ''} below 0.75 hidden)")
            page.screenshot(path=str(output_dir / "review-slider.png"))

            # Number key 2: the selected box becomes the task's second concept (box); the original stays visible.
            target = above[above["concept"] != "box"].iloc[0]
            page.locator(f'#boxes .box[data-id="{target["annotation_id"]}"]').click()
            page.keyboard.press("2")
            wait_until(page, "id => !document.querySelector(`#boxes .box[data-id='${id}']`)",
                       target["annotation_id"])
            # A relabel retires the old annotation and writes the corrected one: read each, in no chance order.
            assert query(store, f"SELECT status FROM ({CURRENT}) WHERE annotation_id = ?",
                         [target["annotation_id"]])["status"].tolist() == ["RETIRED"]
            corrected = query(store, f"SELECT annotation_id, concept, original_concept, status FROM ({CURRENT}) "
                                     "WHERE input_id = ? AND source = 'review' AND annotation_id <> ?",
                              [image["input_id"], target["annotation_id"]]).iloc[0]
            assert (corrected["concept"], corrected["original_concept"], corrected["status"]) == (
                "box", target["concept"], "SUCCESS")
            row = page.locator(f'#boxes .box[data-id="{corrected["annotation_id"]}"]')
            assert f"was {target['concept']}" in row.inner_text()

            # b sends the accepted box back to review; a accepts it again.
            row.click()
            page.keyboard.press("b")
            wait_until(page, "id => (document.querySelector(`#boxes .box[data-id='${id}']`) || {}).innerText"
                             "?.includes('AWAITING_REVIEW')", corrected["annotation_id"])
            page.locator(f'#boxes .box[data-id="{corrected["annotation_id"]}"]').click()
            page.keyboard.press("a")
            wait_until(page, "id => (document.querySelector(`#boxes .box[data-id='${id}']`) || {}).innerText"
                             "?.includes('SUCCESS')", corrected["annotation_id"])
        finally:
            browser.close()

    events = query(store, "SELECT status, source, annotator FROM annotations WHERE annotation_id = ? "
                          "ORDER BY event_at, seq", [corrected["annotation_id"]])
    assert list(events.itertuples(index=False, name=None)) == [
        ("SUCCESS", "review", image["reviewer"]), ("AWAITING_REVIEW", "review", image["reviewer"]),
        ("SUCCESS", "review", image["reviewer"])]
    day = datetime.now(UTC).date().isoformat()
    time.sleep(0.01)
    assert dg.materialize([dataset_versions], partition_key=day, instance=instance, resources=resources).success
    lines = [line.split("\t") for line in resources["versions"].read_manifest("demo-shapes", day).splitlines()]
    assert lines[0][-1] == "original_concept"
    assert [(fields[1], fields[-1]) for fields in lines[1:]] == [("box", target["concept"])]
