"""The vocabulary of the annotation history: statuses, sources, the event, and how ids are derived.

The history itself (current state, state as of a time, appending events) is stored and queried in
`store.history`; this module is what pure code (routing, review rules, plots, formats) may use
without touching the database.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from core.geometry import Box


class Status(StrEnum):
    SUCCESS = "SUCCESS"
    AWAITING_REVIEW = "AWAITING_REVIEW"
    PENDING = "PENDING"  # written, but neither in a dataset nor in a reviewer's queue (a task's band_status)
    REJECTED = "REJECTED"
    RETIRED = "RETIRED"  # replaced by a correction, or no longer found by the model
    AWAITING_CONSENSUS_REVIEW = "AWAITING_CONSENSUS_REVIEW"  # the reviewers of a consensus task disagreed


class Kind(StrEnum):
    """What an annotation marks: an object (a box, maybe a polygon) or a concept of the whole image."""

    BOX = "box"
    CONCEPT = "concept"


# An image-level concept is stored with the whole image as its box, so that one history, one state table and one
# review flow serve both kinds; `kind` tells them apart (events written before kinds existed have NULL: boxes).
WHOLE_IMAGE = Box(0.0, 0.0, 1.0, 1.0)
KIND_SQL = "coalesce(kind, 'box')"


class Role(StrEnum):
    """What a signed-in person may do: a reviewer reviews their tasks' queues; a lead sees every task, creates
    versions, deletes inputs and removes annotations."""

    REVIEWER = "reviewer"
    LEAD = "lead"


ROLES = tuple(Role)


class Source(StrEnum):
    AUTO = "auto"
    REVIEW = "review"
    IMPORT = "import"


# The status each routing band writes unless a task's `band_status` says otherwise; the discard band writes nothing.
BAND_STATUS = {"accept": Status.SUCCESS, "review": Status.AWAITING_REVIEW}
LIVE_STATUSES = (Status.SUCCESS, Status.AWAITING_REVIEW)
# What an object's annotation holds while it stands or waits for a decision (PENDING too): an image with one is no
# negative, and a second one on the same object is a duplicate.
HELD_STATUSES = (Status.SUCCESS, Status.AWAITING_REVIEW, Status.PENDING, Status.AWAITING_CONSENSUS_REVIEW)
BAND_WRITABLE = (Status.SUCCESS, Status.PENDING, Status.AWAITING_REVIEW)  # what a task's `band_status` may choose


def digest32(*parts: str) -> str:
    """The id of whatever `parts` name: the first 32 hex digits of sha256 over the parts joined by '|'.

    `store.history.digest32_sql` spells the same derivation in SQL for ids made inside the database."""
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def prediction_id(model_id: str, input_id: str, class_name: str, box: Box) -> str:
    """A prediction is what the model said where: re-runs and threshold changes keep its id."""
    return digest32(model_id, input_id, class_name, box.key())


def auto_annotation_id(task: str, prediction_id: str) -> str:
    """An auto annotation is one task's view of one prediction."""
    return digest32(task, prediction_id)


def human_annotation_id(task: str, input_id: str, concept: str, box: Box, origin: str) -> str:
    """An annotation a person made: imported (`origin` "import"), drawn in review ("drawn"), or a
    correction of another annotation ("corrects:<annotation id>")."""
    return digest32(task, input_id, concept, box.key(), origin)


@dataclass(frozen=True)
class AnnotationEvent:
    """One status change of one annotation; the event id is derived by the store when it is written."""

    annotation_id: str
    task: str
    input_id: str
    prediction_id: str | None
    model_id: str | None
    batch: str | None
    concept: str
    x1: float
    y1: float
    x2: float
    y2: float
    polygon: list[float] | None
    confidence: float | None
    status: Status
    annotator: str
    source: Source
    event_at: datetime
    rules: str | None = None  # the routing rules that wrote an auto event; None for people's events
    kind: Kind = Kind.BOX
    original_concept: str | None = None  # a relabelled annotation: the concept it had before people changed it

    @property
    def box(self) -> Box:
        return Box(self.x1, self.y1, self.x2, self.y2)

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["status"], row["source"], row["kind"] = str(self.status), str(self.source), str(self.kind)
        return row


EVENT_FIELDS = list(AnnotationEvent.__dataclass_fields__)
