"""Consensus review as a use case: recording each reviewer's own decision on a consensus task's image, and
resolving the image once every one of its reviewers has decided every item (`core.consensus` rules)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from core.annotations import AnnotationEvent, Kind, Source, Status, human_annotation_id
from core.consensus import ACCEPT, Outcome, ReviewerDecision, agreement_figures, group_drawn, mean_box, resolve_item
from core.geometry import Box
from core.review_rules import Conflict, decision_events
from core.task_config import LabelingTask
from services.ports import UnitsOfWork
from store import Session
from store.history import event_from_row

RESOLVER = "consensus"  # the annotator of the events an outcome writes; who agreed is in consensus_outcomes


def record_decision(s: Session, task: LabelingTask, current: AnnotationEvent, decision: str, reviewer: str,
                    now: datetime, concept: str | None = None, box: Box | None = None) -> dict[str, Any]:
    """A consensus reviewer's own decision on one item (accept, with a relabel or a new box, or reject; the access
    policy checked they hold the image); the image resolves once all its reviewers decided all its items."""
    pending = set(s.consensus.items(task.name, current.input_id)["annotation_id"])
    if current.annotation_id not in pending:
        raise Conflict(f"Annotation {current.annotation_id} is not waiting for its reviewers (it is "
                       f"{current.status}).")
    s.consensus.record(_decision_row(task, replace(current, concept=concept or current.concept), reviewer,
                                     ACCEPT if decision in ("accept", "correct") else "reject", box or current.box,
                                     now))
    written = resolve_image(s, task, current.input_id, now)
    return {"annotation_id": current.annotation_id, "status": "decided (awaiting the other reviewers)"
            if not written else str(s.history.current_one(current.annotation_id).status), "written": written}


def record_drawing(s: Session, task: LabelingTask, event: AnnotationEvent, now: datetime) -> dict[str, Any]:
    """A box a consensus reviewer drew: their proposal, matched with the others' when the image resolves."""
    s.consensus.record(_decision_row(task, event, event.annotator, "draw", event.box, now))
    return {"annotation_id": event.annotation_id, "status": "drawn (awaiting the other reviewers)",
            "written": resolve_image(s, task, event.input_id, now)}


def _decision_row(task: LabelingTask, item: AnnotationEvent, reviewer: str, decision: str, box: Box,
                  now: datetime) -> dict[str, Any]:
    """A row of `consensus_decisions`: the reviewer's word on `item` (its concept as they left it) and its box."""
    return {"task": task.name, "input_id": item.input_id, "annotation_id": item.annotation_id, "reviewer": reviewer,
            "decision": decision, "kind": str(item.kind), "concept": item.concept, "x1": box.x1, "y1": box.y1,
            "x2": box.x2, "y2": box.y2, "decided_at": now}


def _outcome_row(task: str, input_id: str, annotation_id: str, outcome: Outcome, reviewers: list[str],
                 now: datetime) -> dict[str, Any]:
    return {"task": task, "input_id": input_id, "annotation_id": annotation_id, "status": outcome.status,
            "reviewers": reviewers, "agreeing": list(outcome.agreeing), "mean_iou": outcome.mean_iou,
            "reason": outcome.reason, "resolved_at": now}


def resolve_image(s: Session, task: LabelingTask, input_id: str, now: datetime) -> int:
    """Resolve the image's items once every reviewer it went to has decided each of them: the quorum's outcome
    as an event on the item (a relabel or new box as a correction), boxes they drew matched across them, what
    they did not agree on to an adjudicator. Returns the events written (0 while a reviewer has not decided)."""
    assert task.consensus is not None
    rule = task.consensus
    reviewers = s.consensus.holders(task.name, input_id)
    items = s.consensus.items(task.name, input_id)
    decided = s.consensus.decisions(task.name, input_id)
    on_items = decided[decided["decision"] != "draw"]
    by_item = {a: rows for a, rows in on_items.groupby("annotation_id")}
    if len(items) == 0 or any(set(by_item.get(a, on_items.iloc[0:0])["reviewer"]) < set(reviewers)
                              for a in items["annotation_id"]):
        return 0
    events: list[AnnotationEvent] = []
    outcomes: list[dict[str, Any]] = []
    for row in items.to_dict("records"):
        current = event_from_row(row)
        mine = by_item[current.annotation_id]
        outcome = resolve_item([ReviewerDecision(d.reviewer, d.decision, d.concept, Box(d.x1, d.y1, d.x2, d.y2))
                                for d in mine.itertuples() if d.reviewer in reviewers],
                               rule.needed, rule.agreement_iou, (current.concept, current.box))
        if outcome.status == Status.SUCCESS and (outcome.concept != current.concept or outcome.box != current.box):
            events += decision_events(current, "correct", RESOLVER, now, outcome.concept,
                                      None if outcome.box == current.box else outcome.box)[0]
        else:
            events.append(replace(current, status=Status(outcome.status), source=Source.REVIEW, annotator=RESOLVER,
                                  event_at=now))
        outcomes.append(_outcome_row(task.name, input_id, current.annotation_id, outcome, reviewers, now))
    # Boxes the reviewers drew: a group a quorum drew alike is accepted (their mean box); a box fewer drew waits
    # for the adjudicator.
    draws = decided[decided["decision"] == "draw"]
    for kind in (Kind.BOX, Kind.CONCEPT):
        proposals = [ReviewerDecision(d.reviewer, "draw", d.concept, Box(d.x1, d.y1, d.x2, d.y2))
                     for d in draws.itertuples() if d.reviewer in reviewers and d.kind == kind]
        groups = group_drawn(proposals, rule.agreement_iou)
        events_of, outcomes_of = _drawn_outcomes(task, input_id, groups, kind, reviewers, now)
        events += events_of
        outcomes += outcomes_of
    written = s.history.append(events)
    s.consensus.record_outcomes(outcomes)
    s.consensus.assign_new(task, now)  # what they did not agree on goes to an adjudicator
    return written


def _drawn_outcomes(task: LabelingTask, input_id: str, groups: list[list[ReviewerDecision]], kind: Kind,
                    reviewers: list[str], now: datetime) -> tuple[list[AnnotationEvent], list[dict[str, Any]]]:
    """What the reviewers' drawn boxes (or added image-level concepts), grouped across them, resolve to."""
    assert task.consensus is not None
    rule = task.consensus
    events: list[AnnotationEvent] = []
    outcomes: list[dict[str, Any]] = []
    for group in groups:
        agreed = len(group) >= rule.needed
        box = mean_box([d.box for d in group]) if agreed else group[0].box
        drawn_by = tuple(d.reviewer for d in group)
        annotation_id = human_annotation_id(task.name, input_id, group[0].concept, box,
                                            "consensus:" + "+".join(drawn_by))
        status = Status.SUCCESS if agreed else Status.AWAITING_CONSENSUS_REVIEW
        events.append(AnnotationEvent(
            annotation_id=annotation_id, task=task.name, input_id=input_id, prediction_id=None, model_id=None,
            batch=None, concept=group[0].concept, x1=box.x1, y1=box.y1, x2=box.x2, y2=box.y2, polygon=None,
            confidence=None, status=status, annotator=RESOLVER, source=Source.REVIEW, event_at=now, kind=kind))
        outcomes.append(_outcome_row(task.name, input_id, annotation_id, Outcome(
            str(status), group[0].concept, box, drawn_by if agreed else (), None,
            f"{len(group)} of {len(reviewers)} {'drew' if kind == Kind.BOX else 'added'} it"), reviewers, now))
    return events, outcomes


def reviewer_agreement(store: UnitsOfWork, task: LabelingTask, confidence: float = 0.95) -> dict[str, Any] | None:
    """A consensus task's agreement figures (`core.consensus.agreement_figures`); None for other tasks."""
    if task.consensus is None:
        return None
    decisions, finals = store.read(lambda s: s.consensus.agreement_inputs(task.name))
    return agreement_figures(decisions, finals, confidence)
