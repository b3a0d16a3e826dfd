"""The review desk: every human decision, for the CLI and the review page alike.

Each method checks the request against the task (`core.review_rules`, typed errors) and writes its
events through the annotation history in one transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime

from core.annotations import AnnotationEvent, Kind, Status
from core.geometry import Box
from core.review_rules import (
    Conflict,
    NotFound,
    added_concept_event,
    check_concept,
    check_reviewer,
    decision_events,
    drawn_box_event,
    task_named,
    undo_event,
)
from core.task_config import LabelingTask
from resources.store import DuckDBStore
from store import Session


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ReviewDesk:
    def __init__(self, store: DuckDBStore, tasks: list[LabelingTask]) -> None:
        self.store = store
        self.tasks = tasks

    def task(self, name: str) -> LabelingTask:
        return task_named(self.tasks, name)

    def invite(self, reviewer: str) -> str:
        """A new personal token for `reviewer` (shown once; only its hash is stored); the earlier one stops
        working."""
        if not any(reviewer in task.reviewers for task in self.tasks):
            known = sorted({r for task in self.tasks for r in task.reviewers})
            raise NotFound(f"{reviewer!r} is not a reviewer of any configured task (reviewers: "
                           f"{', '.join(known) or 'none'}).")
        token = secrets.token_urlsafe(24)
        self.store.write(lambda s: s.reviews.issue_token(reviewer, token_sha256(token), utc_now()))
        return token

    def signed_in(self, token: str) -> str | None:
        """The reviewer a token belongs to, if it is current."""
        return self.store.read(lambda s: s.reviews.reviewer_of_token(token_sha256(token)))

    def decide(self, annotation_id: str, decision: str, reviewer: str, concept: str | None = None,
               box: Box | None = None) -> dict:
        """Accept, reject or correct (`decision` "correct" with a new concept and/or box) one annotation."""

        def work(s: Session) -> dict:
            current = s.history.current_one(annotation_id)
            task = self.task(current.task)
            check_reviewer(task, reviewer, s.reviews.assignee(task.name, current.input_id))
            if concept is not None:
                check_concept(task, concept, current.kind)
            now = utc_now()
            events, standing = decision_events(current, decision, reviewer, now, concept, box)
            written = s.history.append(events)
            if decision == "reopen" and s.reviews.assignee(task.name, current.input_id) is None:
                s.reviews.assign(task.name, current.input_id, reviewer, now)  # an auto-accepted image: to my queue
            return {"annotation_id": standing, "status": str(events[-1].status if events else current.status),
                    "written": written}

        return self.store.write(work)

    def draw(self, task: str, input_id: str, concept: str, box: Box, reviewer: str) -> dict:
        """A box the model missed: a new SUCCESS annotation; drawing the same box twice writes it once."""
        chosen = self.task(task)
        return self._add(chosen, drawn_box_event(chosen, input_id, concept, box, reviewer, utc_now()))

    def add_concept(self, task: str, input_id: str, concept: str, reviewer: str) -> dict:
        """An image-level concept the classifier missed: a new SUCCESS annotation of the whole image; refused when
        the image has that concept already."""
        chosen = self.task(task)
        return self._add(chosen, added_concept_event(chosen, input_id, concept, reviewer, utc_now()))

    def _add(self, task: LabelingTask, event: AnnotationEvent) -> dict:
        def work(s: Session) -> dict:
            if not s.inputs.exists(event.input_id):
                raise NotFound(f"No input has the id {event.input_id!r}.")
            check_reviewer(task, event.annotator, s.reviews.assignee(task.name, event.input_id))
            if event.kind == Kind.CONCEPT:
                held = s.history.current(task=task.name, input_id=event.input_id, status=[Status.SUCCESS],
                                         kind=Kind.CONCEPT)
                if event.concept in set(held["concept"]) and not s.history.exists(event.annotation_id):
                    raise Conflict(f"This image already has the concept {event.concept!r}.")
            written = 0 if s.history.exists(event.annotation_id) else s.history.append([event])
            return {"annotation_id": event.annotation_id, "status": str(Status.SUCCESS), "written": written}

        return self.store.write(work)

    def accept_above(self, task: str, input_id: str, threshold: float, reviewer: str,
                     kind: Kind | None = None) -> dict:
        """Accept every annotation of one image still awaiting review whose confidence is at least `threshold`
        (only boxes, or only image-level concepts, when `kind` says so)."""
        chosen = self.task(task)
        now = utc_now()

        def work(s: Session) -> dict:
            check_reviewer(chosen, reviewer, s.reviews.assignee(task, input_id))
            pending = s.history.current(task=task, input_id=input_id, status=[Status.AWAITING_REVIEW],
                                        min_confidence=threshold, kind=kind)["annotation_id"].tolist()
            events = [e for a in pending for e in decision_events(s.history.current_one(a), "accept", reviewer,
                                                                  now)[0]]
            return {"accepted": len(pending), "annotation_ids": pending, "written": s.history.append(events)}

        return self.store.write(work)

    def undo(self, annotation_ids: list[str], reviewer: str) -> dict:
        """Take back the reviewer's latest decision on each annotation (a correction is two: the original and
        the corrected one), in one transaction."""

        def work(s: Session) -> dict:
            events = []
            for annotation_id in annotation_ids:
                current = s.history.current_one(annotation_id)
                task = self.task(current.task)
                check_reviewer(task, reviewer, s.reviews.assignee(task.name, current.input_id))
                events.append(undo_event(current, s.history.status_before_last(annotation_id), reviewer,
                                         utc_now()))
            return {"undone": [{"annotation_id": e.annotation_id, "status": str(e.status)} for e in events],
                    "written": s.history.append(events)}

        return self.store.write(work)

    def queue(self, task: str, reviewer: str, statuses: list[str] | None = None, concepts: list[str] | None = None,
              labelers: list[str] | None = None, combine: str = "and") -> list[dict]:
        chosen = self.task(task)
        return self.store.read(lambda s: s.reviews.queue(chosen, reviewer, statuses, concepts, labelers, combine))

    def undecided(self, task: str, reviewer: str) -> list[dict]:
        chosen = self.task(task)
        return self.store.read(lambda s: s.reviews.undecided(chosen.name, reviewer))

    def progress(self, task: str) -> dict[str, dict[str, int]]:
        return self.store.read(lambda s: s.reviews.progress(task))

    def image(self, task: str, input_id: str, reviewer: str | None = None) -> list[dict]:
        """The task's annotations of one image; with `reviewer`, only for one of the task's reviewers (the page
        reads only what its reviewer reviews; the CLI is the operator's)."""
        chosen = self.task(task)
        if reviewer is not None:
            check_reviewer(chosen, reviewer, assignee=None)

        def work(s: Session) -> list[dict]:
            if not s.inputs.exists(input_id):
                raise NotFound(f"No input has the id {input_id}.")
            return s.reviews.image_annotations(task, input_id)

        return self.store.read(work)

    def can_see(self, reviewer: str, input_id: str) -> bool:
        """Whether the image belongs to a task the reviewer reviews (routed, annotated or queued there)."""
        mine = [task.name for task in self.tasks if reviewer in task.reviewers]
        return bool(mine) and self.store.read(lambda s: s.reviews.input_in_tasks(input_id, mine))
