"""What a task's reviewers see first (`review_order`): the images' embeddings, computed when the task routes its
batch, and the plan of the next images under a budget (`autoannotate review plan`), which the review queue
follows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.review_order import order_for_review
from core.task_config import LabelingTask
from engines.base import model_ref, pinned_ref
from services.concepts import ConceptModelFiles, embed_inputs
from services.ports import StoredImages, UnitsOfWork
from store import Session


def review_backbone(task: LabelingTask, weights: Path) -> Path:
    """The weights whose embeddings order the task's review: its detector (`weights`, the deployment's, when the
    task names none), or for a task of whole images only, its classifier's."""
    if task.detects:
        own = task.weights_path()
        return pinned_ref(own, task.model.sha256 if task.model else None).path if own else weights
    return task.classifier_path() or weights


def open_images(s: Session, task: LabelingTask, reviewer: str | None = None) -> list[dict[str, Any]]:
    """The images still waiting for a decision in the reviewer's queue (every reviewer's, each image once), with
    their doubt, in the queue's own order."""
    people = [reviewer] if reviewer else task.people
    rows: dict[str, dict[str, Any]] = {}
    for person in people:
        queue = s.consensus.queue(task.name, person) if task.consensus else s.reviews.queue(task, person)
        for row in queue:
            if row["pending"] and row["input_id"] not in rows:
                rows[row["input_id"]] = {**row, "reviewer": person}
    return list(rows.values())


def embed_review_images(store: UnitsOfWork, images: StoredImages, models: ConceptModelFiles, task: LabelingTask,
                        weights: Path, log: Callable[[str], object] = print) -> int:
    """Embeddings of the task's open review images and of the images people labelled, for `diverse` and `mixed`
    orders (each computed once and stored); how many images they cover."""
    if task.review_order == "doubt":
        return 0
    wanted = store.read(lambda s: sorted({r["input_id"] for r in open_images(s, task)} | labelled_images(s, task)))
    embed_inputs(store, images, models, task, wanted, log, backbone_path=review_backbone(task, weights))
    return len(wanted)


def labelled_images(s: Session, task: LabelingTask) -> set[str]:
    """Images people labelled for the task: what is already covered before any pick."""
    return set(s.audits.labelled_inputs(task.name))


def plan_review(s: Session, task: LabelingTask, weights: Path, budget: int, order: str | None = None,
                reviewer: str | None = None) -> dict[str, Any]:
    """The next `budget` images to review in `order` (the task's `review_order` by default), each with why. Images
    not embedded yet (the run embeds them when it routes) cannot be placed by coverage: they follow by doubt."""
    order = order or task.review_order
    candidates = open_images(s, task, reviewer)
    backbone_id = model_ref(review_backbone(task, weights)).model_id
    ids = [r["input_id"] for r in candidates]
    known = s.concepts.embeddings(backbone_id, ids) if order != "doubt" else {}
    placed = [r for r in candidates if r["input_id"] in known] if order != "doubt" else candidates
    unplaced = [r for r in candidates if r["input_id"] not in known] if order != "doubt" else []
    covered = s.concepts.embeddings(backbone_id, sorted(labelled_images(s, task))) if order != "doubt" else {}
    vectors = np.stack([known[r["input_id"]] for r in placed]) if placed and order != "doubt" else None
    labelled = np.stack(list(covered.values())) if covered else None
    picks = order_for_review(order, budget, [r["doubt"] for r in placed], vectors, labelled)
    chosen = [{**placed[p.index], "distance": p.distance} for p in picks]
    chosen += [{**r, "distance": None} for r in sorted(
        unplaced, key=lambda r: (r["doubt"] is None, r["doubt"] or 0.0, r["input_id"]))[:max(0, budget - len(chosen))]]
    for rank, row in enumerate(chosen, 1):
        row["rank"], row["why"] = rank, _why(order, row)
    return {"task": task.name, "order": order, "budget": budget, "open_images": len(candidates),
            "labelled_images": len(covered), "not_embedded": len(unplaced),
            "images": [{k: row[k] for k in ("rank", "input_id", "file", "reviewer", "pending", "doubt", "distance",
                                            "why")} for row in chosen]}


def _why(order: str, row: dict[str, Any]) -> str:
    doubt = ("no box with a confidence" if row["doubt"] is None
             else f"its most doubtful box is {row['doubt']:.3f} from a threshold")
    if row.get("distance") is None:
        return doubt if order == "doubt" else f"not embedded yet, so placed by doubt: {doubt}"
    coverage = f"{row['distance']:.3f} from the nearest image labelled or chosen before it"
    return coverage if order == "diverse" else f"{doubt}; {coverage}"


def ordered_queue(s: Session, task: LabelingTask, weights: Path, rows: list[dict[str, Any]], reviewer: str
                  ) -> list[dict[str, Any]]:
    """A reviewer's queue in the task's `review_order`: open images as the plan places them, finished ones after."""
    if task.review_order == "doubt":
        return rows
    planned = plan_review(s, task, weights, len(rows), reviewer=reviewer)["images"]
    rank = {r["input_id"]: r["rank"] for r in planned}
    return sorted(rows, key=lambda r: (r["input_id"] not in rank, rank.get(r["input_id"], 0)))
