"""What a reviewer's decision writes, and which decisions are refused: pure rules with typed errors.

The review desk (CLI and review page alike) applies these rules after the access policy (`core.access`) allowed
the request; the HTTP status of a refusal comes from the error's type, never from its text.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from core.annotations import WHOLE_IMAGE, AnnotationEvent, Kind, Source, Status, human_annotation_id
from core.geometry import Box, polygon_bounds, unit_key
from core.task_config import LabelingTask

DECISION_STATUS = {"accept": Status.SUCCESS, "reject": Status.REJECTED}


class ReviewError(ValueError):
    """A decision that cannot be applied; the message says why."""


class NotFound(ReviewError):
    """The annotation, input or task named does not exist."""


class Conflict(ReviewError):
    """The decision does not fit the annotation's current state."""


class Invalid(ReviewError):
    """The decision itself is malformed: an unknown concept or decision."""


class Forbidden(ReviewError):
    """The reviewer may not make this decision: not a reviewer of the task, or someone else's image."""


class SignInFirst(ReviewError):
    """Nobody is signed in."""


def undo_event(current: AnnotationEvent, status_before: Status | None, reviewer: str,
               now: datetime) -> AnnotationEvent:
    """Take back the reviewer's own latest decision on an annotation: its status before it (a box the reviewer
    added is retired)."""
    if current.source != Source.REVIEW or current.annotator != reviewer:
        raise Conflict(f"The latest decision on annotation {current.annotation_id} is not yours to undo "
                       f"({current.annotator}, {current.source}).")
    return replace(current, status=status_before or Status.RETIRED, annotator=reviewer, event_at=now)


def removal_event(current: AnnotationEvent, person: str, now: datetime) -> AnnotationEvent | None:
    """Deleting an annotation: it is retired by `person` (None when it is retired already: a second click writes
    nothing)."""
    if current.status == Status.RETIRED:
        return None
    return replace(current, status=Status.RETIRED, source=Source.REVIEW, annotator=person, event_at=now)


def task_named(tasks: list[LabelingTask], name: str | None) -> LabelingTask:
    """The task called `name` (None: the first configured one), or `NotFound` saying which tasks there are and
    where they come from."""
    if name is None and tasks:
        return tasks[0]
    for task in tasks:
        if task.name == name:
            return task
    raise NotFound(f"No task named {name!r}; configured: {', '.join(t.name for t in tasks) or 'none'} (the task "
                   "files are AUTOANNOTATE_TASKS=a.yaml:b.yaml if set, else those of the last `run --task-file`, "
                   "kept in the home's tasks.txt, else tasks/demo.yaml).")


def check_concept(task: LabelingTask, concept: str, kind: Kind = Kind.BOX) -> str:
    """`concept` is one the task annotates as this kind: any of its concepts on a box, one its classifier scores
    on a whole image."""
    allowed = task.image_concepts if kind == Kind.CONCEPT else task.concepts
    if concept not in allowed:
        what = "an image-level concept" if kind == Kind.CONCEPT else "a concept"
        raise Invalid(f"{concept!r} is not {what} of task {task.name!r} (concepts: {', '.join(allowed) or 'none'}).")
    return concept


def decision_events(current: AnnotationEvent, decision: str, reviewer: str, now: datetime,
                    concept: str | None = None, box: Box | None = None,
                    polygon: list[float] | None = None) -> tuple[list[AnnotationEvent], str]:
    """Events for accepting, rejecting or correcting (new concept, box and/or polygon: a polygon brings its own
    box) `current`, and the id of the annotation the decision leaves standing. A decision equal to the current
    state writes nothing, so a double submit is one event; a correction retires the original and adds the
    corrected annotation."""
    if polygon is not None:
        box = polygon_bounds(polygon)
    if decision == "reopen":
        # Sending an accepted annotation back to review: it waits for a reviewer again (an event, like any other).
        if current.status == Status.AWAITING_REVIEW and current.source == Source.REVIEW:
            return [], current.annotation_id
        if current.status != Status.SUCCESS:
            raise Conflict(f"Only an accepted annotation can be sent back to review; annotation "
                           f"{current.annotation_id} is {current.status}.")
        return [replace(current, status=Status.AWAITING_REVIEW, source=Source.REVIEW, annotator=reviewer,
                        event_at=now)], current.annotation_id
    if decision in DECISION_STATUS and concept is None and box is None:
        status = DECISION_STATUS[decision]
        if current.status == status and current.source == Source.REVIEW:
            return [], current.annotation_id
        return [replace(current, status=status, source=Source.REVIEW, annotator=reviewer, event_at=now)], \
            current.annotation_id
    if decision != "correct":
        raise Invalid(f"Unknown decision {decision!r}; use accept, reject, reopen or correct.")
    if current.status == Status.RETIRED:
        raise Conflict(f"Annotation {current.annotation_id} was already replaced; correct the new one instead.")
    if box is not None and current.kind == Kind.CONCEPT:
        raise Invalid(f"Annotation {current.annotation_id} is an image-level concept: it has no box to correct.")
    new_box = box or current.box
    new_concept = concept or current.concept
    # A new box without a polygon drops the old outline; a new polygon is the outline (and its box).
    new_polygon = polygon if polygon is not None else None if box else current.polygon
    # The concept the model (or importer) gave stays visible on every later correction that changed it.
    given = current.original_concept or current.concept
    original = None if given == new_concept else given
    origin = f"corrects:{current.annotation_id}" + (f"|{unit_key(polygon)}" if polygon is not None else "")
    corrected_id = human_annotation_id(current.task, current.input_id, new_concept, new_box, origin)
    retire = replace(current, status=Status.RETIRED, source=Source.REVIEW, annotator=reviewer, event_at=now)
    corrected = replace(current, annotation_id=corrected_id, concept=new_concept, x1=new_box.x1, y1=new_box.y1,
                        x2=new_box.x2, y2=new_box.y2, polygon=new_polygon,
                        status=Status.SUCCESS, source=Source.REVIEW, annotator=reviewer, event_at=now,
                        original_concept=original)
    return [retire, corrected], corrected_id


def drawn_box_event(task: LabelingTask, input_id: str, concept: str, box: Box, reviewer: str,
                    now: datetime, polygon: list[float] | None = None) -> AnnotationEvent:
    """A box (or, with `polygon`, an outline and the box around it) the model missed, drawn by a reviewer: a new
    SUCCESS annotation (source `review`)."""
    check_concept(task, concept)
    if polygon is None:
        return _reviewer_event(task, input_id, concept, box, "drawn", reviewer, now, Kind.BOX)
    drawn = _reviewer_event(task, input_id, concept, polygon_bounds(polygon), f"drawn|{unit_key(polygon)}",
                            reviewer, now, Kind.BOX)
    return replace(drawn, polygon=list(polygon))



def added_concept_event(task: LabelingTask, input_id: str, concept: str, reviewer: str,
                        now: datetime) -> AnnotationEvent:
    """An image-level concept the classifier missed, added by a reviewer: a new SUCCESS annotation of the whole
    image (source `review`)."""
    check_concept(task, concept, Kind.CONCEPT)
    return _reviewer_event(task, input_id, concept, WHOLE_IMAGE, "added", reviewer, now, Kind.CONCEPT)


def _reviewer_event(task: LabelingTask, input_id: str, concept: str, box: Box, origin: str, reviewer: str,
                    now: datetime, kind: Kind) -> AnnotationEvent:
    return AnnotationEvent(
        annotation_id=human_annotation_id(task.name, input_id, concept, box, origin), task=task.name,
        input_id=input_id, prediction_id=None, model_id=None, batch=None, concept=concept, x1=box.x1, y1=box.y1,
        x2=box.x2, y2=box.y2, polygon=None, confidence=None, status=Status.SUCCESS, annotator=reviewer,
        source=Source.REVIEW, event_at=now, kind=kind)
