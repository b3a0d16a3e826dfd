"""Labels in (`autoannotate import`), and named (frozen) dataset versions (`autoannotate version create --name`)."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from core.annotations import HELD_STATUSES, AnnotationEvent, Kind, Source, Status, digest32, human_annotation_id
from core.faults import pause_point
from core.formats import LabelBox, LabelFormatError, label_format
from core.geometry import Box
from core.image_checks import Rejection, inspect_image_file
from core.manifests import Manifest, end_of_day
from core.quality import DEFAULT_IOU, greedy_pairs
from core.results import BuiltVersion, IdenticalFiles, ImportSummary
from core.task_config import LabelingTask
from services.exports import EXPORT_RECORD
from services.integrity import HASHING_THREADS, checked_image
from services.ports import BatchPins, StoredImages, UnitsOfWork, VersionFiles
from store import Session
from store.versions import FrozenVersion


def import_labels(store: UnitsOfWork, images: StoredImages, fmt: str, path: Path, task: str, user: str,
                  max_pixels: int, concepts: list[str], suggestions_for: LabelingTask | None = None,
                  match_iou: float = DEFAULT_IOU, inbox: BatchPins | None = None,
                  trust_sizes: bool = False, as_people: bool = False) -> ImportSummary:
    """Every label becomes a SUCCESS annotation (source `import`, annotator `user`) of `task`; with
    `suggestions_for` (the task's definition), an AWAITING_REVIEW one instead, with the label's confidence when
    the file has one, in the task's reviewers' queues.

    One object keeps one annotation: each label is matched one-to-one (IoU >= `match_iou`, same concept) to the
    task's live annotations of its image, as a re-run matches predictions. A matched label takes the annotation
    over (same id, an `import` event with the label's box) unless it already says the same (unchanged: its
    annotator stays, a model's box stays the model's); a suggestion matching an annotation adds nothing. A folder
    holding this home's own export (`autoannotate_export.json`) is refused unless `as_people`: its labels are the
    home's annotations, and importing them would make the model's boxes people's labels (reference boxes). Labels
    of byte-identical files (one stored input) are merged the same way, and the summary names those files and the
    labels they disagree on.

    All files are read and checked before anything is written; then images not yet ingested are
    ingested and the annotations written in one transaction. Importing the same labels again
    writes nothing new. With `inbox`, the imported images are pinned as a batch like an inbox batch (its manifest
    names the dataset's files), so the configured tasks' models predict and route them on the next run, as any
    other input, and `status` lists the batch until then.
    """
    if suggestions_for is not None and not suggestions_for.reviewers:
        raise ValueError(f"Task {task!r} has no reviewers to review suggestions: add `reviewers` to its file, or "
                         "import the labels as they are (without --as suggestions).")
    if not as_people and (own := own_export(store, path)):
        raise LabelFormatError(
            f"{path} is this home's own export of {own} ({EXPORT_RECORD}): its labels are this home's annotations, "
            "the model's and people's alike, and importing them would record the model's boxes as people's labels; "
            f"nothing was written. Pass --as-people to record them as {user}'s labels all the same.")
    reader = label_format(fmt, reading=True)
    boxes = reader.read(path)
    strays = Counter(box.concept for box in boxes if box.concept not in concepts)
    if strays:
        raise LabelFormatError(
            f"{path}: {sum(strays.values())} labels name concepts task {task!r} does not have: "
            + ", ".join(f"{c} ({n})" for c, n in sorted(strays.items())) + f"; its concepts are "
            f"{', '.join(concepts)} (add them to the task file, or import into another task); nothing was written.")
    # Boxes that reached outside their image were clipped to it; the report names each label.
    clipped = [box.clipped_at for box in boxes if box.clipped_at]
    labelled = {box.image for box in boxes}
    # Images the dataset lists without a label: a person looked and found nothing (no object: negatives of the
    # task's versions; no image-level concept: negatives of every concept for its classifier). A model's empty
    # output is no such statement, so suggestions bring none.
    listed = reader.listed(path) if reader.listed is not None and suggestions_for is None else []
    empty = set(listed) - labelled
    kind = reader.kind
    inspected = {}
    for image in sorted(labelled | empty):
        result = inspect_image_file(image, max_pixels)
        if isinstance(result, Rejection):
            raise LabelFormatError(f"{image}: {result.reason}")
        inspected[image] = result
    resized = sized_elsewhere(boxes, inspected, trust_sizes)
    for result in inspected.values():
        images.put(result.input_id, result.data)
    # Box imports key the batch by their labelled images only, as before images without labels were recorded
    # (a re-import of an older dataset adds no sources under a new key); a concepts CSV could not list them then.
    keyed = labelled | empty if kind == Kind.CONCEPT else labelled
    batch = f"import-{fmt}-{digest32(*sorted(inspected[i].input_id for i in keyed))[:12]}"
    now = datetime.now(UTC).replace(tzinfo=None)
    status = Status.SUCCESS if suggestions_for is None else Status.AWAITING_REVIEW
    boxes, identical = merge_identical_files(boxes, {image: inspected[image].input_id for image in inspected},
                                             match_iou)
    events = [import_event(box, inspected[box.image].input_id, task, user, batch, now, status) for box in boxes]
    stored = {r.input_id: images.location_of(r.input_id) for r in inspected.values()}

    def write(s: Session) -> ImportSummary:
        ingestion = s.inputs.record_batch(batch, list(inspected.items()), [], stored, now)
        s.history.class_names(task, concepts, now)
        live = s.history.current(task=task, input_id=sorted({e.input_id for e in events}), kind=kind,
                                 status=HELD_STATUSES) if events else None
        taken_over, new, unchanged = take_over_matches(events, live, match_iou, suggestions=suggestions_for is not None)
        # A new label already imported once (and maybe rejected by a person since) is not written again.
        known = s.history.known_ids(task)
        written = s.history.append(taken_over + [e for e in new if e.annotation_id not in known])
        s.history.record_empty(task, [inspected[i].input_id for i in empty], batch, user, now, kind)
        assigned = s.reviews.assign_new(suggestions_for, now) if suggestions_for is not None else 0
        return ImportSummary(
            batch=batch, format=fmt, status=str(status), newly_assigned=assigned, images=len(inspected),
            new_inputs=ingestion["new"], labels=len(boxes), images_without_labels=len(empty),
            annotations_written=written, matched_existing=len(taken_over) + unchanged, taken_over=len(taken_over),
            unchanged=unchanged, new_labels=len(new), identical_files=identical, clipped_boxes=len(clipped),
            clipped=clipped, rescaled_images=resized)

    summary = store.write(write)
    if inbox is not None and inspected:
        root = Path(os.path.commonpath([str(image.parent) for image in inspected]))
        inbox.write_batch([str(image.relative_to(root)) for image in inspected], key=batch, root=root)
    return summary


def sized_elsewhere(boxes: list[LabelBox], inspected: dict, trust_sizes: bool) -> list[str]:
    """The images whose size a COCO or VOC file states otherwise than the image itself has (after EXIF
    orientation). Refused, naming both sizes, unless `trust_sizes`: the labels were then made on a resized copy, and
    their boxes, relative to the stated size, are rescaled to the image (the returned images say which)."""
    differing: dict[Path, str] = {}
    for box in boxes:
        real = inspected[box.image]
        if box.declared_size is None or box.image in differing:
            continue
        if max(abs(box.declared_size[0] - real.width), abs(box.declared_size[1] - real.height)) > 0.5:
            said = f"{box.declared_size[0]:g}x{box.declared_size[1]:g}"
            if not trust_sizes:
                raise LabelFormatError(f"{box.declared_in}: says {box.image.name} is {said} pixels, but the image is "
                                       f"{real.width}x{real.height}; refused, nothing was written (pass --trust-sizes "
                                       "if the labels were made on a resized copy: they are then rescaled to the "
                                       "image).")
            differing[box.image] = f"{box.image}: {said} -> {real.width}x{real.height}"
    return sorted(differing.values())


def _label_frame(items: list, input_of: dict[Path, str] | None = None) -> pd.DataFrame:
    """Labels (`LabelBox`, with `input_of` their image's input id) or events as `core.quality.greedy_pairs` reads
    them: every label counts alike (confidence 1), in file order."""
    return pd.DataFrame([{"input_id": input_of[i.image] if input_of else i.input_id, "concept": i.concept,
                          "x1": i.x1, "y1": i.y1, "x2": i.x2, "y2": i.y2, "confidence": 1.0} for i in items],
                        columns=["input_id", "concept", "x1", "y1", "x2", "y2", "confidence"])


def merge_identical_files(boxes: list[LabelBox], input_of: dict[Path, str], match_iou: float
                          ) -> tuple[list[LabelBox], list[IdenticalFiles]]:
    """The labels of byte-identical files (one input) as one image's labels: a label of a later file matching one
    of an earlier file (IoU >= `match_iou`, same concept) is the same object and is dropped; what the files do not
    agree on is kept and counted. Returns the labels and, per input with several files, its files and how many
    labels only some of them carry."""
    files_of: dict[str, list[Path]] = {}
    for image, input_id in sorted(input_of.items()):
        files_of.setdefault(input_id, []).append(image)
    shared = {input_id: files for input_id, files in files_of.items() if len(files) > 1}
    if not shared:
        return boxes, []
    by_file: dict[Path, list[LabelBox]] = {}
    for box in boxes:
        by_file.setdefault(box.image, []).append(box)
    kept = [box for box in boxes if input_of[box.image] not in shared]
    report = []
    for input_id, files in sorted(shared.items()):
        merged = list(by_file.get(files[0], []))
        conflicting = 0
        for other in files[1:]:
            theirs = by_file.get(other, [])
            matched = {i for i, _ in greedy_pairs(_label_frame(theirs, input_of), _label_frame(merged, input_of),
                                                  match_iou)}
            conflicting += len(merged) - len(matched) + len(theirs) - len(matched)
            merged += [box for i, box in enumerate(theirs) if i not in matched]
        kept += merged
        report.append(IdenticalFiles(input_id, [str(f) for f in files], len(merged), conflicting))
    return kept, report


def own_export(store: UnitsOfWork, path: Path) -> str | None:
    """The version key when `path` (a dataset folder or file) is an export of this home: its export record names a
    version this store holds, and every image it lists is an input here."""
    for folder in (path, path.parent, path.parent.parent):
        record_file = folder / EXPORT_RECORD
        if record_file.is_file():
            break
    else:
        return None
    try:
        record = json.loads(record_file.read_text())
        version, input_ids = str(record["version"]), sorted(set(record["images"].values()))
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return None  # not a record this release wrote: the labels are taken as any other dataset's
    held = store.read(lambda s: (s.versions.get(version) is not None, s.inputs.sizes(input_ids)))
    return version if held[0] and len(held[1]) == len(input_ids) else None


# How far a label may sit from the annotation it matches and still say the same: an export's rounding (YOLO's 6
# decimals, COCO's 0.01 px), so that a version's own labels read back are unchanged, not a take-over.
SAME_BOX = 1e-4


def take_over_matches(events: list[AnnotationEvent], live: pd.DataFrame | None, match_iou: float,
                      suggestions: bool) -> tuple[list[AnnotationEvent], list[AnnotationEvent], int]:
    """Each label matched one-to-one (`core.quality.greedy_pairs`) to a live annotation of its image and concept
    takes that annotation over: the same id, batch, prediction and model, the label's box, source `import`; one
    that already says the same (the same box to an export's rounding, `SAME_BOX`, status and concept, whoever
    made it) is unchanged and writes nothing, keeping its annotator, and so is a suggestion that matches (the object
    is annotated already). Returns (take-over events, events of new objects, how many were unchanged)."""
    if live is None or live.empty:
        return [], events, 0
    live = live.reset_index(drop=True)
    pairs = dict(greedy_pairs(_label_frame(events), live, match_iou))
    taken_over, new, unchanged = [], [], 0
    for index, event in enumerate(events):
        if index not in pairs:
            new.append(event)
            continue
        current = live.iloc[pairs[index]]
        same = max(abs(event.x1 - current.x1), abs(event.y1 - current.y1), abs(event.x2 - current.x2),
                   abs(event.y2 - current.y2)) < SAME_BOX
        if suggestions or (same and current.status == str(event.status) and current.concept == event.concept):
            unchanged += 1
            continue
        taken_over.append(replace(event, annotation_id=current.annotation_id, batch=current.batch,
                                  prediction_id=_or_none(current.prediction_id), model_id=_or_none(current.model_id)))
    return taken_over, new, unchanged


def _or_none(value: object) -> object:
    return None if value is None or pd.isna(value) else value


def import_event(box: LabelBox, input_id: str, task: str, user: str, batch: str, now: datetime,
                 status: Status = Status.SUCCESS) -> AnnotationEvent:
    unit_box = Box(box.x1, box.y1, box.x2, box.y2)
    # A concept label's id leaves out the box, which is always the whole image.
    origin = "import" if box.kind == Kind.BOX else "import-concept"
    return AnnotationEvent(
        annotation_id=human_annotation_id(task, input_id, box.concept, unit_box, origin), task=task,
        input_id=input_id, prediction_id=None, model_id=None, batch=batch, concept=box.concept, x1=box.x1,
        y1=box.y1, x2=box.x2, y2=box.y2, polygon=list(box.polygon) if box.polygon else None,
        confidence=box.confidence, status=status, annotator=user, source=Source.IMPORT, event_at=now,
        kind=Kind(box.kind))


def build_day_version(s: Session, versions: VersionFiles, images: StoredImages, task: str, day: date, now: datetime,
                      checked: set[str]) -> tuple[str, BuiltVersion]:
    """Build (or confirm) the version of `task` on `day` (empty before the task's first annotation: every built
    day can be exported); its images are checked against their ids first (those not in `checked` already)."""
    cutoff = end_of_day(day)
    manifest = s.versions.manifest(task, cutoff)
    key = f"{task}@{day.isoformat()}"
    check_version_images(images, manifest, key, checked)
    path = versions.write_manifest(task, day.isoformat(), manifest.text)
    changed = s.versions.record(key, task, day, cutoff, manifest, path, now)
    pause_point("versions.write")
    return key, BuiltVersion.of(manifest, changed)


def check_version_images(images: StoredImages, manifest: Manifest, key: str, checked: set[str]) -> None:
    """Every image the version holds hashes to its id, or the version is refused naming the damaged one (before
    anything of it is written); `checked` spares a build of many days hashing one image again."""
    unchecked = sorted(manifest.input_ids - checked)
    with ThreadPoolExecutor(HASHING_THREADS) as pool:  # hashing releases the GIL; a bucket's reads overlap
        list(pool.map(lambda i: checked_image(images, i, f"version {key} was not built"), unchecked))
    checked.update(unchecked)


VERSION_NAME = re.compile(r"^[A-Za-z][\w.-]*$")


def create_named_version(store: UnitsOfWork, versions: VersionFiles, images: StoredImages, name: str,
                         tasks: list[str] | None, now: datetime | None = None) -> dict[str, BuiltVersion]:
    """Freeze the current accepted annotations of each task (every task with annotations when `tasks` is None)
    as the version TASK@NAME: its manifest is written once, and the version is never rebuilt or changed."""
    if not VERSION_NAME.match(name):
        raise ValueError(f"Version name {name!r} is not a name: start with a letter, then letters, digits, '.', "
                         "'_' or '-' (e.g. release-3); a day's version is built by `version create --date`.")
    now = now or datetime.now(UTC).replace(tzinfo=None)

    def freeze(s: Session) -> dict[str, BuiltVersion]:
        chosen = tasks or s.history.tasks()
        unknown = sorted(set(chosen) - set(s.history.tasks()))
        if unknown:
            raise ValueError(f"No annotations of task {unknown[0]!r} to freeze; tasks with annotations: "
                             f"{', '.join(s.history.tasks()) or 'none'}.")
        taken = [key for key in (f"{task}@{name}" for task in chosen) if s.versions.get(key) is not None]
        if taken:
            raise FrozenVersion(f"Version {taken[0]} already exists and is frozen: a named version never changes; "
                                "pick another name.")
        built = {}
        for task in chosen:
            manifest = s.versions.manifest(task, now)
            check_version_images(images, manifest, f"{task}@{name}", set())
            path = versions.write_manifest(task, name, manifest.text)
            s.versions.record(f"{task}@{name}", task, now.date(), now, manifest, path, now, frozen=True)
            built[f"{task}@{name}"] = BuiltVersion.of(manifest, changed=True)
        return built

    return store.write(freeze)
