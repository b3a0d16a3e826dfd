"""Dataset versions out: a version as an Ultralytics YOLO (detection or segmentation), Ultralytics classification
or COCO dataset, with its images, split train/val/test by input hash."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from core.annotations import Kind
from core.formats import has_polygon, image_suffix, place_image, resized, write_classify, write_coco, write_yolo
from core.manifests import check_split_ratios
from resources.image_store import ImageStore
from resources.store import DuckDBStore
from resources.versions import VersionStore
from store import Session


def missing_version_sentence(version_key: str, stored: list[str]) -> str:
    """Why `version_key` names no version, and what to type instead."""
    if "@" not in version_key:
        hint = f"a version key is TASK@DAY, e.g. {version_key}@{datetime.now(UTC).date().isoformat()}"
    else:
        hint = "`autoannotate version create --date DAY` builds a day's version"
    newest = f"; stored: {', '.join(stored[:5])}{' ...' if len(stored) > 5 else ''}" if stored else ""
    return f"No dataset version {version_key!r}: {hint}{newest}."


EXPORT_RECORD = "autoannotate_export.json"


def export_version(store: DuckDBStore, images: ImageStore, versions: VersionStore, version_key: str, fmt: str,
                   out: Path, negatives: bool = True, longest_side: int = 0,
                   model_classes: tuple[list[str], dict[str, str]] | None = None) -> dict:
    """Write a version as an Ultralytics YOLO dataset (`yolo-seg`, or `yolo` when the version has polygons:
    Ultralytics' segmentation labels), an Ultralytics classification dataset (`classify`: its image-level
    concepts, one per image) or a COCO JSON (boxes, and image-level concepts on each image), with its images,
    into `out`, split train/val/test by input hash. The version's negative images go in with no objects unless
    `negatives` is false; `longest_side` resizes larger images. `autoannotate_export.json` records all of it, so
    the export can be made again byte for byte. `model_classes` (a detector's class names, and the class each
    concept stands for) writes boxes in that detector's class space, to train it."""
    check_split_ratios(versions.val_ratio, versions.test_ratio)
    if longest_side < 0:
        raise ValueError(f"--resize {longest_side} is not a size: give the longest side in pixels, or 0 to keep "
                         "the stored images as they are.")

    def read(s: Session):
        version = s.versions.get(version_key)
        if version is None:
            raise KeyError(missing_version_sentence(version_key, s.versions.keys(version_key.split("@")[0])))
        rows = s.history.as_of(version["task"], version["cutoff"])
        # A box format carries objects only: an image-level concept (its box is the whole image) is not a box.
        is_concept = rows["kind"].fillna(str(Kind.BOX)) == str(Kind.CONCEPT)
        boxes, concepts = rows[~is_concept], rows[is_concept]
        empty = s.versions.negatives(version["task"], version["cutoff"]) if negatives and fmt != "classify" else []
        # Class ids come from the task's registry, so they never move between versions.
        names = s.history.class_names(version["task"], sorted((concepts if fmt == "classify" else boxes)
                                                              ["concept"].unique()))
        return (version, boxes, concepts, empty, names,
                s.inputs.sizes(sorted(set(rows["input_id"]) | set(empty))),
                s.versions.manifest(version["task"], version["cutoff"]).sha256)

    version, boxes, concepts, empty, names, inputs, current_sha256 = store.write(read)
    if model_classes is not None:
        names, class_of = model_classes
        boxes = boxes[boxes["concept"].isin(class_of)].assign(concept=lambda rows: rows["concept"].map(class_of))
    recorded = version["manifest_sha256"]
    if current_sha256 != recorded:
        raise ValueError(f"The annotations of {version_key} no longer match its manifest {recorded[:12]}; "
                         "re-create the version before exporting it.")
    ratios = (versions.val_ratio, versions.test_ratio)
    segments = fmt == "yolo-seg" or (fmt == "yolo" and any(has_polygon(box) for box in boxes.itertuples()))
    record = {"version": version_key, "format": fmt, "manifest_sha256": recorded,
              "labels": "segment" if segments else "detect" if fmt.startswith("yolo") else fmt,
              "splits": {"val": ratios[0], "test": ratios[1], "by": "input_id hash"},
              "negatives_included": negatives and fmt != "classify", "resize_longest_side": longest_side}
    if fmt == "classify":
        if concepts.empty:
            raise ValueError(f"{version_key} holds no image-level concepts to export as classify (its task "
                             "annotates boxes: export it as yolo or coco).")
        counts = write_classify(concepts, inputs, images.path_for, out, names, ratios, longest_side)
        return finish_export(out, out, record, {**counts, "annotations": len(concepts)})
    out.mkdir(parents=True, exist_ok=True)
    taken = inputs[inputs["input_id"].isin(set(boxes["input_id"]) | set(empty))]
    counts = {"negatives": len(empty)}
    if fmt.startswith("yolo"):
        counts |= write_yolo(boxes, taken, images.path_for, out, names, ratios, segments, longest_side)
        return finish_export(out, out / "data.yaml", record, {**counts, "annotations": len(boxes)})
    image_dir = out / "images"
    image_dir.mkdir(exist_ok=True)
    for info in inputs.itertuples():
        place_image(images.path_for(info.input_id), image_dir / f"{info.input_id}{image_suffix(info.format)}",
                    longest_side)
    # COCO's boxes are in pixels: of the images as exported.
    exported = [resized(w, h, longest_side) for w, h in zip(inputs["width"], inputs["height"], strict=True)]
    sized = inputs.assign(width=[w for w, _ in exported], height=[h for _, h in exported])
    counts |= write_coco(boxes, sized, out / "annotations.json", names, image_concepts=concepts, ratios=ratios)
    return finish_export(out, out / "annotations.json", record, counts)


def finish_export(out: Path, main_file: Path, record: dict, counts: dict) -> dict:
    """Write the export's record beside it; the summary the CLI prints."""
    (out / EXPORT_RECORD).write_text(json.dumps({**record, "counts": counts}, indent=1, sort_keys=True) + "\n")
    return {**record, "out": str(main_file), **counts}
