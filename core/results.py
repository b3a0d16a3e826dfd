"""What the main use cases return: frozen records, read by attribute where they are used, and given by
`as_dict()` in the shape the CLI prints as JSON and assets attach as metadata (unchanged from when they were
dicts, so scripts reading `--json` keep working)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from core.manifests import Manifest

BandCounts = Mapping[str, Mapping[str, int]]
"""Per concept, how many predictions fell in each band ("accept", "review", "discard")."""


@dataclass(frozen=True)
class Result:
    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Routed(Result):
    """One task's predictions of one batch routed into annotation events."""

    appended_events: int
    bands: BandCounts
    unmapped_predictions: int


@dataclass(frozen=True)
class TaskRouting(Result):
    """Routing a task's batch and handing its review items out; `skipped` says why nothing was routed."""

    appended_events: int
    bands: BandCounts
    unmapped_predictions: int
    newly_assigned: int
    handed_over: int
    skipped: str | None = None

    @classmethod
    def of(cls, routed: Routed, newly_assigned: int, handed_over: int) -> TaskRouting:
        return cls(routed.appended_events, routed.bands, routed.unmapped_predictions, newly_assigned, handed_over)

    @property
    def accepted(self) -> int:
        return sum(b["accept"] for b in self.bands.values())

    @property
    def to_review(self) -> int:
        return sum(b["review"] for b in self.bands.values())

    @property
    def discarded(self) -> int:
        return sum(b["discard"] for b in self.bands.values())


@dataclass(frozen=True)
class IdenticalFiles(Result):
    """Byte-identical files of one import, stored as one input: how many labels they merged into, and how many of
    those only some of the files carry."""

    input_id: str
    files: list[str]
    labels: int
    conflicting_labels: int


@dataclass(frozen=True)
class ImportSummary(Result):
    """What an import read, matched and wrote."""

    batch: str
    format: str
    status: str
    newly_assigned: int
    images: int
    new_inputs: int
    labels: int
    images_without_labels: int
    annotations_written: int
    matched_existing: int
    taken_over: int
    unchanged: int
    new_labels: int
    identical_files: list[IdenticalFiles]
    clipped_boxes: int
    clipped: list[str]
    rescaled_images: list[str]


@dataclass(frozen=True)
class BuiltVersion(Result):
    """A dataset version as its manifest records it; `changed` when this build wrote a new manifest."""

    manifest_sha256: str
    annotations: int
    inputs: int
    negatives: int
    per_concept: Mapping[str, int]
    changed: bool

    @classmethod
    def of(cls, manifest: Manifest, changed: bool) -> BuiltVersion:
        return cls(manifest.sha256, manifest.annotations, manifest.inputs, manifest.negatives, manifest.per_concept,
                   changed)


@dataclass(frozen=True)
class ExportSummary(Result):
    """An export written: what it holds (`counts`: per split, annotations, negatives by maker, ... as the format
    counts them) and where its main file is; `as_dict()` puts the counts beside the rest, as the CLI prints."""

    version: str
    format: str
    manifest_sha256: str
    labels: str
    splits: Mapping[str, Any]
    negatives_included: list[str]
    resize_longest_side: int
    out: str
    counts: Mapping[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        return {**{k: v for k, v in fields.items() if k != "counts"}, **self.counts}


@dataclass(frozen=True)
class TrainingOutcome(Result):
    """One task's turn of the model loop: trained or not (`why`), the candidate's figures beside the current
    detector's (`figures`: "candidate AP50", ...), and whether the candidate was promoted."""

    trained: bool
    why: str = ""
    model_id: str = ""
    parent_id: str = ""
    version: str = ""
    promoted: bool = False
    reason: str = ""
    training: Mapping[str, Any] = field(default_factory=dict)
    figures: Mapping[str, float] = field(default_factory=dict)
    per_class: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        if not self.trained:
            return {"trained": False, "why": self.why}
        fields = asdict(self)
        del fields["why"], fields["figures"]
        return {**fields, **self.figures}


@dataclass(frozen=True)
class DeletedInputs(Result):
    """Inputs deleted by a person: what left each table. `kept` names, per input `--purge` could not purge, the
    frozen versions that still hold it."""

    deleted: list[str]
    already_deleted: list[str]
    annotations_retired: Mapping[str, int]  # per task
    queue_places: int
    purged: list[str] = field(default_factory=list)
    kept: Mapping[str, list[str]] = field(default_factory=dict)
    removed: Mapping[str, int] = field(default_factory=dict)  # purged rows and files: embeddings, image/crop files

    def sentence(self) -> str:
        """What the deletion removed, with its counts per table."""
        parts = [f"deleted {len(self.deleted)} input(s)"]
        if self.already_deleted:
            parts.append(f"{len(self.already_deleted)} already deleted")
        retired = ", ".join(f"{task}: {n}" for task, n in self.annotations_retired.items()) or "none"
        parts.append(f"annotations retired (annotations table, one event each) {retired}")
        parts.append(f"queue places removed (review_assignments) {self.queue_places}")
        if self.purged or self.kept:
            parts.append(f"purged {len(self.purged)} (" + ", ".join(f"{k} {n}" for k, n in self.removed.items())
                         + ")")
        sentence = "; ".join(parts) + "."
        for input_id, versions in self.kept.items():
            sentence += (f" Not purged: {input_id} is held by the frozen version(s) {', '.join(versions)}, which "
                         "must still export it.")
        return sentence
