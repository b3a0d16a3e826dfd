"""Labels in (`autoannotate import`), and named (frozen) dataset versions (`autoannotate version create --name`)."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from core.annotations import AnnotationEvent, Kind, Source, Status, digest32, human_annotation_id
from core.formats import (
    CONCEPT_FORMATS,
    LabelBox,
    LabelFormatError,
    listed_images,
    read_coco,
    read_concept_csv,
    read_concept_folders,
    read_voc,
    read_yolo,
)
from core.geometry import Box
from core.image_checks import Rejection, inspect_image_file
from core.task_config import LabelingTask
from resources.image_store import ImageStore
from resources.store import DuckDBStore
from resources.versions import VersionStore
from store import Session
from store.versions import FrozenVersion

READERS = {"yolo": read_yolo, "coco": read_coco, "voc": read_voc, "concepts-csv": read_concept_csv,
           "classify": read_concept_folders}


def import_labels(store: DuckDBStore, images: ImageStore, fmt: str, path: Path, task: str, user: str,
                  max_pixels: int, concepts: list[str], suggestions_for: LabelingTask | None = None) -> dict:
    """Every label becomes a SUCCESS annotation (source `import`, annotator `user`) of `task`; with
    `suggestions_for` (the task's definition), an AWAITING_REVIEW one instead, with the label's confidence when
    the file has one, in the task's reviewers' queues.

    All files are read and checked before anything is written; then images not yet ingested are
    ingested and the annotations written in one transaction. Importing the same labels again
    writes nothing new.
    """
    if suggestions_for is not None and not suggestions_for.reviewers:
        raise ValueError(f"Task {task!r} has no reviewers to review suggestions: add `reviewers` to its file, or "
                         "import the labels as they are (without --as suggestions).")
    boxes = READERS[fmt](path)
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
    empty = set() if suggestions_for is not None else set(listed_images(fmt, path)) - labelled
    kind = Kind.CONCEPT if fmt in CONCEPT_FORMATS else Kind.BOX
    inspected = {}
    for image in sorted(labelled | empty):
        result = inspect_image_file(image, max_pixels)
        if isinstance(result, Rejection):
            raise LabelFormatError(f"{image}: {result.reason}")
        inspected[image] = result
    for result in inspected.values():
        images.put(result.input_id, result.data)
    # Box imports key the batch by their labelled images only, as before images without labels were recorded
    # (a re-import of an older dataset adds no sources under a new key); a concepts CSV could not list them then.
    keyed = labelled | empty if kind == Kind.CONCEPT else labelled
    batch = f"import-{fmt}-{digest32(*sorted(inspected[i].input_id for i in keyed))[:12]}"
    now = datetime.now(UTC).replace(tzinfo=None)
    status = Status.SUCCESS if suggestions_for is None else Status.AWAITING_REVIEW
    events = [import_event(box, inspected[box.image].input_id, task, user, batch, now, status) for box in boxes]
    stored = {r.input_id: str(images.path_for(r.input_id)) for r in inspected.values()}

    def write(s: Session) -> dict:
        ingestion = s.inputs.record_batch(batch, list(inspected.items()), [], stored, now)
        s.history.class_names(task, concepts, now)
        known = s.history.known_ids(task)
        written = s.history.append([e for e in events if e.annotation_id not in known])
        s.history.record_empty(task, [inspected[i].input_id for i in empty], batch, user, now, kind)
        assigned = s.reviews.assign_new(suggestions_for, now) if suggestions_for is not None else 0
        return {"batch": batch, "format": fmt, "status": str(status), "newly_assigned": assigned,
                "images": len(inspected),
                "new_inputs": ingestion["new"], "labels": len(boxes), "images_without_labels": len(empty),
                "annotations_written": written, "clipped_boxes": len(clipped), "clipped": clipped}

    return store.write(write)


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


VERSION_NAME = re.compile(r"^[A-Za-z][\w.-]*$")


def create_named_version(store: DuckDBStore, versions: VersionStore, name: str, tasks: list[str] | None,
                         now: datetime | None = None) -> dict:
    """Freeze the current accepted annotations of each task (every task with annotations when `tasks` is None)
    as the version TASK@NAME: its manifest is written once, and the version is never rebuilt or changed."""
    if not VERSION_NAME.match(name):
        raise ValueError(f"Version name {name!r} is not a name: start with a letter, then letters, digits, '.', "
                         "'_' or '-' (e.g. release-3); a day's version is built by `version create --date`.")
    now = now or datetime.now(UTC).replace(tzinfo=None)

    def freeze(s: Session) -> dict:
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
            path = versions.write_manifest(task, name, manifest.text)
            s.versions.record(f"{task}@{name}", task, now.date(), now, manifest, str(path), now, frozen=True)
            built[f"{task}@{name}"] = {"manifest_sha256": manifest.sha256, "annotations": manifest.annotations,
                                       "inputs": manifest.inputs, "negatives": manifest.negatives,
                                       "per_concept": manifest.per_concept, "changed": True}
        return built

    return store.write(freeze)
