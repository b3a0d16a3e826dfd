"""Consensus review: K reviewers per doubtful image, deciding independently; a quorum resolves an item, the rest
goes to an adjudicator. The rules as plain functions, then scripted reviewers on a real run's store."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

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
    write_task_file,
)

from apps.demo_scenes import write_demo_images
from apps.review_desk import ReviewDesk
from apps.runner import run_pipeline
from core.consensus import (
    ReviewerDecision,
    agreement_figures,
    assign_reviewers_k,
    box_iou,
    cohen_kappa,
    group_drawn,
    resolve_item,
)
from core.geometry import Box
from core.review_rules import Forbidden
from core.settings import Settings
from resources import build_resources

BOX = Box(0.2, 0.2, 0.4, 0.4)


def shifted(box: Box, dx: float) -> Box:
    return Box(box.x1 + dx, box.y1, box.x2 + dx, box.y2)


def width_for_iou(iou: float) -> float:
    """The shift along x of a 0.2-wide box that leaves it `iou` with itself: overlap (w - d) / (w + d)."""
    return 0.2 * (1 - iou) / (1 + iou)


def test_each_image_goes_to_k_distinct_reviewers_spread_evenly() -> None:
    reviewers = ["alice", "bob", "carol", "dana"]
    fresh = assign_reviewers_k({}, [f"i{n:02d}" for n in range(9)], reviewers, 2)
    assert all(len(set(held)) == 2 for held in fresh.values())
    load = Counter(r for held in fresh.values() for r in held)
    assert sorted(load.values()) == [4, 4, 5, 5]
    # Raising K adds reviewers to what is open and never moves an assignment.
    more = assign_reviewers_k(fresh, sorted(fresh), reviewers, 3)
    assert all(len(more[i]) == 1 and more[i][0] not in fresh[i] for i in fresh)
    load.update(r for held in more.values() for r in held)
    assert max(load.values()) - min(load.values()) <= 1


@pytest.mark.parametrize(("decisions", "status", "agreeing"), [
    ([("alice", "accept", "ball", BOX), ("bob", "accept", "ball", BOX)], "SUCCESS", ("alice", "bob")),
    ([("alice", "reject", "ball", BOX), ("bob", "reject", "ball", BOX)], "REJECTED", ("alice", "bob")),
    ([("alice", "accept", "ball", BOX), ("bob", "reject", "ball", BOX)], "AWAITING_CONSENSUS_REVIEW", ()),
    ([("alice", "accept", "ball", BOX), ("bob", "accept", "box", BOX)], "AWAITING_CONSENSUS_REVIEW", ()),
    ([("alice", "accept", "ball", BOX), ("bob", "accept", "ball", shifted(BOX, width_for_iou(0.49)))],
     "AWAITING_CONSENSUS_REVIEW", ()),
    ([("alice", "accept", "ball", BOX), ("bob", "accept", "ball", shifted(BOX, width_for_iou(0.51)))], "SUCCESS",
     ("alice", "bob")),
])
def test_two_reviewers_resolve_an_item(decisions: list, status: str, agreeing: tuple) -> None:
    outcome = resolve_item([ReviewerDecision(*d) for d in decisions], quorum=2, agreement_iou=0.5,
                           original=("ball", BOX))
    assert (outcome.status, outcome.agreeing) == (status, agreeing)


def test_the_quorum_s_box_is_the_mean_of_the_matched_boxes_and_a_quorum_of_three_is_two() -> None:
    other = shifted(BOX, width_for_iou(0.6))
    assert box_iou(BOX, other) == pytest.approx(0.6)
    outcome = resolve_item([ReviewerDecision("alice", "accept", "ball", BOX),
                            ReviewerDecision("bob", "accept", "ball", other),
                            ReviewerDecision("carol", "reject", "ball", BOX)], 2, 0.5, ("ball", BOX))
    assert outcome.status == "SUCCESS" and outcome.agreeing == ("alice", "bob")
    assert tuple(outcome.box) == pytest.approx(((BOX.x1 + other.x1) / 2, 0.2, (BOX.x2 + other.x2) / 2, 0.4))
    assert outcome.mean_iou == pytest.approx(0.6)
    drawn = group_drawn([ReviewerDecision("alice", "draw", "sign", BOX),
                         ReviewerDecision("bob", "draw", "sign", shifted(BOX, 0.01)),
                         ReviewerDecision("bob", "draw", "sign", Box(0.6, 0.6, 0.8, 0.8))], 0.5)
    assert [[d.reviewer for d in group] for group in drawn] == [["alice", "bob"], ["bob"]]


def test_agreement_figures_match_a_hand_computation() -> None:
    """Two reviewers on six resolved items. a: accept, accept, reject, reject, accept, accept (all six as resolved);
    b: accept, reject, reject, accept, accept, accept (four of six). Same decision on 4 of 6: po = 2/3; both accept
    4 of 6: pe = (2/3)^2 + (1/3)^2 = 5/9; kappa = (2/3 - 5/9) / (4/9) = 0.25, se = sqrt(po (1 - po) / (6 (4/9)^2))
    = 0.4330; boxes both accepted (items 1, 5, 6) overlap 0.6, 1.0 and 0.8: mean 0.8. Wilson 95 % of 4/6:
    [0.3000, 0.9032], below a's 1.0, so b is named."""
    decisions_a = ["accept", "accept", "reject", "reject", "accept", "accept"]
    decisions_b = ["accept", "reject", "reject", "accept", "accept", "accept"]
    b_boxes = {0: shifted(BOX, width_for_iou(0.6)), 4: BOX, 5: shifted(BOX, width_for_iou(0.8))}
    decisions = []
    for item, (a, b) in enumerate(zip(decisions_a, decisions_b, strict=True)):
        other = b_boxes.get(item, BOX)
        decisions += [{"annotation_id": f"i{item}", "reviewer": "a", "decision": a, "concept": "ball",
                       **BOX._asdict()},
                      {"annotation_id": f"i{item}", "reviewer": "b", "decision": b, "concept": "ball",
                       **other._asdict()}]
    finals = {f"i{item}": "SUCCESS" if a == "accept" else "REJECTED" for item, a in enumerate(decisions_a)}
    figures = agreement_figures(decisions, finals)
    assert figures["reviewers"]["a"]["agreement"] == 1.0
    b = figures["reviewers"]["b"]
    assert (b["items"], b["agreement"]) == (6, pytest.approx(4 / 6))
    assert (b["low"], b["high"]) == (pytest.approx(0.3000, abs=1e-4), pytest.approx(0.9032, abs=1e-4))
    pair = figures["pairs"]["a/b"]
    assert pair["kappa"] == pytest.approx(0.25)
    assert pair["kappa_low"] == pytest.approx(0.25 - 1.959964 * 0.433013, abs=1e-5) and pair["kappa_high"] == 1.0
    assert (pair["mean_iou"], pair["boxes_both_accepted"]) == (pytest.approx(0.8), 3)
    assert figures["far_below"] == ["b"]
    assert cohen_kappa([True, True], [True, True]) == (None, None, None)  # chance agreement certain: no kappa


@pytest.fixture(scope="module")
def consensus_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo task with a wide review band and consensus: 2 of alice, bob, carol per image, quorum 2, dana
    adjudicates; run over 12 demo scenes."""
    home = tmp_path_factory.mktemp("consensus-home")
    task = write_task_file(home, thresholds={"upper": 0.99, "lower": 0.3},
                           consensus={"reviewers_per_image": 2, "agreement_iou": 0.5, "adjudicators": ["dana"]})
    write_demo_images(home / "inbox", 12, seed=51)
    run_pipeline(Settings(home=home, task_files=(str(task),)))
    return home


@pytest.fixture
def resources(consensus_home: Path, tmp_path: Path) -> dict:
    home = copy_home(consensus_home, tmp_path / "home", "demo-shapes.yaml")
    return build_resources(Settings(home=home, task_files=(str(home / "demo-shapes.yaml"),)))


def rows(resources: dict, sql: str, params: list | None = None):
    return query(resources["store"], sql, params)


def desk_of(resources: dict) -> ReviewDesk:
    return ReviewDesk(resources["store"], resources["tasks"].load())


def items_of(resources: dict, input_id: str) -> list[str]:
    return rows(resources, "SELECT annotation_id FROM annotation_state WHERE input_id = ? AND status = "
                           "'AWAITING_REVIEW' ORDER BY 1", [input_id])["annotation_id"].tolist()


def three_reviewers_per_image(resources: dict) -> None:
    """The task file changed to 3 reviewers per image with a quorum of 2, and open images assigned as the next
    routing would."""
    task_file = Path(resources["tasks"].task_files[0])
    data = yaml.safe_load(task_file.read_text())
    data["consensus"].update(reviewers_per_image=3, quorum=2)
    task_file.write_text(yaml.safe_dump(data))
    task = resources["tasks"].load()[0]
    resources["store"].write(lambda s: s.consensus.assign_new(task, datetime.now(UTC).replace(tzinfo=None)))


def test_routing_gives_each_review_image_two_reviewers_and_none_a_single_queue(resources: dict) -> None:
    held = rows(resources, "SELECT input_id, list(reviewer ORDER BY reviewer) AS r, count(*) AS n FROM "
                           "consensus_assignments WHERE role = 'review' GROUP BY 1")
    waiting = rows(resources, "SELECT DISTINCT input_id FROM annotation_state WHERE status = 'AWAITING_REVIEW'")
    assert set(held["input_id"]) == set(waiting["input_id"]) and len(held) >= 6
    assert set(held["n"]) == {2}
    load = Counter(r for reviewers in held["r"] for r in reviewers)
    assert set(load) == {"alice", "bob", "carol"} and max(load.values()) - min(load.values()) <= 1
    assert rows(resources, "SELECT count(*) AS n FROM review_assignments")["n"][0] == 0


def test_scripted_reviewers_agree_disagree_and_the_adjudicator_decides(resources: dict) -> None:
    desk = desk_of(resources)
    images = rows(resources, "SELECT input_id, list(reviewer ORDER BY reviewer) AS r FROM consensus_assignments "
                             "GROUP BY 1 ORDER BY 1")
    (agree, pair_a), (split, pair_b) = images.iloc[0], images.iloc[1]
    first, second = pair_a
    for annotation_id in items_of(resources, agree):
        assert desk.decide(annotation_id, "accept", first)["written"] == 0  # the other has not decided yet
    # Each sees only their own decisions: the second reviewer's page still shows every item awaiting review.
    shown = {a["annotation_id"]: a["status"] for a in desk.image("demo-shapes", agree, reviewer=second)}
    assert {shown[a] for a in items_of(resources, agree)} == {"AWAITING_REVIEW"}
    assert {a["status"] for a in desk.image("demo-shapes", agree, reviewer=first)
            if a["annotation_id"] in items_of(resources, agree)} == {"SUCCESS"}
    outsider = next(r for r in ("alice", "bob", "carol") if r not in pair_a)
    with pytest.raises(Forbidden, match=r"is not in .*'s queue"):
        desk.decide(items_of(resources, agree)[0], "accept", outsider)
    opened = items_of(resources, agree)
    for annotation_id in opened:
        desk.decide(annotation_id, "accept", second)
    state = rows(resources, "SELECT status, annotator FROM annotation_state WHERE annotation_id IN (SELECT "
                            "unnest(?))", [opened])
    assert set(state.itertuples(index=False, name=None)) == {("SUCCESS", "consensus")}
    outcomes = rows(resources, "SELECT status, agreeing, reason FROM consensus_outcomes WHERE input_id = ?", [agree])
    assert len(outcomes) == len(opened) and set(outcomes["status"]) == {"SUCCESS"}
    assert all(sorted(a) == sorted(pair_a) for a in outcomes["agreeing"])

    # A split decision goes to the adjudicator, whose word is final.
    b1, b2 = pair_b
    contested = items_of(resources, split)
    for annotation_id in contested:
        desk.decide(annotation_id, "accept", b1)
        desk.decide(annotation_id, "reject", b2)
    assert set(rows(resources, "SELECT status FROM annotation_state WHERE annotation_id IN (SELECT unnest(?))",
                    [contested])["status"]) == {"AWAITING_CONSENSUS_REVIEW"}
    assert rows(resources, "SELECT reviewer FROM consensus_assignments WHERE input_id = ? AND role = 'adjudicate'",
                [split])["reviewer"].tolist() == ["dana"]
    assert sorted(i["annotation_id"] for i in desk.undecided("demo-shapes", "dana")) == contested
    listed = json.loads(autoannotate("review", "list", "--reviewer", "dana", "--json",
                                     home=Path(resources["store"].path).parent).stdout)
    assert sorted(i["annotation_id"] for i in listed["undecided"]) == contested
    assert [i["input_id"] for i in listed["items"]] == [split]
    with pytest.raises(Forbidden, match="awaits consensus review by its adjudicator"):
        desk.decide(contested[0], "accept", b1)
    now = datetime.now(UTC).replace(tzinfo=None)
    before = resources["store"].read(lambda s: s.versions.manifest("demo-shapes", now))
    assert all(a not in before.text for a in contested)  # awaiting consensus: in no version
    assert split not in [line.split("\t")[0] for line in before.text.splitlines() if "negative" in line]
    desk.decide(contested[0], "accept", "dana")
    assert rows(resources, "SELECT status, annotator FROM annotation_state WHERE annotation_id = ?",
                [contested[0]]).values.tolist() == [["SUCCESS", "dana"]]
    quality = json.loads(autoannotate("quality", "--json", home=Path(resources["store"].path).parent).stdout)
    agreement = quality["reviewer_agreement"]
    assert set(agreement["reviewers"]) == {*pair_a, *pair_b}
    # Resolved: every item of the first image (both accepted) and the adjudicated item (b1 accepted, as dana did;
    # b2 rejected it); the other contested items still wait for dana and count for no one.
    for reviewer, figures in agreement["reviewers"].items():
        items = len(opened) * (reviewer in pair_a) + (reviewer in pair_b)
        agreed = len(opened) * (reviewer in pair_a) + (reviewer == b1)
        assert (figures["items"], figures["agreement"]) == (items, pytest.approx(agreed / items)), reviewer
    # The label_quality asset records the same figures.
    import dagster as dg

    from assets.quality import label_quality

    result = dg.materialize([label_quality], resources={"store": resources["store"], "tasks": resources["tasks"]})
    recorded = result.asset_materializations_for_node("label_quality")[0].metadata
    assert recorded["demo-shapes: reviewer agreement"].value == agreement
    progress = desk.progress("demo-shapes")
    assert progress["dana (adjudicator)"] == {"assigned": 1, "waiting": int(len(contested) > 1),
                                              "reviewed": int(len(contested) == 1)}


def test_boxes_just_under_and_just_over_the_agreement_iou_and_a_different_concept(resources: dict) -> None:
    desk = desk_of(resources)
    images = rows(resources, "SELECT input_id, list(reviewer ORDER BY reviewer) AS r FROM consensus_assignments "
                             "GROUP BY 1 ORDER BY 1")
    for (input_id, (one, two)), case in zip(images.itertuples(index=False), ("under", "over", "concept"),
                                            strict=False):
        item = items_of(resources, input_id)[0]
        current = rows(resources, "SELECT concept, x1, y1, x2, y2 FROM annotation_state WHERE annotation_id = ?",
                       [item]).iloc[0]
        box = Box(current.x1, current.y1, current.x2, current.y2)
        width = box.x2 - box.x1
        shift = width * (1 - (0.49 if case == "under" else 0.51)) / (1 + (0.49 if case == "under" else 0.51))
        moved = Box(box.x1 + shift, box.y1, box.x2 + shift, box.y2) if case != "concept" else box
        for annotation_id in items_of(resources, input_id):
            if annotation_id != item:
                desk.decide(annotation_id, "accept", one)
                desk.decide(annotation_id, "accept", two)
        desk.decide(item, "accept", one)
        relabel = "box" if current.concept != "box" else "ball"
        desk.decide(item, "correct", two, concept=relabel if case == "concept" else None,
                    box=None if case == "concept" else moved)
        final = rows(resources, "SELECT status, x1, x2 FROM annotation_state WHERE task = 'demo-shapes' AND "
                                "input_id = ? AND annotator = 'consensus' AND status <> 'RETIRED' AND concept = ?",
                     [input_id, current.concept])
        if case == "over":
            corrected = final[(final["x1"] - (box.x1 + shift / 2)).abs() < 1e-9]
            assert len(corrected) == 1 and corrected["x2"].iloc[0] == pytest.approx(box.x2 + shift / 2)
        state = rows(resources, "SELECT status FROM annotation_state WHERE annotation_id = ?", [item])["status"][0]
        assert state == ("RETIRED" if case == "over" else "AWAITING_CONSENSUS_REVIEW"), case
    reasons = rows(resources, "SELECT reason FROM consensus_outcomes WHERE status = 'AWAITING_CONSENSUS_REVIEW' "
                              "ORDER BY resolved_at")["reason"].tolist()
    assert reasons[0].endswith("with boxes overlapping less than 0.5")
    assert reasons[1].startswith("they accepted it as different concepts")


def test_raising_k_keeps_the_decisions_made_and_gives_open_images_a_third_reviewer(resources: dict) -> None:
    desk = desk_of(resources)
    image, (one, _two) = rows(resources, "SELECT input_id, list(reviewer ORDER BY reviewer) AS r FROM "
                                         "consensus_assignments GROUP BY 1 ORDER BY 1").iloc[0]
    for annotation_id in items_of(resources, image):
        desk.decide(annotation_id, "accept", one)
    three_reviewers_per_image(resources)
    held = rows(resources, "SELECT input_id, count(*) AS n FROM consensus_assignments WHERE role = 'review' GROUP BY 1")
    assert set(held["n"]) == {3}
    kept = rows(resources, "SELECT count(*) AS n FROM consensus_decisions WHERE input_id = ? AND reviewer = ?",
                [image, one])["n"][0]
    assert kept == len(items_of(resources, image))


@pytest.mark.skipif(not BROWSER_AVAILABLE, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_two_reviewers_decide_the_same_image_independently_in_chromium(resources: dict) -> None:
    from playwright.sync_api import expect, sync_playwright

    image, (one, two) = rows(resources, "SELECT input_id, list(reviewer ORDER BY reviewer) AS r FROM "
                                        "consensus_assignments GROUP BY 1 ORDER BY 1").iloc[0]
    item = items_of(resources, image)[0]
    with review_server(resources) as (port, app), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            first = open_review_page(browser, port, app, one, image, (1280, 720))
            second = open_review_page(browser, port, app, two, image, (1920, 1080))
            first.locator(f'#boxes .box[data-id="{item}"]').click()
            first.keyboard.press("a")
            expect(first.locator(f'#boxes .box[data-id="{item}"] .SUCCESS')).to_have_count(1)
            # The other reviewer's page, loaded again, still shows the item waiting for their own decision.
            second.reload(wait_until="networkidle")
            second.locator(f'#queue-items div[data-input="{image}"]').click()
            expect(second.locator(f'#boxes .box[data-id="{item}"] .AWAITING_REVIEW')).to_have_count(1)
            assert rows(resources, "SELECT status FROM annotation_state WHERE annotation_id = ?",
                        [item])["status"][0] == "AWAITING_REVIEW"
            second.locator(f'#boxes .box[data-id="{item}"]').click()
            second.keyboard.press("r")
            expect(second.locator(f'#boxes .box[data-id="{item}"] .REJECTED')).to_have_count(1)
        finally:
            browser.close()
    decided = rows(resources, "SELECT reviewer, decision FROM consensus_decisions WHERE annotation_id = ? ORDER BY 1",
                   [item])
    assert decided.values.tolist() == [[one, "accept"], [two, "reject"]]


def test_three_reviewers_with_a_quorum_of_two(resources: dict) -> None:
    """K = 3, quorum 2: two accepting with matching boxes outvote one rejecting; two rejecting reject; one each way
    and one relabel go to the adjudicator."""
    three_reviewers_per_image(resources)
    desk = desk_of(resources)
    images = rows(resources, "SELECT input_id, list(reviewer ORDER BY reviewer) AS r FROM consensus_assignments "
                             "WHERE role = 'review' GROUP BY 1 ORDER BY 1")
    assert all(sorted(r) == ["alice", "bob", "carol"] for r in images["r"])
    image = max(images["input_id"], key=lambda i: (len(items_of(resources, i)), i))
    items = items_of(resources, image)
    assert len(items) >= 3
    scripts = {items[0]: ("accept", "accept", "reject"), items[1]: ("reject", "reject", "accept"),
               items[2]: ("accept", "reject", "relabel")}
    for item in items:
        for reviewer, decision in zip(("alice", "bob", "carol"), scripts.get(item, ("accept",) * 3), strict=True):
            if decision == "relabel":
                concept = rows(resources, "SELECT concept FROM annotation_state WHERE annotation_id = ?",
                               [item])["concept"][0]
                desk.decide(item, "correct", reviewer, concept="box" if concept != "box" else "ball")
            else:
                desk.decide(item, decision, reviewer)
    outcomes = rows(resources, "SELECT annotation_id, status, agreeing FROM consensus_outcomes WHERE input_id = ?",
                    [image]).set_index("annotation_id")
    assert outcomes.loc[items[0], "status"] == "SUCCESS" and list(outcomes.loc[items[0], "agreeing"]) == [
        "alice", "bob"]
    assert outcomes.loc[items[1], "status"] == "REJECTED" and list(outcomes.loc[items[1], "agreeing"]) == [
        "alice", "bob"]
    assert outcomes.loc[items[2], "status"] == "AWAITING_CONSENSUS_REVIEW"
    final = rows(resources, "SELECT annotation_id, status FROM annotation_state WHERE annotation_id IN (SELECT "
                            "unnest(?))", [items[:3]]).set_index("annotation_id")["status"]
    assert final.to_dict() == {items[0]: "SUCCESS", items[1]: "REJECTED", items[2]: "AWAITING_CONSENSUS_REVIEW"}
