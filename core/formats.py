"""Label formats in and out: Ultralytics YOLO, COCO JSON, Pascal VOC; pure functions, no database.

Boxes inside autoannotate are normalised (x1, y1, x2, y2) in [0, 1] in the image as
ingestion oriented it (EXIF applied). Every reader checks every line and reports the
file and line of the first mistake; nothing is returned half-parsed.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import defusedxml
import defusedxml.ElementTree as SafeET
import pandas as pd
import yaml
from PIL import Image

from core.image_checks import SUPPORTED_SUFFIXES
from core.manifests import SPLITS, split_of

EPSILON = 1e-6


class LabelFormatError(ValueError):
    """A label file is malformed; the message starts with `file:line:`."""


@dataclass(frozen=True)
class LabelBox:
    image: Path
    concept: str
    x1: float
    y1: float
    x2: float
    y2: float
    polygon: tuple[float, ...] | None = None
    clipped_at: str | None = None  # "file:line" when the label's box reached outside the image and was clipped
    kind: str = "box"  # "concept": a concept of the whole image (its box is the whole image)
    confidence: float | None = None  # a model's score, when the file carries one (suggestions keep it)
    declared_size: tuple[float, float] | None = None  # (width, height) the file says the image has (COCO, VOC)
    declared_in: str | None = None  # where it says so ("file", "file:line")


def concept_label(image: Path, concept: str) -> LabelBox:
    """An image-level concept label: the whole image."""
    return LabelBox(image, concept, 0.0, 0.0, 1.0, 1.0, kind="concept")


def _fail(path: Path, line: int | None, message: str) -> LabelFormatError:
    return LabelFormatError(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def _checked_box(path: Path, line: int | None, x1: float, y1: float, x2: float, y2: float
                 ) -> tuple[float, float, float, float, str | None]:
    """The box clipped to the image, and where it was when clipping changed it. Published datasets often
    reach a pixel past the border; a box with nothing inside the image is refused, and so is one whose numbers
    are not finite (`inf`, `nan`, `1e308` overflowing): it would be clipped to the image edge, not refused."""
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise _fail(path, line, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is not made of finite numbers")
    if min(x1, y1) < -1 or max(x2, y2) > 2:
        raise _fail(path, line, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) reaches more than a whole image past the "
                                "border (coordinates are relative to the image); refused, not clipped")
    if not (x1 < x2 and y1 < y2):
        raise _fail(path, line, f"empty box ({x1:g}, {y1:g}, {x2:g}, {y2:g}): x1 < x2 and y1 < y2 is needed")
    clipped = tuple(min(1.0, max(0.0, v)) for v in (x1, y1, x2, y2))
    if not (clipped[0] < clipped[2] and clipped[1] < clipped[3]):
        raise _fail(path, line, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies entirely outside the image")
    moved = min(x1, y1) < -EPSILON or max(x2, y2) > 1 + EPSILON
    return (*clipped, f"{path}:{line}" if line else str(path)) if moved else (*clipped, None)


def _inside(root: Path, path: Path, named_in: Path, line: int | None) -> Path:
    """`path` when it lies inside the dataset folder `root`, symlinks resolved; a label naming a file elsewhere, or
    a link pointing out of the dataset, is refused."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise _fail(named_in, line, f"names {path}, which lies outside the dataset folder {root}; refused")
    return path


def _walked(root: Path, folder: Path) -> list[Path]:
    """The image files under `folder`, each checked to lie inside the dataset `root` once links are resolved (a
    symlink found by walking is followed only to a file inside the dataset)."""
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES)
    return [_inside(root, p, p, None) for p in found]


def _positive_size(named_in: Path, line: int | None, width: object, height: object, what: str
                   ) -> tuple[float, float]:
    """An image size a label file declares: two finite numbers above 0 (a width of 0 would divide by zero)."""
    try:
        size = float(width), float(height)
    except (TypeError, ValueError):
        raise _fail(named_in, line, f"{what}: width and height must be numbers") from None
    if not all(math.isfinite(v) and v > 0 for v in size):
        raise _fail(named_in, line, f"{what}: size {width} x {height} is not two finite numbers above 0")
    return size


def _existing(candidates: list[Path], named_in: Path, line: int | None, what: str) -> Path:
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise _fail(named_in, line, f"{what} does not exist; looked for " + ", ".join(map(str, candidates)))


# ---------------------------------------------------------------- YOLO


def yolo_data(root: Path) -> tuple[list[str], Path, list[str | list]]:
    """Class names, dataset folder and image sources of a YOLO dataset's data.yaml (Ultralytics' layout: `path`
    relative to the file's folder, `train`/`val`/`test` each a folder, a text file listing images, or a list)."""
    data = root / "data.yaml"
    if not data.is_file():
        raise _fail(data, None, "not found; a YOLO import needs data.yaml for its class names")
    config = yaml.safe_load(data.read_text()) or {}
    names = config.get("names")
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names)]
    elif isinstance(names, list) and names:
        names = [str(n) for n in names]
    else:
        raise _fail(data, None, "has no 'names' (a list or an id -> name mapping)")
    folder = _inside(root, root / str(config.get("path") or "."), data, None).resolve()
    splits = [config[key] for key in ("train", "val", "test") if config.get(key)]
    return names, folder, splits or ["images"]


def yolo_images(data: Path, folder: Path, splits: list) -> list[Path]:
    """Every image the splits name, each once, in a stable order."""
    found: dict[Path, None] = {}
    for source in (item for split in splits for item in (split if isinstance(split, list) else [split])):
        place = _inside(folder, folder / str(source), data, None)
        if place.is_dir():
            found.update(dict.fromkeys(_walked(folder, place)))
        elif place.suffix == ".txt" and place.is_file():
            for number, entry in enumerate(place.read_text().splitlines(), start=1):
                if entry.strip():
                    image = _inside(folder, folder / entry.strip(), place, number)
                    found[_existing([image], place, number, f"image {entry.strip()}")] = None
        else:
            raise _fail(data, None, f"split {source!r} is neither a folder nor a list of images under {folder}")
    return list(found)


def _label_path(image: Path) -> Path:
    parts = list(image.parts)
    if "images" not in parts:
        return image.with_suffix(".txt")  # no images/ folder: labels sit beside the images
    index = len(parts) - 1 - parts[::-1].index("images")  # Ultralytics: the last /images/ becomes /labels/
    parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def listed_images(fmt: str, path: Path) -> list[Path]:
    """Every image a YOLO or COCO dataset or a concepts CSV lists, with labels or not (an image without labels is
    one a person looked at and found nothing on); other formats list only labelled images. A COCO file may list
    images that are not on disk (a subset was downloaded): only those found count."""
    if fmt == "yolo":
        return yolo_images(path / "data.yaml", *yolo_data(path)[1:])
    if fmt == "coco":
        document = json.loads(path.read_text())
        places = [(folder / image["file_name"]) for image in document.get("images", [])
                  for folder in (path.parent, path.parent / "images")]
        return [_inside(path.parent, place, path, None) for place in places if place.is_file()]
    if fmt == "concepts-csv":
        return [image for image, _ in concept_csv_rows(path)]
    return []


def read_yolo(root: Path) -> list[LabelBox]:
    """Every box of a YOLO detection (or segmentation) dataset: data.yaml and the images its splits name,
    labels where Ultralytics looks for them (the last images/ of the path becomes labels/)."""
    names, folder, splits = yolo_data(root)
    images = yolo_images(root / "data.yaml", folder, splits)
    labels = [(image, _label_path(image)) for image in images]
    if not any(label.exists() for _, label in labels):
        raise _fail(root / "data.yaml", None, f"no label files found for its {len(images)} images (looked for "
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
                raise _fail(label, number, f"{bad!r} is not a number") from None
            if not all(math.isfinite(v) for v in values):
                bad = next(f for f, v in zip(fields, values, strict=True) if not math.isfinite(v))
                raise _fail(label, number, f"{bad!r} is not a finite number")
            if not values[0].is_integer() or not 0 <= values[0] < len(names):
                raise _fail(label, number, f"class id {fields[0]} is not one of data.yaml's names "
                                           f"(0 to {len(names) - 1})")
            concept = names[int(values[0])]
            # Ultralytics' `save_conf` appends the confidence: 6 values for a box, an even count for a polygon.
            confidence = values.pop() if len(values) == 6 or (len(values) >= 8 and len(values) % 2 == 0) else None
            if confidence is not None and not 0 <= confidence <= 1:
                raise _fail(label, number, f"confidence {fields[-1]} is not between 0 and 1")
            if len(values) == 5:
                cx, cy, w, h = values[1:]
                if w <= 0 or h <= 0:
                    raise _fail(label, number, f"box width and height must be above 0, got {w:g} x {h:g}")
                box = _checked_box(label, number, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                boxes.append(LabelBox(image, concept, *box[:4], clipped_at=box[4], confidence=confidence))
            elif len(values) >= 7 and len(values) % 2 == 1:
                xs, ys = values[1::2], values[2::2]
                box = _checked_box(label, number, min(xs), min(ys), max(xs), max(ys))
                boxes.append(LabelBox(image, concept, *box[:4], polygon=tuple(values[1:]), clipped_at=box[4],
                                      confidence=confidence))
            else:
                raise _fail(label, number, f"expected 'class cx cy w h [conf]' or a polygon, got {len(fields)} "
                                           "values")
    return boxes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def yolo_label_line(class_id: int, box: object, segments: bool) -> str:
    """One Ultralytics label line: `class cx cy w h`, or for a segmentation dataset `class x0 y0 x1 y1 ...` (the
    polygon; a box without one becomes its four corners, since Ultralytics drops every polygon of a dataset
    whose labels mix boxes and polygons)."""
    if not segments:
        cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
        return f"{class_id} {cx:.6f} {cy:.6f} {box.x2 - box.x1:.6f} {box.y2 - box.y1:.6f}"
    points = box.polygon if has_polygon(box) else (box.x1, box.y1, box.x2, box.y1, box.x2, box.y2, box.x1, box.y2)
    return f"{class_id} " + " ".join(f"{v:.6f}" for v in points)


def has_polygon(box: object) -> bool:
    polygon = getattr(box, "polygon", None)
    return hasattr(polygon, "__len__") and len(polygon) >= 6


def write_yolo(rows: pd.DataFrame, inputs: pd.DataFrame, stored_image, out: Path, names: list[str],
               ratios: tuple[float, float], segments: bool = False, longest_side: int = 0,
               link: str = "hardlink") -> dict:
    """An Ultralytics detection (or, with `segments`, segmentation) dataset: images/{train,val,test},
    labels/{train,val,test}, data.yaml.

    `rows`: accepted annotations (input_id, concept, x1..y2, polygon); `inputs`: input_id, width, height, format,
    file_name (`export_file_name`); an input without rows is a negative image (an empty label file).
    `stored_image(input_id) -> Path` of the stored original; `ratios`: the val and test shares (by input hash).
    Images are placed as `place_image` does (`link`)."""
    index = {name: i for i, name in enumerate(names)}
    counts = dict.fromkeys(SPLITS, 0)
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    by_input = dict(tuple(rows.groupby("input_id"))) if len(rows) else {}
    for info in inputs.itertuples():
        split = split_of(info.input_id, *ratios)
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


LINK_MODES = ("hardlink", "copy", "symlink")


def export_file_name(uri: str, input_id: str, fmt: str) -> str:
    """An exported image's file name: the stem of the file it came from (made safe for any filesystem) and the
    first 12 hex digits of its content hash, so a person can tell which photo it is and no two images share one."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(uri).stem).strip("._")[:80] or "image"
    return f"{stem}-{input_id[:12]}{image_suffix(fmt)}"


def image_suffix(fmt: str) -> str:
    return {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}[fmt]


def resized(width: int, height: int, longest_side: int) -> tuple[int, int]:
    """The size an image of width x height has once its longest side is at most `longest_side` (0: as it is;
    never enlarged)."""
    if not longest_side or max(width, height) <= longest_side:
        return width, height
    scale = longest_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def place_image(source: Path, target: Path, longest_side: int = 0, link: str = "hardlink") -> None:
    """The stored image at `target`: a real file as it is (`link` hardlink where the filesystem allows, a copy
    otherwise; or a symlink when asked for), or written upright when its EXIF rotates it (the boxes were computed
    on the upright pixels), or resized to `longest_side` when it is larger."""
    if target.exists() or target.is_symlink():
        target.unlink()
    with Image.open(source) as image:
        orientation = image.getexif().get(0x0112, 1)
        size = image.size if orientation in (0, 1, 2, 3, 4) else image.size[::-1]
        if orientation not in (0, 1) or resized(*size, longest_side) != size:
            from PIL import ImageOps

            upright = ImageOps.exif_transpose(image)
            if resized(*size, longest_side) != size:
                upright = upright.resize(resized(*size, longest_side), Image.Resampling.LANCZOS)
            upright.save(target, quality=95) if target.suffix == ".jpg" else upright.save(target)
            return
    try:
        if link == "copy":
            shutil.copyfile(source, target)
        else:
            (os.symlink if link == "symlink" else os.link)(source, target)
    except OSError:  # another filesystem: a copy
        shutil.copyfile(source, target)


# ---------------------------------------------------------------- COCO


def concepts_per_image(concepts: pd.DataFrame) -> pd.Series:
    """input_id -> the sorted, distinct concepts of that image (`concepts`: input_id, concept rows)."""
    return concepts.groupby("input_id")["concept"].agg(lambda c: sorted(set(c)))


def write_classify(concepts: pd.DataFrame, inputs: pd.DataFrame, stored_image, out: Path, names: list[str],
                   ratios: tuple[float, float], longest_side: int = 0, link: str = "hardlink") -> dict:
    """An Ultralytics classification dataset: {train,val,test}/<concept>/<image>, one folder per concept in every
    split.

    `concepts`: each image's accepted image-level concepts (input_id, concept). The layout holds one concept per
    image, so an image with two is refused (one sentence naming it) before anything is written; images without a
    concept are left out and counted."""
    per_image = concepts_per_image(concepts)
    several = per_image[per_image.map(len) > 1]
    if len(several):
        raise ValueError(f"{len(several)} image(s) have more than one accepted concept (e.g. input {several.index[0]}: "
                         f"{', '.join(several.iloc[0])}); the classify layout holds one concept per image, so export "
                         "this multi-label version as coco instead.")
    counts = {**dict.fromkeys(SPLITS, 0), "without_concept": 0}
    for split in SPLITS:
        for name in names:
            (out / split / name).mkdir(parents=True, exist_ok=True)
    for info in inputs.itertuples():
        if info.input_id not in per_image.index:
            counts["without_concept"] += 1
            continue
        split = split_of(info.input_id, *ratios)
        counts[split] += 1
        place_image(stored_image(info.input_id), out / split / per_image[info.input_id][0] / info.file_name,
                    longest_side, link)
    return counts


def write_coco(rows: pd.DataFrame, inputs: pd.DataFrame, out_file: Path, names: list[str],
               image_concepts: pd.DataFrame | None = None, ratios: tuple[float, float] | None = None) -> dict:
    """A COCO detection JSON (`inputs`: input_id, width, height, file_name); bbox is [x, y, w, h] in pixels of the
    oriented image. Image-level concepts
    (`image_concepts`: input_id, concept) are listed on each image as `concepts`, an attribute pycocotools and
    COCO evaluation ignore: an annotation without a box would break both. With `ratios` (val, test), also one
    file per split beside it (`<name>_train.json`, ...): the same images and ids, split by input hash like every
    other export, for trainers that read a COCO file per split."""
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(names)]
    category = {n: i + 1 for i, n in enumerate(names)}
    image_ids = {input_id: i + 1 for i, input_id in enumerate(sorted(inputs["input_id"]))}
    sizes = inputs.set_index("input_id")[["width", "height", "file_name"]]
    images = [{"id": image_ids[i], "file_name": sizes.loc[i, "file_name"],
               "width": int(sizes.loc[i, "width"]), "height": int(sizes.loc[i, "height"])} for i in image_ids]
    has_concepts = image_concepts is not None and len(image_concepts) > 0
    if has_concepts:
        held = concepts_per_image(image_concepts)
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
    document = {"info": {"description": "autoannotate dataset version"}, "images": images,
                "annotations": annotations, "categories": categories}
    if has_concepts:
        document["image_concepts"] = sorted(set(image_concepts["concept"]))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(document, indent=1))
    counts = {"images": len(images), "annotations": len(annotations),
              "image_concepts": 0 if image_concepts is None else len(image_concepts)}
    if ratios is None:
        return counts
    split_by_id = {image_ids[i]: split_of(i, *ratios) for i in image_ids}
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
        raise _fail(path, None, "not found; a COCO import needs the annotations JSON file")
    text = path.read_text()
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise _fail(path, error.lineno, f"not valid JSON ({error.msg})") from None
    _check_coco_shape(path, document)
    categories = {c["id"]: c["name"] for c in document.get("categories", [])}
    images = {i["id"]: i for i in document.get("images", [])}
    lines = _json_lines(text)
    found: dict[str, Path] = {}  # file_name -> the image: looked up once, not once per annotation
    boxes = []
    for number, annotation in enumerate(document.get("annotations", []), start=1):
        line = lines.get(str(annotation.get("id")), number)
        if annotation.get("category_id") not in categories:
            raise _fail(path, line, f"annotation {annotation.get('id')}: unknown category_id "
                                    f"{annotation.get('category_id')!r}")
        image = images.get(annotation.get("image_id"))
        if image is None:
            raise _fail(path, line, f"annotation {annotation.get('id')}: unknown image_id "
                                    f"{annotation.get('image_id')!r}")
        try:
            x, y, w, h = (float(v) for v in annotation["bbox"])
        except (KeyError, TypeError, ValueError):
            raise _fail(path, line, f"annotation {annotation.get('id')}: bbox must be 4 numbers [x, y, w, h]") \
                from None
        if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
            raise _fail(path, line, f"annotation {annotation.get('id')}: bbox {annotation['bbox']} needs finite "
                                    "numbers and a width and height above 0")
        width, height = _positive_size(path, line, image.get("width"), image.get("height"),
                                       f"image {image.get('id')!r}")
        box = _checked_box(path, line, x / width, y / height, (x + w) / width, (y + h) / height)
        score = annotation.get("score")  # a COCO results file's detections carry one
        if score is not None and not (isinstance(score, int | float) and 0 <= score <= 1):
            raise _fail(path, line, f"annotation {annotation.get('id')}: score {score!r} is not between 0 and 1")
        if image["file_name"] not in found:
            found[image["file_name"]] = _coco_image(path, image["file_name"], line)
        boxes.append(LabelBox(found[image["file_name"]], categories[annotation["category_id"]],
                              *box[:4], clipped_at=box[4], confidence=None if score is None else float(score),
                              declared_size=(width, height), declared_in=f"{path}:{line}"))
    return boxes


def _is_id(value: object) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _check_coco_shape(path: Path, document: object) -> None:
    """The parts of a COCO document the reader relies on: lists of objects, ids that are numbers or texts, file and
    category names that are texts; the first thing out of shape is one sentence."""
    if not isinstance(document, dict):
        raise _fail(path, None, "is not a COCO document (a JSON object with images, annotations, categories)")
    for key, fields in (("images", {"id": _is_id, "file_name": lambda v: isinstance(v, str) and v}),
                        ("categories", {"id": _is_id, "name": lambda v: isinstance(v, str) and v}),
                        ("annotations", {})):
        items = document.get(key, [])
        if not isinstance(items, list):
            raise _fail(path, None, f"{key!r} must be a list")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise _fail(path, None, f"{key}[{index}] is not an object")
            for field, valid in fields.items():
                if not valid(item.get(field)):
                    raise _fail(path, None, f"{key}[{index}].{field} {item.get(field)!r} is not "
                                            + ("an id (a number or a text)" if valid is _is_id else "a name"))
        if key == "annotations":
            for index, item in enumerate(items):
                for field in ("id", "image_id", "category_id"):
                    if item.get(field) is not None and not _is_id(item.get(field)):
                        raise _fail(path, None, f"annotations[{index}].{field} {item.get(field)!r} is not an id "
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
    candidates = [_inside(path.parent, folder / file_name, path, line) for folder in (path.parent,
                                                                                     path.parent / "images")]
    return _existing(candidates, path, line, f"image {file_name!r}")


# ---------------------------------------------------------------- Pascal VOC


VOC_LABEL_FOLDERS = ("Annotations", "annotations", ".")
VOC_IMAGE_FOLDERS = ("JPEGImages", "images")


def read_voc(root: Path) -> list[LabelBox]:
    """Boxes of Pascal VOC XML files in Annotations/, annotations/ or the folder itself; images in JPEGImages/,
    images/, beside the XML file or in the folder. XML is parsed without expanding entities."""
    xml_files = next((sorted((root / name).glob("*.xml")) for name in VOC_LABEL_FOLDERS
                      if (root / name).is_dir() and any((root / name).glob("*.xml"))), [])
    if not xml_files:
        raise _fail(root, None, "no Pascal VOC XML files found (looked in " +
                    ", ".join(f"{root / name}" for name in VOC_LABEL_FOLDERS) + ")")
    boxes = []
    for xml_file in xml_files:
        text = xml_file.read_text()
        try:
            document = SafeET.fromstring(text)
        except SafeET.ParseError as error:
            raise _fail(xml_file, error.position[0], f"not valid XML ({error})") from None
        except defusedxml.DefusedXmlException as error:
            raise _fail(xml_file, None, f"refused: the XML declares entities or a DTD ({type(error).__name__})") \
                from None
        width, height = _positive_size(xml_file, None, document.findtext("size/width"),
                                       document.findtext("size/height"), "size")
        image = _voc_image(root, xml_file, document.findtext("filename") or "")
        object_lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"<object\b", text)]
        for number, obj in enumerate(document.findall("object")):
            line = object_lines[number] if number < len(object_lines) else None
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise _fail(xml_file, line, "object without a <name>")
            try:
                x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                raise _fail(xml_file, line, f"object {name!r}: bndbox xmin/ymin/xmax/ymax must be numbers") \
                    from None
            box = _checked_box(xml_file, line, x1 / width, y1 / height, x2 / width, y2 / height)
            boxes.append(LabelBox(image, name, *box[:4], clipped_at=box[4], declared_size=(width, height),
                                  declared_in=str(xml_file)))
    return boxes


def _voc_image(root: Path, xml_file: Path, file_name: str) -> Path:
    folders = [root / name for name in VOC_IMAGE_FOLDERS] + [xml_file.parent, root]
    candidates = list(dict.fromkeys(_inside(root, folder / file_name, xml_file, None) for folder in folders))
    return _existing(candidates, xml_file, None, f"image {file_name!r}")


# ---------------------------------------------------------------- image-level concepts

CLASSIFY_SPLITS = ("train", "val", "test")
CONCEPT_FORMATS = ("concepts-csv", "classify")  # import formats of image-level concepts


def concept_csv_rows(path: Path) -> list[tuple[Path, str]]:
    """(image, concept) of each `file,concept` row (a header row `file,concept` is allowed; one row per concept of
    an image; an empty concept: the image has none of the task's concepts); files are relative to the CSV's
    folder."""
    import csv

    rows = []
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), 1):
            if not row or (line == 1 and [c.strip().lower() for c in row] == ["file", "concept"]):
                continue
            if len(row) != 2 or not row[0].strip():
                raise _fail(path, line, f"expected two fields `file,concept` (the concept empty for an image with "
                                        f"none), got {','.join(row)!r}")
            image = _inside(path.parent, path.parent / row[0].strip(), path, line)
            rows.append((_existing([image], path, line, f"image {row[0].strip()!r}"), row[1].strip()))
    if not rows:
        raise _fail(path, None, "holds no `file,concept` rows")
    return rows


def read_concept_csv(path: Path) -> list[LabelBox]:
    """The image-level concept labels of a concepts CSV (`concept_csv_rows`); rows with an empty concept are
    images with none, which `listed_images` names."""
    return [concept_label(image, concept) for image, concept in concept_csv_rows(path) if concept]


def read_concept_folders(root: Path) -> list[LabelBox]:
    """A folder per concept holding its images (`root/<concept>/*.jpg`), or Ultralytics' classification layout
    with split folders (`root/train/<concept>/...`, `root/val/<concept>/...`)."""
    splits = [root / s for s in CLASSIFY_SPLITS if (root / s).is_dir()]
    labels = []
    for parent in splits or [root]:
        for folder in sorted(p for p in parent.iterdir() if p.is_dir()):
            labels += [concept_label(_inside(root, image, image, None), folder.name) for image in
                       sorted(folder.iterdir()) if image.suffix.lower() in SUPPORTED_SUFFIXES]
    if not labels:
        raise _fail(root, None, "holds no images in concept folders (expected <concept>/<image>, or "
                                "train/<concept>/<image> as Ultralytics' classification datasets have it)")
    return labels
