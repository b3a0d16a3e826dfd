"""Ultralytics YOLO: detection (`yolo`) and segmentation (`yolo-seg`) datasets, in and out. A dataset is data.yaml
and the images its splits name; labels sit where Ultralytics looks for them (the last images/ of a path becomes
labels/)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from core.annotations import Kind
from core.formats.base import (
    ExportRequest,
    LabelBox,
    LabelFormat,
    Written,
    checked_box,
    existing_file,
    fail,
    has_polygon,
    inside_dataset,
    walked_images,
)
from core.formats.images import place_image
from core.manifests import SPLITS, split_of


def yolo_data(root: Path) -> tuple[list[str], Path, list[str | list[Any]]]:
    """Class names, dataset folder and image sources of a YOLO dataset's data.yaml (Ultralytics' layout: `path`
    relative to the file's folder, `train`/`val`/`test` each a folder, a text file listing images, or a list)."""
    data = root / "data.yaml"
    if not data.is_file():
        raise fail(data, None, "not found; a YOLO import needs data.yaml for its class names")
    config = yaml.safe_load(data.read_text()) or {}
    names = config.get("names")
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names)]
    elif isinstance(names, list) and names:
        names = [str(n) for n in names]
    else:
        raise fail(data, None, "has no 'names' (a list or an id -> name mapping)")
    folder = inside_dataset(root, root / str(config.get("path") or "."), data, None).resolve()
    splits = [config[key] for key in ("train", "val", "test") if config.get(key)]
    return names, folder, splits or ["images"]


def yolo_images(data: Path, folder: Path, splits: list[Any]) -> list[Path]:
    """Every image the splits name, each once, in a stable order."""
    found: dict[Path, None] = {}
    for source in (item for split in splits for item in (split if isinstance(split, list) else [split])):
        place = inside_dataset(folder, folder / str(source), data, None)
        if place.is_dir():
            found.update(dict.fromkeys(walked_images(folder, place)))
        elif place.suffix == ".txt" and place.is_file():
            for number, entry in enumerate(place.read_text().splitlines(), start=1):
                if entry.strip():
                    image = inside_dataset(folder, folder / entry.strip(), place, number)
                    found[existing_file([image], place, number, f"image {entry.strip()}")] = None
        else:
            raise fail(data, None, f"split {source!r} is neither a folder nor a list of images under {folder}")
    return list(found)


def label_path(image: Path) -> Path:
    parts = list(image.parts)
    if "images" not in parts:
        return image.with_suffix(".txt")  # no images/ folder: labels sit beside the images
    index = len(parts) - 1 - parts[::-1].index("images")  # Ultralytics: the last /images/ becomes /labels/
    parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_yolo(root: Path) -> list[LabelBox]:
    """Every box of a YOLO detection (or segmentation) dataset: data.yaml and the images its splits name,
    labels where Ultralytics looks for them (the last images/ of the path becomes labels/)."""
    names, folder, splits = yolo_data(root)
    images = yolo_images(root / "data.yaml", folder, splits)
    labels = [(image, label_path(image)) for image in images]
    if not any(label.exists() for _, label in labels):
        raise fail(root / "data.yaml", None, f"no label files found for its {len(images)} images (looked for "
                                              "labels/ beside each images/ folder, and .txt files beside the images)")
    boxes = []
    for image, label in labels:
        if not label.exists():
            continue  # an image without a label file has no objects, as in Ultralytics
        for number, text in enumerate(label.read_text().splitlines(), start=1):
            if not text.strip():
                continue
            fields = text.split()
            try:
                values = [float(v) for v in fields]
            except ValueError:
                bad = next(v for v in fields if not _is_number(v))
                raise fail(label, number, f"{bad!r} is not a number") from None
            if not all(math.isfinite(v) for v in values):
                bad = next(f for f, v in zip(fields, values, strict=True) if not math.isfinite(v))
                raise fail(label, number, f"{bad!r} is not a finite number")
            if not values[0].is_integer() or not 0 <= values[0] < len(names):
                raise fail(label, number, f"class id {fields[0]} is not one of data.yaml's names "
                                          f"(0 to {len(names) - 1})")
            concept = names[int(values[0])]
            # Ultralytics' `save_conf` appends the confidence: 6 values for a box, an even count for a polygon.
            confidence = values.pop() if len(values) == 6 or (len(values) >= 8 and len(values) % 2 == 0) else None
            if confidence is not None and not 0 <= confidence <= 1:
                raise fail(label, number, f"confidence {fields[-1]} is not between 0 and 1")
            if len(values) == 5:
                cx, cy, w, h = values[1:]
                if w <= 0 or h <= 0:
                    raise fail(label, number, f"box width and height must be above 0, got {w:g} x {h:g}")
                box = checked_box(label, number, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                boxes.append(LabelBox(image, concept, *box[:4], clipped_at=box[4], confidence=confidence))
            elif len(values) >= 7 and len(values) % 2 == 1:
                xs, ys = values[1::2], values[2::2]
                box = checked_box(label, number, min(xs), min(ys), max(xs), max(ys))
                boxes.append(LabelBox(image, concept, *box[:4], polygon=tuple(values[1:]), clipped_at=box[4],
                                      confidence=confidence))
            else:
                raise fail(label, number, f"expected 'class cx cy w h [conf]' or a polygon, got {len(fields)} "
                                          "values")
    return boxes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def yolo_label_line(class_id: int, box: Any, segments: bool) -> str:
    """One Ultralytics label line: `class cx cy w h`, or for a segmentation dataset `class x0 y0 x1 y1 ...` (the
    polygon; a box without one becomes its four corners, since Ultralytics drops every polygon of a dataset
    whose labels mix boxes and polygons)."""
    if not segments:
        cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
        return f"{class_id} {cx:.6f} {cy:.6f} {box.x2 - box.x1:.6f} {box.y2 - box.y1:.6f}"
    points = box.polygon if has_polygon(box) else (box.x1, box.y1, box.x2, box.y1, box.x2, box.y2, box.x1, box.y2)
    return f"{class_id} " + " ".join(f"{v:.6f}" for v in points)


def write_yolo(rows: pd.DataFrame, inputs: pd.DataFrame, stored_image: Callable[[str], Path], out: Path,
               names: list[str],
               ratios: tuple[float, float], segments: bool = False, longest_side: int = 0,
               link: str = "copy") -> dict[str, Any]:
    """An Ultralytics detection (or, with `segments`, segmentation) dataset: images/{train,val,test},
    labels/{train,val,test}, data.yaml.

    `rows`: accepted annotations (input_id, concept, x1..y2, polygon); `inputs`: input_id, width, height, format,
    file_name (`export_file_name`), split_group; an input without rows is a negative image (an empty label file).
    `stored_image(input_id) -> Path` of the stored original; `ratios`: the val and test shares (by group hash).
    Images are placed as `place_image` does (`link`)."""
    index = {name: i for i, name in enumerate(names)}
    counts = dict.fromkeys(SPLITS, 0)
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    by_input = dict(tuple(rows.groupby("input_id"))) if len(rows) else {}
    for info in inputs.itertuples():
        split = split_of(info.split_group, *ratios)
        counts[split] += 1
        place_image(stored_image(info.input_id), out / "images" / split / info.file_name, longest_side, link)
        boxes = by_input.get(info.input_id)
        lines = [] if boxes is None else [yolo_label_line(index[box.concept], box, segments)
                                          for box in boxes.itertuples()]
        (out / "labels" / split / f"{Path(info.file_name).stem}.txt").write_text(
            "".join(line + "\n" for line in sorted(lines)))
    # No `path`: Ultralytics then reads the splits beside data.yaml, so a copied or moved export still trains.
    (out / "data.yaml").write_text(yaml.safe_dump(
        {**{split: f"images/{split}" for split in SPLITS}, "names": dict(enumerate(names))}, sort_keys=False))
    return counts



def listed_yolo(root: Path) -> list[Path]:
    """Every image the dataset's splits name, with a label file or not."""
    return yolo_images(root / "data.yaml", *yolo_data(root)[1:])


def write_yolo_dataset(request: ExportRequest, folder: Path, segments: bool = False) -> Written:
    """The version's labelled images and the negatives it takes, as an Ultralytics dataset; segmentation labels
    when `segments` or when any box has a polygon (Ultralytics reads a dataset's labels all one way)."""
    boxes = request.boxes
    segments = segments or any(has_polygon(box) for box in boxes.itertuples())
    taken = request.inputs[request.inputs["input_id"].isin(set(boxes["input_id"]) | request.negatives)]
    counts = {"annotations": len(boxes)} | write_yolo(boxes, taken, request.stored_image, folder, request.names,
                                                      request.ratios, segments, request.longest_side, request.link)
    return Written(counts, "data.yaml", "segment" if segments else "detect", frozenset(taken["input_id"]))


YOLO = LabelFormat("yolo", Kind.BOX, "Ultralytics detection dataset (segmentation when a box has a polygon)",
                   read=read_yolo, listed=listed_yolo, write=write_yolo_dataset)
YOLO_SEG = LabelFormat("yolo-seg", Kind.BOX, "Ultralytics segmentation dataset (a box without a polygon: its "
                       "corners)", write=partial(write_yolo_dataset, segments=True))
