"""Routing a task's predictions of a batch into annotations, and handing review items to its reviewers."""

from __future__ import annotations

from datetime import datetime

from core.annotations import Kind
from core.faults import pause_point
from core.results import TaskRouting
from core.routing import check_floor
from core.task_config import LabelingTask
from services.tracking import track_batch
from store import Session


def annotate_task(s: Session, task: LabelingTask, batch: str, model_id: str, now: datetime,
                  kind: Kind = Kind.BOX) -> TaskRouting:
    """Route one task's predictions of the batch (boxes, or a classifier's concept scores), then give new review
    items to reviewers; first, the open items of reviewers removed from the task go to the remaining ones."""
    handed_over = {} if task.consensus else s.reviews.hand_over(task, now)
    skipped = task.skips_batch(batch)
    if skipped:
        return TaskRouting(0, {}, 0, 0, handed_over, skipped)
    if kind == Kind.BOX:
        check_floor(task, batch, s.predictions.batch_floor(batch, model_id))
    if kind == Kind.BOX and task.tracker:
        track_batch(s, batch, model_id, task.tracker, now)
    result = s.history.sync_auto(task, batch, model_id, now, kind)
    # A consensus task gives each image to several reviewers (and its disagreements to adjudicators).
    assigned = s.consensus.assign_new(task, now) if task.consensus else s.reviews.assign_new(task, now)
    pause_point("annotations.write")
    return TaskRouting.of(result, assigned, handed_over)
