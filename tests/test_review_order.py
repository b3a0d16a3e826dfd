"""What reviewers see first: k-center greedy and the doubt/coverage trade on constructed embeddings, then a real run
whose task reviews in `diverse` order (embeddings computed when it routes, the plan, the queue following it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import autoannotate, copy_home, query, write_task_file

from apps.demo_scenes import write_demo_images
from apps.review_desk import ReviewDesk
from apps.runner import run_pipeline
from core.review_order import order_for_review
from core.settings import DEMO_WEIGHTS, Settings
from engines.base import model_ref
from resources import build_resources


def circle(*degrees: float) -> np.ndarray:
    return np.array([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees])


def test_diverse_picks_the_known_k_center_answer() -> None:
    # Candidates on the unit circle, the labelled image at 0 degrees: 180 is farthest (2.0); then 90 (1.414 from
    # both) beats 260 (1.286 from 180); then 260 (1.286) beats 10 and 100, each near a chosen one.
    candidates = circle(10, 90, 100, 180, 260)
    picks = order_for_review("diverse", 3, [0.1] * 5, candidates, labelled=circle(0))
    assert [p.index for p in picks] == [3, 1, 4]
    assert [round(p.distance, 3) for p in picks] == [2.0, 1.414, 1.286]
    # Greedy here is the optimum: no other 3 of the 5 leave a smaller largest distance to the nearest center.
    from itertools import combinations

    def radius(chosen: tuple[int, ...]) -> float:
        centers = np.vstack([circle(0), candidates[list(chosen)]])
        return max(np.linalg.norm(centers - point, axis=1).min() for point in candidates)

    assert radius((3, 1, 4)) == pytest.approx(min(radius(c) for c in combinations(range(5), 3)))
    # With nothing labelled, the first pick is the candidate farthest from the candidates' mean.
    assert order_for_review("diverse", 1, [0.1] * 3, circle(0, 10, 180))[0].index == 2


def test_doubt_and_mixed_orders() -> None:
    vectors = circle(0, 5, 180)
    doubts = [0.01, 0.05, 0.4]
    assert [p.index for p in order_for_review("doubt", 3, doubts)] == [0, 1, 2]
    assert [p.index for p in order_for_review("doubt", 2, [None, 0.3, 0.1])] == [2, 1]
    # mixed: the doubtful 0 first (1 - 0.01/0.4 + its coverage), then the far but certain 2 over the doubtful
    # but covered 1.
    assert [p.index for p in order_for_review("mixed", 3, doubts, vectors)] == [0, 2, 1]
    assert [p.index for p in order_for_review("diverse", 3, doubts, vectors)] == [2, 0, 1]


@pytest.fixture(scope="module")
def diverse_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("diverse-home")
    task = write_task_file(home, thresholds={"upper": 0.99, "lower": 0.3}, review_order="diverse",
                           reviewers=["alice"])
    write_demo_images(home / "inbox", 10, seed=61)
    run_pipeline(Settings(home=home, task_files=(str(task),)))
    return home


def test_a_diverse_task_embeds_its_review_images_and_its_queue_follows_the_plan(diverse_home: Path,
                                                                               tmp_path: Path) -> None:
    home = copy_home(diverse_home, tmp_path / "home", "demo-shapes.yaml")
    resources = build_resources(Settings(home=home, task_files=(str(home / "demo-shapes.yaml"),)))
    store = resources["store"]
    open_images = query(store, "SELECT DISTINCT input_id FROM annotation_state WHERE status = 'AWAITING_REVIEW'")
    assert len(open_images) >= 4
    embedded = query(store, "SELECT input_id FROM embeddings WHERE model_id = ?",
                     [model_ref(DEMO_WEIGHTS).model_id])
    assert set(open_images["input_id"]) <= set(embedded["input_id"])

    plan = json.loads(autoannotate("review", "plan", "--budget", "3", "--json", home=home).stdout)
    assert (plan["order"], plan["budget"], plan["open_images"], plan["not_embedded"]) == (
        "diverse", 3, len(open_images), 0)
    assert len(plan["images"]) == 3 and all(row["distance"] is not None for row in plan["images"])
    assert [row["rank"] for row in plan["images"]] == [1, 2, 3]
    assert plan["images"][0]["why"].endswith("from the nearest image labelled or chosen before it")
    # No image is labelled yet, so each later pick is no farther from the chosen ones than the one before.
    distances = [row["distance"] for row in plan["images"][1:]]
    assert distances == sorted(distances, reverse=True)
    # The reviewer's queue starts with the plan.
    desk = ReviewDesk(store, resources["tasks"].load())
    queue = [row["input_id"] for row in desk.queue("demo-shapes", "alice")]
    assert queue[:3] == [row["input_id"] for row in plan["images"]]
    by_doubt = json.loads(autoannotate("review", "plan", "--budget", "3", "--order", "doubt", "--json",
                                       home=home).stdout)
    doubts = [row["doubt"] for row in by_doubt["images"]]
    assert doubts == sorted(doubts) and all(row["distance"] is None for row in by_doubt["images"])
    refused = autoannotate("review", "plan", "--budget", "0", home=home, check=False)
    assert refused.stderr.strip() == "autoannotate: --budget 0 is not a number of images: give 1 or more."


def test_a_diverse_plan_on_a_task_that_never_embedded_its_images_orders_them_by_doubt(tmp_path: Path) -> None:
    """Before, `review plan --order diverse|mixed` on a task whose review_order is the default (doubt: its images
    never embedded) failed with `autoannotate: distance`; now every image follows by doubt and says why."""
    home = tmp_path / "home"
    task = write_task_file(tmp_path, thresholds={"upper": 0.99, "lower": 0.3}, reviewers=["alice"])
    write_demo_images(home / "inbox", 6, seed=62)
    run_pipeline(Settings(home=home, task_files=(str(task),)))
    for order in ("diverse", "mixed"):
        plan = json.loads(autoannotate("review", "plan", "--budget", "3", "--order", order, "--json",
                                       home=home).stdout)
        assert plan["not_embedded"] == plan["open_images"] > 0
        assert len(plan["images"]) == min(3, plan["open_images"])
        assert all(row["distance"] is None and row["why"].startswith("not embedded yet, so placed by doubt: ")
                   for row in plan["images"])
