"""COCO detection JSON in and out: boxes in pixels of the oriented image, image-level concepts as an attribute of
each image; images beside the file or in its images/ folder."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from core.annotations import Kind
from core.formats.base import (
    ExportRequest,
    LabelBox,
    LabelFormat,
    Written,
    checked_box,
    concepts_per_image,
    existing_file,
    fail,
    has_polygon,
    inside_dataset,
    positive_size,
)
from core.formats.images import place_image, resized
from core.manifests import SPLITS, split_of


def write_coco(rows: pd.DataFrame, inputs: pd.DataFrame, out_file: Path, names: list[str],
               image_concepts: pd.DataFrame | None = None, ratios: tuple[float, float] | None = None) -> dict[str, Any]:
    """A COCO detection JSON (`inputs`: input_id, width, height, file_name, split_group); bbox is [x, y, w, h] in
    pixels of the oriented image. Image-level concepts (`image_concepts`: input_id, concept) are listed on each image as
    `concepts`, an attribute pycocotools and COCO evaluation ignore: an annotation without a box would break both.
    With `ratios` (val, test), also one file per split beside it (`<name>_train.json`, ...): the same images and
    ids, split by group hash like every other export, for trainers that read a COCO file per split."""
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(names)]
    category = {n: i + 1 for i, n in enumerate(names)}
    image_ids = {input_id: i + 1 for i, input_id in enumerate(sorted(inputs["input_id"]))}
    sizes = inputs.set_index("input_id")[["width", "height", "file_name"]]
    images = [{"id": image_ids[i], "file_name": sizes.loc[i, "file_name"],
               "width": int(sizes.loc[i, "width"]), "height": int(sizes.loc[i, "height"])} for i in image_ids]
    concepts = image_concepts if image_concepts is not None and len(image_concepts) > 0 else None
    if concepts is not None:
        held = concepts_per_image(concepts)
        for image, input_id in zip(images, image_ids, strict=True):
            image["concepts"] = held.get(input_id, [])
    annotations = []
    ordered = rows.sort_values(["input_id", "concept", "x1", "y1", "x2", "y2"])
    for number, box in enumerate(ordered.itertuples(), start=1):
        width, height = int(sizes.loc[box.input_id, "width"]), int(sizes.loc[box.input_id, "height"])
        x, y = box.x1 * width, box.y1 * height
        w, h = (box.x2 - box.x1) * width, (box.y2 - box.y1) * height
        segmentation = ([[round(v * (width if i % 2 == 0 else height), 2) for i, v in enumerate(box.polygon)]]
                        if has_polygon(box) else [])
        annotations.append({"id": number, "image_id": image_ids[box.input_id], "category_id": category[box.concept],
                            "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                            "area": round(w * h, 2), "iscrowd": 0, "segmentation": segmentation})
    document: dict[str, Any] = {"info": {"description": "autoannotate dataset version"}, "images": images,
                                "annotations": annotations, "categories": categories}
    if concepts is not None:
        document["image_concepts"] = sorted(set(concepts["concept"]))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(document, indent=1))
    counts = {"images": len(images), "annotations": len(annotations),
              "image_concepts": 0 if image_concepts is None else len(image_concepts)}
    if ratios is None:
        return counts
    group = dict(zip(inputs["input_id"], inputs["split_group"], strict=True))
    split_by_id = {image_ids[i]: split_of(group[i], *ratios) for i in image_ids}
    for split in SPLITS:
        part = {**document, "images": [i for i in images if split_by_id[i["id"]] == split],
                "annotations": [a for a in annotations if split_by_id[a["image_id"]] == split]}
        out_file.with_name(f"{out_file.stem}_{split}.json").write_text(json.dumps(part, indent=1))
        counts[split] = len(part["images"])
    return counts


def read_coco(path: Path) -> list[LabelBox]:
    """Boxes of a COCO JSON; images are found next to it or in its images/ folder. Read in one pass: the line of
    each annotation (for the error sentences) comes from one scan of the text."""
    if not path.is_file():
        raise fail(path, None, "not found; a COCO import needs the annotations JSON file")
    text = path.read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise fail(path, error.lineno, f"not valid JSON ({error.msg})") from None
    _check_coco_shape(path, document)
    categories = {c["id"]: c["name"] for c in document.get("categories", [])}
    images = {i["id"]: i for i in document.get("images", [])}
    lines = _json_lines(text)
    found: dict[str, Path] = {}  # file_name -> the image: looked up once, not once per annotation
    boxes = []
    for number, annotation in enumerate(document.get("annotations", []), start=1):
        line = lines.get(str(annotation.get("id")), number)
        if annotation.get("category_id") not in categories:
            raise fail(path, line, f"annotation {annotation.get('id')}: unknown category_id "
                                   f"{annotation.get('category_id')!r}")
        image = images.get(annotation.get("image_id"))
        if image is None:
            raise fail(path, line, f"annotation {annotation.get('id')}: unknown image_id "
                                   f"{annotation.get('image_id')!r}")
        try:
            x, y, w, h = (float(v) for v in annotation["bbox"])
        except (KeyError, TypeError, ValueError):
            raise fail(path, line, f"annotation {annotation.get('id')}: bbox must be 4 numbers [x, y, w, h]") \
                from None
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
            raise fail(path, line, f"annotation {annotation.get('id')}: bbox {annotation['bbox']} needs finite "
                                   "numbers and a width and height above 0")
        width, height = positive_size(path, line, image.get("width"), image.get("height"),
                                      f"image {image.get('id')!r}")
        box = checked_box(path, line, x / width, y / height, (x + w) / width, (y + h) / height)
        score = annotation.get("score")  # a COCO results file's detections carry one
        if score is not None and not (isinstance(score, int | float) and 0 <= score <= 1):
            raise fail(path, line, f"annotation {annotation.get('id')}: score {score!r} is not between 0 and 1")
        if image["file_name"] not in found:
            found[image["file_name"]] = _coco_image(path, image["file_name"], line)
        boxes.append(LabelBox(found[image["file_name"]], categories[annotation["category_id"]],
                              *box[:4], clipped_at=box[4], confidence=None if score is None else float(score),
                              declared_size=(width, height), declared_in=f"{path}:{line}"))
    return boxes


def _is_id(value: object) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _check_coco_shape(path: Path, document: object) -> None:
    """The parts of a COCO document the reader relies on: lists of objects, ids that are numbers or texts, file and
    category names that are texts; the first thing out of shape is one sentence."""
    if not isinstance(document, dict):
        raise fail(path, None, "is not a COCO document (a JSON object with images, annotations, categories)")
    shapes: tuple[tuple[str, dict[str, Callable[[object], bool]]], ...] = (
        ("images", {"id": _is_id, "file_name": _is_name}), ("categories", {"id": _is_id, "name": _is_name}),
        ("annotations", {}))
    for key, fields in shapes:
        items = document.get(key, [])
        if not isinstance(items, list):
            raise fail(path, None, f"{key!r} must be a list")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise fail(path, None, f"{key}[{index}] is not an object")
            for field, valid in fields.items():
                if not valid(item.get(field)):
                    raise fail(path, None, f"{key}[{index}].{field} {item.get(field)!r} is not "
                                           + ("an id (a number or a text)" if valid is _is_id else "a name"))
        if key == "annotations":
            for index, item in enumerate(items):
                for field in ("id", "image_id", "category_id"):
                    if item.get(field) is not None and not _is_id(item.get(field)):
                        raise fail(path, None, f"annotations[{index}].{field} {item.get(field)!r} is not an id "
                                               "(a number or a text)")


def _json_lines(text: str) -> dict[str, int]:
    """Annotation id -> the line of its `"id": N` in the JSON text (the first after `"annotations"`), found in one
    scan: a search per annotation made a 100 000-annotation file quadratic."""
    start = max(text.find('"annotations"'), 0)
    found: dict[str, int] = {}
    line, position = text.count("\n", 0, start) + 1, start
    for match in re.finditer(r'"id"\s*:\s*(-?[\w.]+)', text[start:]):
        at = start + match.start()
        line += text.count("\n", position, at)
        position = at
        found.setdefault(match.group(1), line)
    return found


def _coco_image(path: Path, file_name: str, line: int) -> Path:
    candidates = [inside_dataset(path.parent, folder / file_name, path, line) for folder in (path.parent,
                                                                                     path.parent / "images")]
    return existing_file(candidates, path, line, f"image {file_name!r}")



def listed_coco(path: Path) -> list[Path]:
    """Every image the file lists that is on disk (a COCO file may list a subset that was not downloaded)."""
    document = json.loads(path.read_text())
    places = [(folder / image["file_name"]) for image in document.get("images", [])
              for folder in (path.parent, path.parent / "images")]
    return [inside_dataset(path.parent, place, path, None) for place in places if place.is_file()]


def write_coco_dataset(request: ExportRequest, folder: Path) -> Written:
    """Every image of the version in images/, and annotations.json (plus one file per split)."""
    inputs = request.inputs
    (folder / "images").mkdir()
    for info in inputs.itertuples():
        place_image(request.stored_image(info.input_id), folder / "images" / info.file_name, request.longest_side,
                    request.link)
    # COCO's boxes are in pixels: of the images as exported.
    exported = [resized(w, h, request.longest_side) for w, h in zip(inputs["width"], inputs["height"], strict=True)]
    sized = inputs.assign(width=[w for w, _ in exported], height=[h for _, h in exported])
    counts = write_coco(request.boxes, sized, folder / "annotations.json", request.names,
                        image_concepts=request.concepts, ratios=request.ratios)
    return Written(counts, "annotations.json", "coco")


COCO = LabelFormat("coco", Kind.BOX, "COCO detection JSON (image-level concepts listed on each image)",
                   read=read_coco, listed=listed_coco, write=write_coco_dataset)
