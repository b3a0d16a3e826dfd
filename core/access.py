"""Who may do what: the one access policy of the review app, the CLI and the review desk.

Pure: no web framework, no database. The desk describes what a request touches as a `Target` (read from the store
in the request's own transaction) and asks `may(actor, action, target)`; a route passes only who is signed in.
A refusal is a sentence of one of three kinds: sign in first (401), not found (404: the same sentence as for an
id that does not exist, so a refusal never tells that something exists), forbidden (403: the thing is the
person's to know of, the act is not theirs).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from core.annotations import Role

if TYPE_CHECKING:
    from collections.abc import Iterable

    from core.task_config import LabelingTask


class Action(StrEnum):
    """Every verb the app and the CLI offer; the value is how a refusal names it."""

    SEE_TASK = "see this task"
    SEE_QUEUE = "see another reviewer's queue"
    SEE_IMAGE = "see this image"
    SEE_CROP = "see this object"
    SEE_TRACK = "see this track"
    SEE_SIMILAR = "search for similar objects"
    SEE_OVERVIEW = "see the tasks page"
    SEE_OBJECTS = "browse the objects gallery"
    ACT_AS = "act as another person"
    DECIDE = "accept or reject this annotation"
    REOPEN = "send this annotation back to review"
    CORRECT = "correct this annotation"
    DRAW = "draw on this image"
    ADD_CONCEPT = "add a concept to this image"
    ACCEPT_ABOVE = "accept this image's boxes above a confidence"
    REMOVE = "remove this annotation"
    UNDO = "undo a decision on this annotation"
    DECIDE_TRACK = "decide this track"
    BULK = "act on many objects at once"
    DELETE_INPUT = "delete an input"
    CREATE_VERSION = "create a dataset version"


# How long a personal review link signs in, unless `review invite --days` says otherwise.
TOKEN_DAYS = 30
MAX_TOKEN_DAYS = 365
LEAD_ACTIONS = frozenset({Action.SEE_SIMILAR, Action.SEE_OVERVIEW, Action.SEE_OBJECTS, Action.BULK,
                          Action.DELETE_INPUT, Action.CREATE_VERSION})
READS = frozenset({Action.SEE_TASK, Action.SEE_IMAGE, Action.SEE_CROP, Action.SEE_TRACK})
# What a consensus reviewer does on an image they hold: their own word, matched with the others' (never final).
CONSENSUS_WORDS = frozenset({Action.DECIDE, Action.CORRECT, Action.DRAW, Action.ADD_CONCEPT, Action.ACCEPT_ABOVE})
# What the adjudicator holding an item awaiting consensus review does to it (her word is final).
ADJUDICATION = frozenset({Action.DECIDE, Action.CORRECT, Action.REMOVE, Action.UNDO})


class Why(StrEnum):
    SIGN_IN = "sign in"
    NOT_FOUND = "not found"
    FORBIDDEN = "forbidden"


@dataclass(frozen=True)
class Refusal:
    why: Why
    sentence: str


@dataclass(frozen=True)
class Actor:
    """A signed-in person: their name, role, and the tasks they review and adjudicate."""

    name: str
    role: Role
    reviews: frozenset[str] = frozenset()
    adjudicates: frozenset[str] = frozenset()

    @classmethod
    def of(cls, name: str, role: Role, tasks: Iterable[LabelingTask]) -> Actor:
        listed = list(tasks)
        return cls(name, role, frozenset(t.name for t in listed if name in t.reviewers),
                   frozenset(t.name for t in listed if name in t.adjudicators))

    @property
    def lead(self) -> bool:
        return self.role == Role.LEAD

    def member(self, task: str | None) -> bool:
        return task is not None and (task in self.reviews or task in self.adjudicates)


@dataclass(frozen=True)
class Target:
    """What an action touches, with everything that decides: the task and how it reviews, whether the thing exists,
    lies in the task's scope and is deleted, who holds the image (a reviewer's queue, consensus places,
    adjudication), and whether the annotation awaits consensus review.

    `task_named` says the request itself named the task (refusing for the task then tells nothing of the id);
    otherwise the task was read from the id, and a person outside it gets the unknown id's answer."""

    kind: str  # "task", "input", "image", "annotation" or "track": which unknown-id sentence a refusal gives
    ref: str = ""
    task: str | None = None
    task_named: bool = False
    exists: bool = True
    in_scope: bool = True
    deleted: bool = False
    consensus: bool = False
    takeover: bool = False
    holders: frozenset[str | None] = frozenset()  # queue holders of the image (a track: of its frames; None: nobody)
    consensus_holders: frozenset[str] = frozenset()
    adjudicators: frozenset[str] = frozenset()
    awaiting_consensus: bool = False
    person: str | None = None  # ACT_AS / SEE_QUEUE: the person the request names
    people: tuple[str, ...] = ()  # the task's reviewers and adjudicators

    def unknown(self) -> str:
        return {"task": f"No task named {self.ref!r} is yours to review.",
                "input": f"No input has the id {self.ref}.",
                "image": f"No stored image has the id {self.ref}.",
                "annotation": f"No annotation has the id {self.ref!r}.",
                "track": f"Task {self.task!r} shows you no track {self.ref}."}[self.kind]


def may(actor: Actor | None, action: Action, target: Target | None = None) -> Refusal | None:
    """None when `actor` may do `action` to `target`; else the refusal, with its sentence."""
    if actor is None:
        return Refusal(Why.SIGN_IN, "Open your personal review link to sign in; `autoannotate review invite NAME` "
                                    "prints it.")
    if action == Action.ACT_AS:
        named = target.person if target else None
        return None if named in (None, actor.name) else Refusal(
            Why.FORBIDDEN, f"You are signed in as {actor.name}; a decision as {named} is refused.")
    if action in LEAD_ACTIONS and not actor.lead:
        return Refusal(Why.FORBIDDEN, f"{actor.name} is a reviewer: only a lead (`autoannotate review invite NAME "
                                      "--role lead`) may do this.")
    if target is None:
        return None
    outsider = not actor.lead and not actor.member(target.task)
    if outsider and target.task_named and target.task is not None:
        return Refusal(Why.FORBIDDEN, f"{actor.name!r} is not a reviewer of task {target.task!r} (reviewers: "
                                      f"{', '.join(target.people) or 'none'}).")
    # A deleted input is gone for every action but deleting it again (which says it was deleted already).
    if outsider or not target.exists or not target.in_scope or (target.deleted and action != Action.DELETE_INPUT):
        return Refusal(Why.NOT_FOUND, target.unknown())
    if action == Action.SEE_QUEUE:
        if target.person not in target.people and not (actor.lead and target.person == actor.name):
            return Refusal(Why.NOT_FOUND, f"{target.person!r} is not a reviewer of task {target.task!r}.")
        return None if actor.lead or target.person == actor.name or target.takeover else Refusal(
            Why.FORBIDDEN, f"You are signed in as {actor.name}; task {target.task!r} shows you only your own queue.")
    if actor.lead or action in READS:
        return None
    if target.consensus:
        return _consensus_rule(actor, action, target)
    if actor.name not in target.holders and target.holders - {None} and not target.takeover:
        holder = sorted(h for h in target.holders if h is not None)[0]
        return Refusal(Why.FORBIDDEN, f"This image is in {holder}'s queue, and task {target.task!r} does not let "
                                      "reviewers take over each other's images (allow_takeover: true in the task "
                                      "file would).")
    return None


def _consensus_rule(actor: Actor, action: Action, target: Target) -> Refusal | None:
    """A consensus task: each image's reviewers give their own word, what they disagree on is the adjudicator's,
    and nothing a single reviewer does is final (no reopening, removing or deciding a track alone)."""
    if target.awaiting_consensus:
        if action in ADJUDICATION and actor.name in target.adjudicators:
            return None
        return Refusal(Why.FORBIDDEN, f"This annotation awaits consensus review by its adjudicator; {actor.name} is "
                                      "not the adjudicator of this image.")
    if action in CONSENSUS_WORDS and actor.name in target.consensus_holders:
        return None
    if action in (Action.REMOVE, Action.UNDO) and actor.name in target.adjudicators:
        return None  # the adjudicator's own final word on the image
    if action in CONSENSUS_WORDS:
        return Refusal(Why.FORBIDDEN, f"This image of consensus task {target.task!r} is not in {actor.name}'s queue: "
                                      "each image goes to its own reviewers, who decide it independently.")
    return Refusal(Why.FORBIDDEN, f"In consensus task {target.task!r} a reviewer may not {action}: each reviewer's "
                                  "word is matched with the others' (decide the item again instead); a lead may.")
