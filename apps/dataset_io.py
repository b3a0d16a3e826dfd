"""Labels in (`autoannotate import`) and dataset versions out (`autoannotate export`)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from core.annotations import AnnotationEvent, Kind, Source, Status, digest32, human_annotation_id
from core.formats import (
    LabelBox,
    LabelFormatError,
    image_suffix,
    place_image,
    read_coco,
    read_concept_csv,
    read_concept_folders,
    read_voc,
    read_yolo,
    write_classify,
    write_coco,
    write_yolo,
)
from core.geometry import Box
from core.image_checks import Rejection, inspect_image_file
from resources.image_store import ImageStore
from resources.store import DuckDBStore
from resources.versions import VersionStore
from store import Session

READERS = {"yolo": read_yolo, "coco": read_coco, "voc": read_voc, "concepts-csv": read_concept_csv,
           "classify": read_concept_folders}


def import_labels(store: DuckDBStore, images: ImageStore, fmt: str, path: Path, task: str, user: str,
                  max_pixels: int, concepts: list[str]) -> dict:
    """Every label becomes a SUCCESS annotation (source `import`, annotator `user`) of `task`.

    All files are read and checked before anything is written; then images not yet ingested are
    ingested and the annotations written in one transaction. Importing the same labels again
    writes nothing new.
    """
    boxes = READERS[fmt](path)
    strays = Counter(box.concept for box in boxes if box.concept not in concepts)
    if strays:
        raise LabelFormatError(
            f"{path}: {sum(strays.values())} labels name concepts task {task!r} does not have: "
            + ", ".join(f"{c} ({n})" for c, n in sorted(strays.items())) + f"; its concepts are "
            f"{', '.join(concepts)} (add them to the task file, or import into another task); nothing was written.")
    # Boxes that reached outside their image were clipped to it; the report names each label.
    clipped = [box.clipped_at for box in boxes if box.clipped_at]
    inspected = {}
    for image in sorted({box.image for box in boxes}):
        result = inspect_image_file(image, max_pixels)
        if isinstance(result, Rejection):
            raise LabelFormatError(f"{image}: {result.reason}")
        inspected[image] = result
    for result in inspected.values():
        images.put(result.input_id, result.data)
    batch = f"import-{fmt}-{digest32(*sorted(r.input_id for r in inspected.values()))[:12]}"
    now = datetime.now(UTC).replace(tzinfo=None)
    events = [import_event(box, inspected[box.image].input_id, task, user, batch, now) for box in boxes]
    stored = {r.input_id: str(images.path_for(r.input_id)) for r in inspected.values()}

    def write(s: Session) -> dict:
        ingestion = s.inputs.record_batch(batch, list(inspected.items()), [], stored, now)
        s.history.class_names(task, concepts, now)
        known = s.history.known_ids(task)
        written = s.history.append([e for e in events if e.annotation_id not in known])
        return {"batch": batch, "images": len(inspected), "new_inputs": ingestion["new"], "labels": len(boxes),
                "annotations_written": written, "clipped_boxes": len(clipped), "clipped": clipped}

    return store.write(write)


def import_event(box: LabelBox, input_id: str, task: str, user: str, batch: str, now: datetime) -> AnnotationEvent:
    unit_box = Box(box.x1, box.y1, box.x2, box.y2)
    # A concept label's id leaves out the box, which is always the whole image.
    origin = "import" if box.kind == Kind.BOX else "import-concept"
    return AnnotationEvent(
        annotation_id=human_annotation_id(task, input_id, box.concept, unit_box, origin), task=task,
        input_id=input_id, prediction_id=None, model_id=None, batch=batch, concept=box.concept, x1=box.x1,
        y1=box.y1, x2=box.x2, y2=box.y2, polygon=list(box.polygon) if box.polygon else None, confidence=None,
        status=Status.SUCCESS, annotator=user, source=Source.IMPORT, event_at=now, kind=Kind(box.kind))


def missing_version_sentence(version_key: str, stored: list[str]) -> str:
    """Why `version_key` names no version, and what to type instead."""
    if "@" not in version_key:
        hint = f"a version key is TASK@DAY, e.g. {version_key}@{datetime.now(UTC).date().isoformat()}"
    else:
        hint = "`autoannotate version create --date DAY` builds a day's version"
    newest = f"; stored: {', '.join(stored[:5])}{' ...' if len(stored) > 5 else ''}" if stored else ""
    return f"No dataset version {version_key!r}: {hint}{newest}."


def export_version(store: DuckDBStore, images: ImageStore, versions: VersionStore, version_key: str, fmt: str,
                   out: Path) -> dict:
    """Write a version as an Ultralytics YOLO dataset, an Ultralytics classification dataset (`classify`: its
    image-level concepts, one per image) or a COCO JSON (boxes, and image-level concepts on each image), with its
    images, into `out`."""

    def read(s: Session):
        version = s.versions.get(version_key)
        if version is None:
            raise KeyError(missing_version_sentence(version_key, s.versions.keys(version_key.split("@")[0])))
        rows = s.history.as_of(version["task"], version["cutoff"])
        # A box format carries objects only: an image-level concept (its box is the whole image) is not a box.
        is_concept = rows["kind"].fillna(str(Kind.BOX)) == str(Kind.CONCEPT)
        boxes, concepts = rows[~is_concept], rows[is_concept]
        # Class ids come from the task's registry, so they never move between versions.
        names = s.history.class_names(version["task"], sorted((concepts if fmt == "classify" else boxes)
                                                              ["concept"].unique()))
        return (version, boxes, concepts, names, s.inputs.sizes(list(rows["input_id"].unique())),
                s.versions.manifest(version["task"], version["cutoff"]).sha256)

    version, boxes, concepts, names, inputs, current_sha256 = store.write(read)
    recorded = version["manifest_sha256"]
    if current_sha256 != recorded:
        raise ValueError(f"The annotations of {version_key} no longer match its manifest {recorded[:12]}; "
                         "re-create the version before exporting it.")
    summary = {"version": version_key, "format": fmt, "manifest_sha256": recorded}
    if fmt == "classify":
        if concepts.empty:
            raise ValueError(f"{version_key} holds no image-level concepts to export as classify (its task "
                             "annotates boxes: export it as yolo or coco).")
        counts = write_classify(concepts, inputs, images.path_for, out, names, versions.val_ratio)
        return {**summary, "out": str(out), **counts, "annotations": len(concepts)}
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "yolo":
        with_boxes = inputs[inputs["input_id"].isin(boxes["input_id"])]
        counts = write_yolo(boxes, with_boxes, images.path_for, out, names, versions.val_ratio)
        return {**summary, "out": str(out / "data.yaml"), **counts, "annotations": len(boxes)}
    image_dir = out / "images"
    image_dir.mkdir(exist_ok=True)
    for info in inputs.itertuples():
        place_image(images.path_for(info.input_id), image_dir / f"{info.input_id}{image_suffix(info.format)}")
    counts = write_coco(boxes, inputs, out / "annotations.json", names, image_concepts=concepts)
    return {**summary, "out": str(out / "annotations.json"), **counts}
