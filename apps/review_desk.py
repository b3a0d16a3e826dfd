"""The review desk: every human decision, for the CLI and the review page alike.

Each method asks the access policy (`core.access.may`) about what it touches, read in the method's own
transaction, checks the request against the task (`core.review_rules`, typed errors) and writes its events
through the annotation history in that transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.access import MAX_TOKEN_DAYS, TOKEN_DAYS, Action, Actor, Target, Why, may
from core.annotations import AnnotationEvent, Kind, Role, Status
from core.geometry import Box
from core.review_rules import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    SignInFirst,
    added_concept_event,
    check_concept,
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


# Who the shell's own reads act as (`autoannotate` run by whoever holds the home): every task, as a lead.
OPERATOR = "operator"
STALE_LINK = ("This review link is not valid (it expired, was revoked or replaced by a newer invite, or no invite "
              "here gave it); ask for a new one.")
REFUSAL_ERROR = {Why.SIGN_IN: SignInFirst, Why.NOT_FOUND: NotFound, Why.FORBIDDEN: Forbidden}
DECISION_ACTION = {"reopen": Action.REOPEN, "correct": Action.CORRECT}


@dataclass(frozen=True)
class SignIn:
    """Who a review link signs in as, in which role, until when."""

    person: str
    role: Role
    expires_at: datetime


def require(actor: Actor | None, action: Action, target: Target | None = None) -> None:
    """The policy's refusal as the review error of its kind."""
    refusal = may(actor, action, target)
    if refusal is not None:
        raise REFUSAL_ERROR[refusal.why](refusal.sentence)


class ReviewDesk:
    def __init__(self, store: DuckDBStore, tasks: list[LabelingTask], weights: str = str(DEMO_WEIGHTS)) -> None:
        self.store = store
        self.tasks = tasks
        self.weights = Path(weights)  # the detector tasks without their own use: its embeddings order reviews

    def task(self, name: str) -> LabelingTask:
        return task_named(self.tasks, name)

    def invite(self, reviewer: str, role: Role = Role.REVIEWER, days: int = TOKEN_DAYS) -> str:
        """A new personal token for `reviewer` (shown once; only its hash is stored) that signs in for `days`; the
        earlier one stops working. A lead may be anyone; a reviewer is one of a configured task's reviewers."""
        if not 1 <= days <= MAX_TOKEN_DAYS:
            raise Invalid(f"--days {days} is not a link's lifetime: give 1 to {MAX_TOKEN_DAYS} days.")
        if role == Role.LEAD:
            if not reviewer.strip() or reviewer != reviewer.strip() or not reviewer.isprintable():
                raise Invalid(f"{reviewer!r} is not a name: give a lead's name without surrounding spaces.")
        elif not any(reviewer in task.people for task in self.tasks):
            known = sorted({r for task in self.tasks for r in task.reviewers})
            raise NotFound(f"{reviewer!r} is not a reviewer of any configured task (reviewers: "
                           f"{', '.join(known) or 'none'}).")
        token, now = secrets.token_urlsafe(24), utc_now()
        expires_at = now + timedelta(days=days)
        self.store.write(lambda s: s.reviews.issue_token(reviewer, token_sha256(token), now, expires_at, role))
        return token

    def revoke(self, reviewer: str) -> datetime:
        """End `reviewer`'s link now; returns when. Their open pages stop at their next request."""
        now = utc_now()
        if not self.store.write(lambda s: s.reviews.revoke_token(reviewer, now)):
            raise NotFound(f"{reviewer!r} holds no review link that signs in (never invited, expired or revoked "
                           "already).")
        return now

    def signed_in(self, token: str) -> SignIn | None:
        """The person a token belongs to, their role and when it expires, if it is current."""
        found = self.store.read(lambda s: s.reviews.reviewer_of_token(token_sha256(token), utc_now()))
        return SignIn(*found) if found else None

    def sign_in(self, token: str, current: str | None, switch: bool = False) -> SignIn:
        """The person a personal link signs this browser in as. A browser already signed in as someone else
        (`current`, its cookie's token) is asked first (`switch`): a link from another site must not swap who
        acts here unnoticed (login request forgery)."""
        link = self.signed_in(token)
        if link is None:
            raise SignInFirst(STALE_LINK)
        before = self.signed_in(current) if current and current != token else None
        if before is not None and before.person != link.person and not switch:
            raise Conflict(f"This browser is signed in as {before.person}; the link you opened signs in as "
                           f"{link.person}. Switch to {link.person}, or stay {before.person}?")
        return link

    def actor(self, person: str, lead: bool = False) -> Actor:
        return Actor.of(person, Role.LEAD if lead else Role.REVIEWER, self.tasks)

    def target(self, s: Session, task: str | None = None, input_id: str | None = None,
               annotation_id: str | None = None, current: AnnotationEvent | None = None,
               actor: Actor | None = None) -> Target | None:
        """What a request touches, as the policy needs it: an annotation (its task read from it), an image of a
        named task, an image of whichever task holds it (the actor's own tasks first), or a named task."""
        if annotation_id is not None or current is not None:
            current = current or s.history.current_one(str(annotation_id))
            of_task = self._image_target(s, self.task(current.task), current.input_id, "annotation", False)
            # An annotation asked about as one of a named task is out of scope when it is another task's.
            return replace(of_task, ref=current.annotation_id, in_scope=of_task.in_scope and task in (None,
                                                                                                 current.task),
                           awaiting_consensus=current.status == Status.AWAITING_CONSENSUS_REVIEW)
        if input_id is not None and task is not None:
            return self._image_target(s, self.task(task), input_id, "input", True)
        if input_id is not None:
            mine_first = sorted(self.tasks, key=lambda t: actor is None or not actor.member(t.name))
            held = next((t for t in mine_first if s.reviews.input_in_tasks(input_id, [t.name])), None)
            return Target("image", input_id, held.name if held else None, exists=s.inputs.exists(input_id),
                          in_scope=held is not None, deleted=bool(s.inputs.deleted([input_id])),
                          people=tuple(held.people) if held else ())
        return task_target(self.task(task)) if task is not None else None

    def _image_target(self, s: Session, task: LabelingTask, input_id: str, kind: str, named: bool) -> Target:
        exists = s.inputs.exists(input_id)
        consensus = task.consensus is not None
        return Target(kind, input_id, task.name, named, exists=exists,
                      in_scope=exists and s.reviews.input_in_tasks(input_id, [task.name]),
                      deleted=bool(s.inputs.deleted([input_id])), consensus=consensus,
                      takeover=task.allow_takeover, holders=frozenset({s.reviews.assignee(task.name, input_id)}),
                      consensus_holders=frozenset(s.consensus.holders(task.name, input_id)) if consensus
                      else frozenset(),
                      adjudicators=frozenset(s.consensus.holders(task.name, input_id, "adjudicate")) if consensus
                      else frozenset(), people=tuple(task.people))

    def check(self, person: str, lead: bool, action: Action, task: str | None = None, input_id: str | None = None,
              annotation_id: str | None = None) -> None:
        """Ask the policy whether `person` may do `action` to what the ids name (for routes that call a service
        beyond the desk: versions, deletion, similar objects, images and crops)."""
        actor = self.actor(person, lead)
        self.store.read(lambda s: require(actor, action, self.target(s, task, input_id, annotation_id, actor=actor)))

    def acting(self, person: str, named: str | None) -> str:
        """The person a request acts as: the signed-in one; naming another is refused."""
        require(self.actor(person), Action.ACT_AS, Target("task", person=named))
        return person

    def tasks_of(self, person: str, lead: bool = False) -> list[LabelingTask]:
        """The tasks a person may see."""
        actor = self.actor(person, lead)
        return [t for t in self.tasks if may(actor, Action.SEE_TASK, task_target(t)) is None]

    def decide(self, annotation_id: str, decision: str, reviewer: str, concept: str | None = None,
               box: Box | None = None, lead: bool = False, polygon: list[float] | None = None) -> dict:
        """Accept, reject or correct (`decision` "correct" with a new concept, box and/or polygon) one
        annotation, or send an accepted one back to review ("reopen")."""
        actor = self.actor(reviewer, lead)

        def work(s: Session) -> dict:
            current = s.history.current_one(annotation_id)
            require(actor, DECISION_ACTION.get(decision, Action.DECIDE), self.target(s, current=current))
            task = self.task(current.task)
            now = utc_now()
            if concept is not None:
                check_concept(task, concept, current.kind)
            consensus_word = task.consensus is not None and not lead and \
                current.status != Status.AWAITING_CONSENSUS_REVIEW  # the adjudicator's decision is final
            if consensus_word:
                return record_decision(s, task, current, decision, reviewer, now, concept, box)
            events, standing = decision_events(current, decision, reviewer, now, concept, box, polygon)
            written = s.history.append(events)
            if decision == "reopen" and task.consensus is None and s.reviews.assignee(task.name,
                                                                                      current.input_id) is None:
                s.reviews.assign(task.name, current.input_id, reviewer, now)  # an auto-accepted image: to my queue
            return {"annotation_id": standing, "status": str(events[-1].status if events else current.status),
                    "written": written}

        return self.store.write(work)

    def draw(self, task: str, input_id: str, concept: str, box: Box, reviewer: str, lead: bool = False,
             polygon: list[float] | None = None) -> dict:
        """A box (or polygon) the model missed: a new SUCCESS annotation; drawing the same one twice writes it
        once."""
        chosen = self.task(task)
        return self._add(chosen, Action.DRAW, input_id, lambda: drawn_box_event(
            chosen, input_id, concept, box, reviewer, utc_now(), polygon), reviewer, lead)

    def add_concept(self, task: str, input_id: str, concept: str, reviewer: str, lead: bool = False) -> dict:
        """An image-level concept the classifier missed: a new SUCCESS annotation of the whole image; refused when
        the image has that concept already."""
        chosen = self.task(task)
        return self._add(chosen, Action.ADD_CONCEPT, input_id, lambda: added_concept_event(
            chosen, input_id, concept, reviewer, utc_now()), reviewer, lead)

    def _add(self, task: LabelingTask, action: Action, input_id: str, made: Callable[[], AnnotationEvent],
             person: str, lead: bool) -> dict:
        actor = self.actor(person, lead)

        def work(s: Session) -> dict:
            require(actor, action, self.target(s, task.name, input_id))
            event = made()
            if task.consensus is not None and not lead:  # a reviewer's proposal, matched with the others'
                return record_drawing(s, task, event, utc_now())
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
        actor = self.actor(reviewer, lead)
        now = utc_now()

        def work(s: Session) -> dict:
            require(actor, Action.ACCEPT_ABOVE, self.target(s, task, input_id))
            pending = s.history.current(task=task, input_id=input_id, status=[Status.AWAITING_REVIEW],
                                        min_confidence=threshold, kind=kind)["annotation_id"].tolist()
            if chosen.consensus is not None and not lead:
                mine = s.consensus.own_decisions(task, input_id, reviewer)
                undecided = [a for a in pending if a not in mine]
                written = sum(record_decision(s, chosen, s.history.current_one(a), "accept", reviewer, now)["written"]
                              for a in undecided)
                return {"accepted": len(undecided), "annotation_ids": undecided, "written": written}
            events = [e for a in pending for e in decision_events(s.history.current_one(a), "accept", reviewer,
                                                                  now)[0]]
            return {"accepted": len(pending), "annotation_ids": pending, "written": s.history.append(events)}

        return self.store.write(work)

    def _track_target(self, s: Session, task: LabelingTask, video_id: str, track_id: int,
                      currents: list[AnnotationEvent]) -> Target:
        """A track of a named task (`currents`: its live frame annotations): it exists when it has some; its
        holders are its frames' holders."""
        return Target("track", f"{track_id} of video {video_id[:12]}", task.name, True, exists=bool(currents),
                      deleted=bool(s.inputs.deleted([c.input_id for c in currents])),
                      consensus=task.consensus is not None, takeover=task.allow_takeover,
                      holders=frozenset(s.reviews.assignee(task.name, c.input_id) for c in currents),
                      people=tuple(task.people))

    def _tracker_of(self, task: LabelingTask, actor: Actor, otherwise: str) -> str:
        """The task's tracker; a task without one is `Invalid` for its own people (a stranger is refused first)."""
        require(actor, Action.SEE_TASK, task_target(task))
        if task.tracker is None:
            raise Invalid(f"Task {task.name!r} has no tracker: {otherwise}.")
        return task.tracker

    def decide_track(self, task: str, video_id: str, track_id: int, decision: str, reviewer: str,
                     concept: str | None = None, lead: bool = False) -> dict:
        """One decision on a whole track (accept, reject, or "correct" to `concept`): one event per frame
        annotation of it, as if each were decided on its own. The reviewer holds one of the track's frames; the
        track's other frames follow, whoever's queue holds them."""
        chosen = self.task(task)
        actor = self.actor(reviewer, lead)
        tracker = self._tracker_of(chosen, actor, "its objects are decided one frame at a time")
        if concept is not None:
            check_concept(chosen, concept)
        now = utc_now()

        def work(s: Session) -> dict:
            frames = s.tracks.annotations_of_track(chosen.name, video_id, track_id, tracker)
            currents = s.history.current_many(frames)
            require(actor, Action.DECIDE_TRACK, self._track_target(s, chosen, video_id, track_id, currents))
            events = [e for c in currents if not (decision == "correct" and c.concept == concept)
                      for e in decision_events(c, decision, reviewer, now, concept)[0]]
            standing = {e.annotation_id for e in events if e.status != Status.RETIRED} if decision == "correct" \
                else set(frames)
            return {"track_id": track_id, "frames": len(frames), "written": s.history.append(events),
                    "annotation_ids": sorted(standing | (set(frames) if decision == "correct" else set()))}

        return self.store.write(work)

    def track_frames(self, task: str, video_id: str, track_id: int, person: str, lead: bool = False) -> list[dict]:
        """A track's live frame annotations in frame order: annotation, input, frame index, concept, status."""
        chosen = self.task(task)
        actor = self.actor(person, lead)
        tracker = self._tracker_of(chosen, actor, "its objects have no tracks")

        def read(s: Session) -> list[dict]:
            frames = s.tracks.annotations_of_track(chosen.name, video_id, track_id, tracker)
            require(actor, Action.SEE_TRACK, self._track_target(s, chosen, video_id, track_id,
                                                                s.history.current_many(frames)))
            return s.tracks.frames_of_track(chosen.name, video_id, track_id, tracker)

        return self.store.read(read)

    def remove(self, annotation_id: str, person: str, lead: bool = False) -> dict:
        """Delete one annotation: an event retiring it (by a reviewer of its image, or a lead)."""
        actor = self.actor(person, lead)

        def work(s: Session) -> dict:
            current = s.history.current_one(annotation_id)
            require(actor, Action.REMOVE, self.target(s, current=current))
            event = removal_event(current, person, utc_now())
            return {"annotation_id": annotation_id, "status": str(Status.RETIRED),
                    "written": s.history.append([event] if event else [])}

        return self.store.write(work)

    def _bulk_targets(self, s: Session, task: LabelingTask, actor: Actor,
                      annotation_ids: list[str]) -> list[AnnotationEvent]:
        """The current state of each selected annotation, each asked of the policy as a bulk action's target (a
        lead's: what decides is the task it is of and whether its input is deleted)."""
        require(actor, Action.BULK)
        currents = s.history.current_many(annotation_ids)
        deleted = s.inputs.deleted(sorted({c.input_id for c in currents}))
        for current in currents:
            require(actor, Action.BULK, Target("annotation", current.annotation_id, current.task, in_scope=(
                current.task == task.name), deleted=current.input_id in deleted, people=tuple(task.people)))
        return currents

    def bulk(self, task: str, annotation_ids: list[str], action: str, person: str, concept: str | None = None,
             lead: bool = False) -> dict:
        """One action on many annotations of a task, in one transaction, one event per annotation as the review
        page writes them: accept, reject, relabel (to `concept`) or remove."""
        chosen = self.task(task)
        actor = self.actor(person, lead)
        if action == "relabel":
            check_concept(chosen, concept or "")
        now = utc_now()

        def work(s: Session) -> dict:
            events: list[AnnotationEvent] = []
            for current in self._bulk_targets(s, chosen, actor, annotation_ids):
                if action == "remove":
                    events.extend([e for e in [removal_event(current, person, now)] if e])
                elif current.status != Status.RETIRED and not (action == "relabel" and current.concept == concept):
                    decision = "correct" if action == "relabel" else action
                    events.extend(decision_events(current, decision, person, now,
                                                  concept if action == "relabel" else None)[0])
            return {"action": action, "annotations": len(annotation_ids), "written": s.history.append(events)}

        return self.store.write(work)

    def add_concept_to_images(self, task: str, annotation_ids: list[str], concept: str, lead_name: str,
                              lead: bool = True) -> dict:
        """A lead adds an image-level concept to the images of the selected objects (each image once; images that
        have it already are counted, not changed)."""
        chosen = self.task(task)
        actor = self.actor(lead_name, lead)
        now = utc_now()

        def work(s: Session) -> dict:
            inputs = sorted({a.input_id for a in self._bulk_targets(s, chosen, actor, annotation_ids)})
            held = set(s.history.current(task=chosen.name, status=[Status.SUCCESS], kind=Kind.CONCEPT)
                       .query("concept == @concept")["input_id"])
            events = [added_concept_event(chosen, i, concept, lead_name, now) for i in inputs if i not in held]
            return {"action": "add_concept", "images": len(inputs), "already": len(inputs) - len(events),
                    "written": s.history.append(events)}

        return self.store.write(work)

    def undo(self, annotation_ids: list[str], reviewer: str, lead: bool = False) -> dict:
        """Take back the reviewer's latest decision on each annotation (a correction is two: the original and
        the corrected one), in one transaction; an id given twice is undone once."""
        actor = self.actor(reviewer, lead)
        chosen = list(dict.fromkeys(annotation_ids))

        def work(s: Session) -> dict:
            events = []
            for annotation_id in chosen:
                current = s.history.current_one(annotation_id)
                require(actor, Action.UNDO, self.target(s, current=current))
                events.append(undo_event(current, s.history.status_before_last(annotation_id), reviewer,
                                         utc_now()))
            return {"undone": [{"annotation_id": e.annotation_id, "status": str(e.status)} for e in events],
                    "written": s.history.append(events)}

        return self.store.write(work)

    def queue(self, task: str, reviewer: str, statuses: list[str] | None = None, concepts: list[str] | None = None,
              labelers: list[str] | None = None, combine: str = "and", asked_by: str | None = None,
              lead: bool = False) -> list[dict]:
        """`reviewer`'s queue, as `asked_by` (default: the reviewer) may see it."""
        chosen = self.task(task)
        require(self.actor(asked_by or reviewer, lead), Action.SEE_QUEUE, replace(task_target(chosen),
                                                                                   person=reviewer))

        def read(s: Session) -> list[dict]:
            rows = (s.consensus.queue(chosen.name, reviewer) if chosen.consensus is not None
                    else s.reviews.queue(chosen, reviewer, statuses, concepts, labelers, combine))
            return ordered_queue(s, chosen, self.weights, rows, reviewer)

        return self.store.read(read)

    def undecided(self, task: str, reviewer: str) -> list[dict]:
        chosen = self.task(task)
        self.check(reviewer, False, Action.SEE_TASK, task)
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
        actor = self.actor(reviewer or OPERATOR, lead or reviewer is None)

        def work(s: Session) -> list[dict]:
            require(actor, Action.SEE_IMAGE, self.target(s, task, input_id))
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

    def overview(self, person: str, lead: bool) -> list[dict]:
        """The tasks page: one row per configured task, the most urgent first, with its labeling status (inputs
        processed of those in its scope), reviewing status (images reviewed of those assigned), dataset, priority,
        concepts, labelers and model."""
        require(self.actor(person, lead), Action.SEE_OVERVIEW)

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

    def objects(self, person: str, lead: bool, task: str, filters: dict[str, list[str]], combine: str = "and",
                min_confidence: float | None = None, max_confidence: float | None = None,
                after: str | None = None, limit: int = 60) -> dict:
        """One page of the task's objects gallery; `after` is the `next` key of the page before."""
        chosen = self.task(task)
        require(self.actor(person, lead), Action.SEE_OBJECTS)
        return self.store.read(lambda s: s.objects.page(chosen.name, filters, combine, min_confidence,
                                                        max_confidence, page_key(after), limit))

    def matching_objects(self, person: str, lead: bool, task: str, filters: dict[str, list[str]],
                         combine: str = "and", min_confidence: float | None = None,
                         max_confidence: float | None = None) -> list[str]:
        chosen = self.task(task)
        require(self.actor(person, lead), Action.SEE_OBJECTS)
        return self.store.read(lambda s: s.objects.matching_ids(chosen.name, filters, combine, min_confidence,
                                                                max_confidence))

    def box_of(self, annotation_id: str) -> dict:
        found = self.store.read(lambda s: s.objects.box_of(annotation_id))
        if found is None:
            raise NotFound(f"No annotation has the id {annotation_id!r}.")
        return found


def task_target(task: LabelingTask) -> Target:
    """A task as a request names it: how it reviews and who its people are."""
    return Target("task", task.name, task.name, True, consensus=task.consensus is not None,
                  takeover=task.allow_takeover, people=tuple(task.people))


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
