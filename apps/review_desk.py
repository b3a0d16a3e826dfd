"""The review desk: every human decision, for the CLI and the review page alike.

Each method checks the request against the task (`core.review_rules`, typed errors) and writes its
events through the annotation history in one transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from pathlib import Path

from core.annotations import AnnotationEvent, Kind, Role, Status
from core.geometry import Box
from core.review_rules import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    added_concept_event,
    check_concept,
    check_reviewer,
    decision_events,
    drawn_box_event,
    removal_event,
    task_named,
    undo_event,
)
from core.settings import DEMO_WEIGHTS
from core.task_config import LabelingTask
from resources.store import DuckDBStore
from services.consensus import record_decision, record_drawing
from services.review_order import ordered_queue
from store import Session


def token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class ReviewDesk:
    def __init__(self, store: DuckDBStore, tasks: list[LabelingTask], weights: str = str(DEMO_WEIGHTS)) -> None:
        self.store = store
        self.tasks = tasks
        self.weights = Path(weights)  # the detector tasks without their own use: its embeddings order reviews

    def task(self, name: str) -> LabelingTask:
        return task_named(self.tasks, name)

    def invite(self, reviewer: str, role: Role = Role.REVIEWER) -> str:
        """A new personal token for `reviewer` (shown once; only its hash is stored); the earlier one stops
        working. A lead may be anyone; a reviewer is one of a configured task's reviewers."""
        if role == Role.LEAD:
            if not reviewer.strip() or reviewer != reviewer.strip() or not reviewer.isprintable():
                raise Invalid(f"{reviewer!r} is not a name: give a lead's name without surrounding spaces.")
        elif not any(reviewer in task.people for task in self.tasks):
            known = sorted({r for task in self.tasks for r in task.reviewers})
            raise NotFound(f"{reviewer!r} is not a reviewer of any configured task (reviewers: "
                           f"{', '.join(known) or 'none'}).")
        token = secrets.token_urlsafe(24)
        self.store.write(lambda s: s.reviews.issue_token(reviewer, token_sha256(token), utc_now(), role))
        return token

    def signed_in(self, token: str) -> tuple[str, Role] | None:
        """The person a token belongs to and their role, if it is current."""
        return self.store.read(lambda s: s.reviews.reviewer_of_token(token_sha256(token)))

    def decide(self, annotation_id: str, decision: str, reviewer: str, concept: str | None = None,
               box: Box | None = None, lead: bool = False, polygon: list[float] | None = None) -> dict:
        """Accept, reject or correct (`decision` "correct" with a new concept, box and/or polygon) one
        annotation."""

        def work(s: Session) -> dict:
            current = s.history.current_one(annotation_id)
            task = self.task(current.task)
            now = utc_now()
            if concept is not None:
                check_concept(task, concept, current.kind)
            if task.consensus is not None and not lead:
                if current.status == Status.AWAITING_CONSENSUS_REVIEW:  # the adjudicator's decision is final
                    if reviewer not in s.consensus.holders(task.name, current.input_id, "adjudicate"):
                        raise Forbidden(f"Annotation {annotation_id} awaits consensus review by its adjudicator; "
                                        f"{reviewer} is not the adjudicator of this image.")
                elif decision != "reopen":
                    return record_decision(s, task, current, decision, reviewer, now, concept, box)
            else:
                check_reviewer(task, reviewer, s.reviews.assignee(task.name, current.input_id), lead)
            events, standing = decision_events(current, decision, reviewer, now, concept, box, polygon)
            written = s.history.append(events)
            if decision == "reopen" and s.reviews.assignee(task.name, current.input_id) is None:
                s.reviews.assign(task.name, current.input_id, reviewer, now)  # an auto-accepted image: to my queue
            return {"annotation_id": standing, "status": str(events[-1].status if events else current.status),
                    "written": written}

        return self.store.write(work)

    def draw(self, task: str, input_id: str, concept: str, box: Box, reviewer: str, lead: bool = False,
             polygon: list[float] | None = None) -> dict:
        """A box (or polygon) the model missed: a new SUCCESS annotation; drawing the same one twice writes it
        once."""
        chosen = self.task(task)
        return self._add(chosen, drawn_box_event(chosen, input_id, concept, box, reviewer, utc_now(), polygon), lead)

    def add_concept(self, task: str, input_id: str, concept: str, reviewer: str, lead: bool = False) -> dict:
        """An image-level concept the classifier missed: a new SUCCESS annotation of the whole image; refused when
        the image has that concept already."""
        chosen = self.task(task)
        return self._add(chosen, added_concept_event(chosen, input_id, concept, reviewer, utc_now()), lead)

    def _add(self, task: LabelingTask, event: AnnotationEvent, lead: bool) -> dict:
        def work(s: Session) -> dict:
            if not s.inputs.exists(event.input_id):
                raise NotFound(f"No input has the id {event.input_id!r}.")
            if task.consensus is not None and not lead:  # a reviewer's proposal, matched with the others'
                return record_drawing(s, task, event, utc_now())
            check_reviewer(task, event.annotator, s.reviews.assignee(task.name, event.input_id), lead)
            if event.kind == Kind.CONCEPT:
                held = s.history.current(task=task.name, input_id=event.input_id, status=[Status.SUCCESS],
                                         kind=Kind.CONCEPT)
                if event.concept in set(held["concept"]) and not s.history.exists(event.annotation_id):
                    raise Conflict(f"This image already has the concept {event.concept!r}.")
            written = 0 if s.history.exists(event.annotation_id) else s.history.append([event])
            return {"annotation_id": event.annotation_id, "status": str(Status.SUCCESS), "written": written}

        return self.store.write(work)

    def accept_above(self, task: str, input_id: str, threshold: float, reviewer: str,
                     kind: Kind | None = None, lead: bool = False) -> dict:
        """Accept every annotation of one image still awaiting review whose confidence is at least `threshold`
        (only boxes, or only image-level concepts, when `kind` says so)."""
        chosen = self.task(task)
        now = utc_now()

        def work(s: Session) -> dict:
            pending = s.history.current(task=task, input_id=input_id, status=[Status.AWAITING_REVIEW],
                                        min_confidence=threshold, kind=kind)["annotation_id"].tolist()
            if chosen.consensus is not None and not lead:
                mine = s.consensus.own_decisions(task, input_id, reviewer)
                undecided = [a for a in pending if a not in mine]
                written = sum(record_decision(s, chosen, s.history.current_one(a), "accept", reviewer, now)["written"]
                              for a in undecided)
                return {"accepted": len(undecided), "annotation_ids": undecided, "written": written}
            check_reviewer(chosen, reviewer, s.reviews.assignee(task, input_id), lead)
            events = [e for a in pending for e in decision_events(s.history.current_one(a), "accept", reviewer,
                                                                  now)[0]]
            return {"accepted": len(pending), "annotation_ids": pending, "written": s.history.append(events)}

        return self.store.write(work)

    def decide_track(self, task: str, video_id: str, track_id: int, decision: str, reviewer: str,
                     concept: str | None = None, lead: bool = False) -> dict:
        """One decision on a whole track (accept, reject, or "correct" to `concept`): one event per frame
        annotation of it, as if each were decided on its own. The reviewer holds one of the track's frames; the
        track's other frames follow, whoever's queue holds them."""
        chosen = self.task(task)
        if chosen.tracker is None:
            raise Invalid(f"Task {task!r} has no tracker: its objects are decided one frame at a time.")
        if concept is not None:
            check_concept(chosen, concept)
        now = utc_now()

        def work(s: Session) -> dict:
            frames = s.tracks.annotations_of_track(chosen.name, video_id, track_id, chosen.tracker)
            if not frames:
                raise NotFound(f"Track {track_id} of video {video_id[:12]} has no live annotation in task {task!r}.")
            currents = s.history.current_many(frames)
            holders = {s.reviews.assignee(chosen.name, c.input_id) for c in currents}
            if not lead and reviewer not in holders and not chosen.allow_takeover:
                check_reviewer(chosen, reviewer, next(iter(holders - {None}), None))
            events = [e for c in currents if not (decision == "correct" and c.concept == concept)
                      for e in decision_events(c, decision, reviewer, now, concept)[0]]
            standing = {e.annotation_id for e in events if e.status != Status.RETIRED} if decision == "correct" \
                else set(frames)
            return {"track_id": track_id, "frames": len(frames), "written": s.history.append(events),
                    "annotation_ids": sorted(standing | (set(frames) if decision == "correct" else set()))}

        return self.store.write(work)

    def track_frames(self, task: str, video_id: str, track_id: int) -> list[dict]:
        """A track's live frame annotations in frame order: annotation, input, frame index, concept, status."""
        chosen = self.task(task)
        if chosen.tracker is None:
            raise Invalid(f"Task {task!r} has no tracker: its objects have no tracks.")
        return self.store.read(lambda s: s.tracks.frames_of_track(chosen.name, video_id, track_id, chosen.tracker))

    def remove(self, annotation_id: str, person: str, lead: bool = False) -> dict:
        """Delete one annotation: an event retiring it (by a reviewer of its image, or a lead)."""

        def work(s: Session) -> dict:
            current = s.history.current_one(annotation_id)
            check_reviewer(self.task(current.task), person, s.reviews.assignee(current.task, current.input_id),
                           lead)
            event = removal_event(current, person, utc_now())
            return {"annotation_id": annotation_id, "status": str(Status.RETIRED),
                    "written": s.history.append([event] if event else [])}

        return self.store.write(work)

    def bulk(self, task: str, annotation_ids: list[str], action: str, person: str, concept: str | None = None,
             lead: bool = False) -> dict:
        """One action on many annotations of a task, in one transaction, one event per annotation as the review
        page writes them: accept, reject, relabel (to `concept`) or remove."""
        chosen = self.task(task)
        if action == "relabel":
            check_concept(chosen, concept or "")
        now = utc_now()

        def work(s: Session) -> dict:
            events: list[AnnotationEvent] = []
            assignees: dict[str, str | None] = {}
            for current in s.history.current_many(annotation_ids):
                if current.task != chosen.name:
                    raise NotFound(f"Annotation {current.annotation_id} is not one of task {task!r}.")
                if current.input_id not in assignees:
                    assignees[current.input_id] = s.reviews.assignee(task, current.input_id)
                check_reviewer(chosen, person, assignees[current.input_id], lead)
                if action == "remove":
                    events.extend([e for e in [removal_event(current, person, now)] if e])
                elif current.status != Status.RETIRED and not (action == "relabel" and current.concept == concept):
                    decision = "correct" if action == "relabel" else action
                    events.extend(decision_events(current, decision, person, now,
                                                  concept if action == "relabel" else None)[0])
            return {"action": action, "annotations": len(annotation_ids), "written": s.history.append(events)}

        return self.store.write(work)

    def add_concept_to_images(self, task: str, annotation_ids: list[str], concept: str, lead_name: str) -> dict:
        """A lead adds an image-level concept to the images of the selected objects (each image once; images that
        have it already are counted, not changed)."""
        chosen = self.task(task)
        now = utc_now()

        def work(s: Session) -> dict:
            inputs = sorted({a.input_id for a in s.history.current_many(annotation_ids) if a.task == chosen.name})
            held = set(s.history.current(task=chosen.name, status=[Status.SUCCESS], kind=Kind.CONCEPT)
                       .query("concept == @concept")["input_id"])
            events = [added_concept_event(chosen, i, concept, lead_name, now) for i in inputs if i not in held]
            return {"action": "add_concept", "images": len(inputs), "already": len(inputs) - len(events),
                    "written": s.history.append(events)}

        return self.store.write(work)

    def undo(self, annotation_ids: list[str], reviewer: str, lead: bool = False) -> dict:
        """Take back the reviewer's latest decision on each annotation (a correction is two: the original and
        the corrected one), in one transaction."""

        def work(s: Session) -> dict:
            events = []
            for annotation_id in annotation_ids:
                current = s.history.current_one(annotation_id)
                task = self.task(current.task)
                check_reviewer(task, reviewer, s.reviews.assignee(task.name, current.input_id), lead)
                events.append(undo_event(current, s.history.status_before_last(annotation_id), reviewer,
                                         utc_now()))
            return {"undone": [{"annotation_id": e.annotation_id, "status": str(e.status)} for e in events],
                    "written": s.history.append(events)}

        return self.store.write(work)

    def queue(self, task: str, reviewer: str, statuses: list[str] | None = None, concepts: list[str] | None = None,
              labelers: list[str] | None = None, combine: str = "and") -> list[dict]:
        chosen = self.task(task)

        def read(s: Session) -> list[dict]:
            rows = (s.consensus.queue(chosen.name, reviewer) if chosen.consensus is not None
                    else s.reviews.queue(chosen, reviewer, statuses, concepts, labelers, combine))
            return ordered_queue(s, chosen, self.weights, rows, reviewer)

        return self.store.read(read)

    def undecided(self, task: str, reviewer: str) -> list[dict]:
        chosen = self.task(task)
        if chosen.consensus is not None:
            return self.store.read(lambda s: s.consensus.undecided(chosen.name, reviewer))
        return self.store.read(lambda s: s.reviews.undecided(chosen.name, reviewer))

    def progress(self, task: str) -> dict[str, dict[str, int]]:
        chosen = self.task(task)
        return self.store.read(lambda s: s.reviews.progress_of(chosen))

    def image(self, task: str, input_id: str, reviewer: str | None = None, lead: bool = False) -> list[dict]:
        """The task's annotations of one image; with `reviewer`, only for one of the task's reviewers (the page
        reads only what its reviewer reviews; the CLI is the operator's)."""
        chosen = self.task(task)
        if reviewer is not None and reviewer not in chosen.adjudicators:
            check_reviewer(chosen, reviewer, assignee=None, lead=lead)

        def work(s: Session) -> list[dict]:
            if not s.inputs.exists(input_id):
                raise NotFound(f"No input has the id {input_id}.")
            shown = s.reviews.image_annotations(task, input_id, chosen.tracker)
            if chosen.consensus is None or reviewer is None or lead:
                return shown
            # A consensus reviewer sees only their own decisions on the items still open, and their own drawings.
            mine = s.consensus.own_decisions(task, input_id, reviewer)
            open_items = set(s.consensus.items(task, input_id)["annotation_id"])
            for row in shown:
                own = mine.get(row["annotation_id"])
                if row["annotation_id"] in open_items and own is not None:
                    row.update(status=str(Status.SUCCESS if own["decision"] == "accept" else Status.REJECTED),
                               concept=own["concept"], x1=own["x1"], y1=own["y1"], x2=own["x2"], y2=own["y2"],
                               annotator=reviewer)
            drawn = [{"annotation_id": a, "kind": d["kind"], "concept": d["concept"], "original_concept": None,
                      "confidence": None, "status": str(Status.SUCCESS), "source": "review", "annotator": reviewer,
                      "x1": d["x1"], "y1": d["y1"], "x2": d["x2"], "y2": d["y2"], "polygon": None,
                      "spot_check": False, "spot_check_pending": False, "model_id": None, "annotators": [reviewer]}
                     for a, d in mine.items() if d["decision"] == "draw" and open_items]
            listed = {r["annotation_id"] for r in shown}
            return shown + [d for d in drawn if d["annotation_id"] not in listed]

        return self.store.read(work)

    def can_see(self, reviewer: str, input_id: str, lead: bool = False) -> bool:
        """Whether the image belongs to a task the reviewer reviews, or any task for a lead (routed, annotated or
        queued there)."""
        mine = [task.name for task in self.tasks if lead or reviewer in task.people]
        return bool(mine) and self.store.read(lambda s: s.reviews.input_in_tasks(input_id, mine))

    def overview(self) -> list[dict]:
        """The tasks page: one row per configured task, the most urgent first, with its labeling status (inputs
        processed of those in its scope), reviewing status (images reviewed of those assigned), dataset, priority,
        concepts, labelers and model."""

        def work(s: Session) -> list[dict]:
            rows = []
            for task in sorted(self.tasks, key=lambda t: (t.priority_rank, t.name)):
                figures = s.objects.overview(task)
                assigned = sum(r["assigned"] for r in figures["review"].values())
                reviewed = sum(r["reviewed"] for r in figures["review"].values())
                rows.append({
                    "name": task.name, "priority": task.priority, "dataset": ", ".join(task.inputs.paths) or
                    "all inputs", "concepts": task.concepts, "image_concepts": task.image_concepts,
                    "labelers": [task.annotator, *task.reviewers], "model_id": figures["model_id"],
                    "inputs": figures["inputs"], "processed": figures["processed"],
                    "labeled_pct": percent(figures["processed"], figures["inputs"]), "assigned": assigned,
                    "reviewed": reviewed, "reviewed_pct": percent(reviewed, assigned),
                    "annotations": figures["annotations"], "versions": s.versions.keys(task.name)})
            return rows

        return self.store.read(work)

    def objects(self, task: str, filters: dict[str, list[str]], combine: str = "and",
                min_confidence: float | None = None, max_confidence: float | None = None,
                after: str | None = None, limit: int = 60) -> dict:
        """One page of the task's objects gallery; `after` is the `next` key of the page before."""
        chosen = self.task(task)
        return self.store.read(lambda s: s.objects.page(chosen.name, filters, combine, min_confidence,
                                                        max_confidence, page_key(after), limit))

    def matching_objects(self, task: str, filters: dict[str, list[str]], combine: str = "and",
                         min_confidence: float | None = None, max_confidence: float | None = None) -> list[str]:
        chosen = self.task(task)
        return self.store.read(lambda s: s.objects.matching_ids(chosen.name, filters, combine, min_confidence,
                                                                max_confidence))

    def box_of(self, annotation_id: str) -> dict:
        found = self.store.read(lambda s: s.objects.box_of(annotation_id))
        if found is None:
            raise NotFound(f"No annotation has the id {annotation_id!r}.")
        return found


def percent(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 1) if whole else 0.0


def page_key(after: str | None) -> tuple[float, str] | None:
    """The gallery's page key "RANK|ANNOTATION_ID" read back; one that is not is `Invalid`."""
    if after is None:
        return None
    rank, _, annotation_id = after.partition("|")
    try:
        return float(rank), annotation_id
    except ValueError:
        raise Invalid(f"{after!r} is not a page key of the objects gallery.") from None
