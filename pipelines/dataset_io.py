"""Labels in (`autoannotate import`) and dataset versions out (`autoannotate export`)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from assets.formats import (
    LabelBox,
    LabelFormatError,
    image_suffix,
    place_image,
    read_coco,
    read_voc,
    read_yolo,
    write_coco,
    write_yolo,
)
from assets.image_checks import Rejection, inspect_image_file
from assets.ingestion import write_batch_rows
from assets.manifests import build_manifest
from assets.schemas import AnnotationsSchema
from assets.triage import with_event_ids
from assets.versions import accepted_as_of
from resources.image_store import ImageStore
from resources.store import DuckDBStore, insert_frame
from resources.versions import VersionStore

READERS = {"yolo": read_yolo, "coco": read_coco, "voc": read_voc}


def import_labels(store: DuckDBStore, images: ImageStore, fmt: str, path: Path, task: str, user: str,
                  max_pixels: int) -> dict:
    """Every label becomes a SUCCESS annotation (source `import`, annotator `user`) of `task`.

    All files are read and checked before anything is written; then images not yet ingested are
    ingested and the annotations written in one transaction. Importing the same labels again
    writes nothing new.
    """
    boxes = READERS[fmt](path)
    inspected = {}
    for image in sorted({box.image for box in boxes}):
        result = inspect_image_file(image, max_pixels)
        if isinstance(result, Rejection):
            raise LabelFormatError(f"{image}: {result.reason}")
        inspected[image] = result
    for result in inspected.values():
        images.put(result.input_id, result.data)
    digest = hashlib.sha256("|".join(sorted(r.input_id for r in inspected.values())).encode()).hexdigest()[:12]
    batch = f"import-{fmt}-{digest}"
    now = datetime.now(UTC).replace(tzinfo=None)
    events = pd.DataFrame([import_event(box, inspected[box.image].input_id, task, user, batch, now) for box in boxes])

    def write(conn) -> dict:
        ingestion = write_batch_rows(conn, batch, list(inspected.items()), [], images, now)
        known = set(conn.execute("SELECT annotation_id FROM annotations WHERE task = ?", [task]).df()["annotation_id"])
        fresh = events[~events["annotation_id"].isin(known)] if len(events) else events
        written = 0
        if len(fresh):
            conn.register("import_events", fresh)
            written = insert_frame(conn, "annotations", with_event_ids(conn, "import_events"), AnnotationsSchema)
            conn.unregister("import_events")
        return {"batch": batch, "images": len(inspected), "new_inputs": ingestion["new"], "labels": len(boxes),
                "annotations_written": written}

    return store.write(write)


def import_event(box: LabelBox, input_id: str, task: str, user: str, batch: str, now: datetime) -> dict:
    key = f"{task}|{input_id}|{box.concept}|{box.x1:.6f}|{box.y1:.6f}|{box.x2:.6f}|{box.y2:.6f}"
    return {"annotation_id": hashlib.sha256(key.encode()).hexdigest()[:32], "task": task, "input_id": input_id,
            "prediction_id": None, "model_id": None, "batch": batch, "concept": box.concept, "x1": box.x1,
            "y1": box.y1, "x2": box.x2, "y2": box.y2, "polygon": list(box.polygon) if box.polygon else None,
            "confidence": None, "status": "SUCCESS", "annotator": user, "source": "import", "event_at": now}


def export_version(store: DuckDBStore, images: ImageStore, versions: VersionStore, version_key: str, fmt: str,
                   out: Path) -> dict:
    """Write a version as an Ultralytics YOLO dataset or a COCO JSON (with its images) into `out`."""
    with store.transaction() as conn:
        found = conn.execute("SELECT task, cutoff, manifest_sha256 FROM dataset_versions WHERE version_key = ?",
                             [version_key]).fetchall()
        if not found:
            raise KeyError(f"No dataset version {version_key!r}; `autoannotate version create` makes one.")
        task, cutoff, recorded = found[0]
        rows = accepted_as_of(conn, task, cutoff)
        names = sorted(conn.execute("SELECT DISTINCT concept FROM annotations WHERE task = ?", [task])
                       .df()["concept"])
        inputs = conn.execute("SELECT input_id, width, height, format FROM inputs WHERE input_id IN "
                              "(SELECT unnest(?::VARCHAR[])) ORDER BY input_id",
                              [sorted(rows["input_id"].unique())]).df()
    if build_manifest(rows).sha256 != recorded:
        raise ValueError(f"The annotations of {version_key} no longer match its manifest {recorded[:12]}; "
                         "re-create the version before exporting it.")
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "yolo":
        counts = write_yolo(rows, inputs, images.path_for, out, names, versions.val_ratio)
        return {"version": version_key, "format": fmt, "out": str(out / "data.yaml"), **counts,
                "annotations": len(rows), "manifest_sha256": recorded}
    write_yolo_images = write_yolo  # noqa: F841 - see below

    image_dir = out / "images"
    image_dir.mkdir(exist_ok=True)
    for info in inputs.itertuples():
        place_image(images.path_for(info.input_id), image_dir / f"{info.input_id}{image_suffix(info.format)}")
    counts = write_coco(rows, inputs, out / "annotations.json", names)
    return {"version": version_key, "format": fmt, "out": str(out / "annotations.json"), **counts,
            "manifest_sha256": recorded}
