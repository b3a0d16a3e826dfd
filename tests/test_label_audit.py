"""Label audits: people's labels with known errors (a missed object, a wrong concept, a bad box, a duplicate) on
generated scenes, imported into a real store and judged by the bundled detector; then the top findings sent to
review, and the k-fold auditors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers import (
    BROWSER_AVAILABLE,
    autoannotate,
    copy_home,
    launch_chromium,
    open_review_page,
    query,
    review_server,
    table_count,
    write_task_file,
)

from apps.demo_scenes import generate_scene
from apps.review_desk import ReviewDesk
from core.audit import FindingKind, audit_labels
from core.geometry import Box
from core.settings import Settings
from resources import build_resources
from resources.tasks import detector_for
from services.audit import Candidate, audit_task, choose_auditors, send_findings
from services.datasets import import_labels

SHAPES = ("circle", "square", "triangle")
SEEDS = range(7_200_000, 7_200_012)
MISSED, SWAPPED, SHIFTED, DUPLICATED = 7_200_002, 7_200_003, 7_200_005, 7_200_007
WRITTEN_BY_AUDITS = ("annotations", "annotation_state", "audit_sends", "review_assignments", "predictions",
                     "processed_inputs", "models", "embeddings")


def labelled_scenes(root: Path) -> dict[int, list]:
    """A YOLO dataset of generated scenes labelled from their truth, with one error injected into three of them: a
    box left out, a concept swapped, a box shifted to IoU 0.18 with its object. Returns each scene's labels."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    labels = {}
    for seed in SEEDS:
        image, objects = generate_scene(seed, shapes=SHAPES)
        image.save(root / "images" / "train" / f"img{seed}.png")
        boxes = [[SHAPES.index(o.class_name), o.x1 / image.width, o.y1 / image.height, o.x2 / image.width,
                  o.y2 / image.height] for o in objects]
        if seed == MISSED:
            boxes = boxes[1:]
        if seed == SWAPPED:
            boxes[0][0] = (boxes[0][0] + 1) % len(SHAPES)
        if seed == SHIFTED:
            width = boxes[0][3] - boxes[0][1]
            boxes[0][1] += 0.7 * width
            boxes[0][3] = min(1.0, boxes[0][3] + 0.7 * width)
        (root / "labels" / "train" / f"img{seed}.txt").write_text("".join(
            f"{c} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}\n"
            for c, x1, y1, x2, y2 in boxes))
        labels[seed] = boxes
    (root / "data.yaml").write_text(yaml.safe_dump({"path": str(root), "train": "images/train",
                                                    "val": "images/train", "names": dict(enumerate(SHAPES))}))
    return labels


@pytest.fixture(scope="module")
def audited_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A home whose task `audited` holds alice's imported labels of the scenes, plus one box bob drew again in
    review on top of a label (a duplicate)."""
    home = tmp_path_factory.mktemp("audit") / "home"
    (home / "inbox").mkdir(parents=True)
    task_file = write_task_file(home, name="audited", concepts=list(SHAPES), class_map={},
                                thresholds={"upper": 0.9, "lower": 0.5}, reviewers=["alice", "bob"])
    (home / "tasks.txt").write_text(f"{task_file}\n")
    labels = labelled_scenes(home.parent / "dataset")
    resources = build_resources(Settings(home=home, inbox=home / "inbox", task_files=(str(task_file),)))
    import_labels(resources["store"], resources["images"], "yolo", home.parent / "dataset", "audited", "alice",
                  50_000_000, list(SHAPES))
    duplicated = _label_of(resources, DUPLICATED, labels[DUPLICATED][0])
    ReviewDesk(resources["store"], resources["tasks"].load()).draw(
        "audited", duplicated["input_id"], duplicated["concept"], Box(*labels[DUPLICATED][0][1:]), "bob", lead=True)
    return home, labels


def _label_of(resources: dict, seed: int, box: list) -> dict:
    """The stored label of a scene's box."""
    rows = query(resources["store"], "SELECT c.* FROM annotation_state c JOIN inputs i USING (input_id) WHERE "
                 "i.uri LIKE ? AND abs(c.x1 - ?) < 1e-5 AND abs(c.y1 - ?) < 1e-5 ORDER BY c.event_at",
                 [f"%img{seed}.png", box[1], box[2]])
    return rows.iloc[0].to_dict()


def _input_of(resources: dict, seed: int) -> str:
    return query(resources["store"], "SELECT input_id FROM inputs WHERE uri LIKE ?", [f"%img{seed}.png"]).iloc[0, 0]


def _copy(audited_home: tuple[Path, dict], tmp_path: Path) -> dict:
    home = copy_home(audited_home[0], tmp_path / "home", "audited.yaml")
    return build_resources(Settings(home=home, inbox=home / "inbox", task_files=(str(home / "audited.yaml"),)))


def _audit(resources: dict):
    task = resources["tasks"].load()[0]
    return task, audit_task(resources["store"], resources["images"], resources["versions"], task,
                            detector_for(task, resources["detector"]), resources["training"], log=lambda _: None)


def test_the_audit_finds_each_injected_error_and_nothing_else(audited_home: tuple[Path, dict], tmp_path: Path
                                                              ) -> None:
    resources = _copy(audited_home, tmp_path)
    labels = audited_home[1]
    before = {table: table_count(resources, table) for table in WRITTEN_BY_AUDITS}
    task, report = _audit(resources)

    swapped = _label_of(resources, SWAPPED, labels[SWAPPED][0])
    shifted = _label_of(resources, SHIFTED, labels[SHIFTED][0])
    original = _label_of(resources, DUPLICATED, labels[DUPLICATED][0])
    drawn = query(resources["store"], "SELECT annotation_id FROM annotation_state WHERE annotator = 'bob'").iloc[0, 0]
    found = {(f.kind, f.input_id, f.annotation_id) for f in report.findings}
    assert found == {
        (FindingKind.MISSED_OBJECT, _input_of(resources, MISSED), None),
        (FindingKind.WRONG_CONCEPT, swapped["input_id"], swapped["annotation_id"]),
        (FindingKind.BAD_BOX, shifted["input_id"], shifted["annotation_id"]),
        (FindingKind.DUPLICATE, original["input_id"], drawn),
    }
    by_kind = {f.kind: f for f in report.findings}
    # The missed object is the box left out, found by the model under its own concept.
    left_out = generate_scene(MISSED, shapes=SHAPES)[1][0]
    assert by_kind[FindingKind.MISSED_OBJECT].concept == left_out.class_name
    assert by_kind[FindingKind.WRONG_CONCEPT].predicted_concept == SHAPES[(labels[SWAPPED][0][0] - 1) % 3]
    assert by_kind[FindingKind.DUPLICATE].score == 1.0 and report.findings[0].kind == FindingKind.DUPLICATE
    assert report.counts == {"missed object": 1, "wrong concept": 1, "bad box": 1, "duplicate label": 1}
    assert (report.images, report.labels) == (len(SEEDS), sum(len(b) for b in labels.values()) + 1)
    # Imported images no model ran on are predicted in memory by the task's detector, which never saw them.
    assert [(a["role"], a["audited_images"], a["saw_audited_images"]) for a in report.auditors] == [
        ("the task's current detector", len(SEEDS), 0)]
    # Nothing is written without --send.
    assert {table: table_count(resources, table) for table in WRITTEN_BY_AUDITS} == before
    assert task.name == "audited"


def test_cleanlab_ranks_a_duplicate_label_above_a_clean_one() -> None:
    labels = pd.DataFrame([
        {"annotation_id": "a" * 32, "input_id": "i", "concept": "ball", "x1": 0.1, "y1": 0.1, "x2": 0.3, "y2": 0.3,
         "event_at": pd.Timestamp(1), "audited": True},
        {"annotation_id": "b" * 32, "input_id": "i", "concept": "ball", "x1": 0.1, "y1": 0.1, "x2": 0.3, "y2": 0.3,
         "event_at": pd.Timestamp(2), "audited": True},
        {"annotation_id": "c" * 32, "input_id": "i", "concept": "ball", "x1": 0.6, "y1": 0.6, "x2": 0.8, "y2": 0.8,
         "event_at": pd.Timestamp(3), "audited": True}])
    predictions = pd.DataFrame([
        {"input_id": "i", "concept": "ball", "confidence": 0.95, "x1": 0.1, "y1": 0.1, "x2": 0.3, "y2": 0.3},
        {"input_id": "i", "concept": "ball", "confidence": 0.95, "x1": 0.6, "y1": 0.6, "x2": 0.8, "y2": 0.8}])
    findings = audit_labels(labels, predictions, {"i": (400, 300)}, ["ball"], confident=0.5)
    assert [(f.kind, f.annotation_id, f.score) for f in findings] == [(FindingKind.DUPLICATE, "b" * 32, 1.0)]


def test_each_image_is_audited_by_a_detector_that_did_not_learn_it() -> None:
    current = Candidate("m2", Path("m2.pt"), "the task's current detector", frozenset({"a", "b"}))
    earlier = Candidate("m1", Path("m1.pt"), "trained on T@day1", frozenset({"a"}))
    start = Candidate("m0", Path("m0.pt"), "the weights the loop started from")
    chosen = choose_auditors(["a", "b", "c"], [current, earlier, start])
    assert {i: (c.model_id, seen) for i, (c, seen) in chosen.items()} == {
        "a": ("m0", False), "b": ("m1", False), "c": ("m2", False)}
    # When every detector learned an image, the current one audits it and says so.
    assert choose_auditors(["a"], [current, earlier])["a"] == (current, True)


def test_send_puts_exactly_the_top_n_in_review_with_their_reasons(audited_home: tuple[Path, dict],
                                                                 tmp_path: Path) -> None:
    resources = _copy(audited_home, tmp_path)
    task, report = _audit(resources)
    sent = send_findings(resources["store"], task, report, 2, "carol")
    top = report.findings[:2]
    assert [s["kind"] for s in sent] == [str(f.kind) for f in top]
    stored = query(resources["store"], "SELECT a.kind, c.status, c.annotator, r.reviewer IS NOT NULL AS queued "
                   "FROM audit_sends a JOIN annotation_state c USING (annotation_id) LEFT JOIN review_assignments r "
                   "ON r.task = a.task AND r.input_id = a.input_id ORDER BY a.score DESC, a.kind")
    assert stored.values.tolist() == [[str(f.kind), "AWAITING_REVIEW", "carol", True] for f in top]
    # The review page shows why each is there, as text.
    desk = ReviewDesk(resources["store"], resources["tasks"].load())
    shown = [box for f in top for box in desk.image("audited", f.input_id)
             if box["status"] == "AWAITING_REVIEW"]
    assert sorted(box["suspected"] for box in shown) == sorted(f"suspected: {f.kind}" for f in top)
    # Sent items are in review, so the next audit finds the others; sending again sends those.
    task, again = _audit(resources)
    assert (again.already_sent, [f.kind for f in again.findings]) == (0, [f.kind for f in report.findings[2:]])
    assert [s["kind"] for s in send_findings(resources["store"], task, again, 5, "carol")] == [
        str(f.kind) for f in report.findings[2:]]
    assert table_count(resources, "audit_sends") == 4
    # A label the reviewer kept is not sent again: the audit leaves it out and says so.
    kept = next(f for f in report.findings if f.kind == FindingKind.WRONG_CONCEPT)
    reviewer = desk.store.read(lambda s: s.reviews.assignee("audited", kept.input_id))
    desk.decide(kept.annotation_id, "accept", reviewer)
    task, after = _audit(resources)
    assert (after.already_sent, after.findings) == (1, [])
    assert send_findings(resources["store"], task, after, 5, "carol") == []
    assert table_count(resources, "audit_sends") == 4


def test_audit_command(audited_home: tuple[Path, dict], tmp_path: Path) -> None:
    home = copy_home(audited_home[0], tmp_path / "home", "audited.yaml")
    shown = json.loads(autoannotate("audit", "--task", "audited", "--top", "2", "--json", home=home).stdout)
    assert (shown["shown"], sum(shown["counts"].values()), shown["sent"]) == (2, 4, [])
    text = autoannotate("audit", "--task", "audited", home=home).stdout
    assert "duplicate label" in text and "nothing written" in text
    refused = autoannotate("audit", "--task", "audited", "--send", "1", home=home, check=False)
    assert refused.returncode == 1 and "--user USER" in refused.stderr
    assert autoannotate("audit", "--folds", "1", home=home, check=False).stderr.strip() == (
        "autoannotate: --folds 1 is not a number of folds: give 2 or more (each fold's detector learns from the "
        "others).")


def test_k_fold_auditors_never_saw_the_images_they_judge(audited_home: tuple[Path, dict], tmp_path: Path) -> None:
    resources = _copy(audited_home, tmp_path)
    task = resources["tasks"].load()[0]
    training = resources["training"].model_copy(update={"epochs": 1})
    before = {table: table_count(resources, table) for table in WRITTEN_BY_AUDITS}
    report = audit_task(resources["store"], resources["images"], resources["versions"], task,
                        detector_for(task, resources["detector"]), training, folds=2, log=lambda _: None)
    assert [(a["role"], a["saw_audited_images"]) for a in report.auditors] == [("fold 1 of 2", 0), ("fold 2 of 2", 0)]
    assert sum(a["audited_images"] for a in report.auditors) == len(SEEDS)
    assert all(a["trained_on_images"] == len(SEEDS) - a["audited_images"] for a in report.auditors)
    assert {f.kind for f in report.findings} == set(FindingKind)
    # The fold detectors lived in a scratch folder: nothing is stored, no weights are left behind.
    assert {table: table_count(resources, table) for table in WRITTEN_BY_AUDITS} == before
    assert not list(Path(training.root).glob("*.pt"))


@pytest.mark.skipif(not BROWSER_AVAILABLE, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_review_page_shows_why_an_audit_sent_a_label(audited_home: tuple[Path, dict], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    resources = _copy(audited_home, tmp_path)
    task, report = _audit(resources)
    wrong = next(f for f in report.findings if f.kind == FindingKind.WRONG_CONCEPT)
    report.findings = [wrong]
    assert len(send_findings(resources["store"], task, report, 1, "carol")) == 1
    reviewer = resources["store"].read(lambda s: s.reviews.assignee("audited", wrong.input_id))
    with review_server(resources) as (port, app), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = open_review_page(browser, port, app, reviewer, wrong.input_id, (1280, 720))
            shown = page.locator(f'#boxes .box[data-id="{wrong.annotation_id}"] .suspected')
            expect(shown).to_have_text(f"suspected: wrong concept: {wrong.evidence}")
        finally:
            browser.close()
