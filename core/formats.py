"""Label formats in and out: Ultralytics YOLO, COCO JSON, Pascal VOC; pure functions, no database.

Boxes inside autoannotate are normalised (x1, y1, x2, y2) in [0, 1] in the image as
ingestion oriented it (EXIF applied). Every reader checks every line and reports the
file and line of the first mistake; nothing is returned half-parsed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from PIL import Image

from core.image_checks import SUPPORTED_SUFFIXES
from core.manifests import split_of

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


def _fail(path: Path, line: int | None, message: str) -> LabelFormatError:
    return LabelFormatError(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def _checked_box(path: Path, line: int | None, x1: float, y1: float, x2: float, y2: float) -> tuple:
    if not (x1 < x2 and y1 < y2):
        raise _fail(path, line, f"empty box ({x1:g}, {y1:g}, {x2:g}, {y2:g}): x1 < x2 and y1 < y2 is needed")
    if min(x1, y1) < -EPSILON or max(x2, y2) > 1 + EPSILON:
        raise _fail(path, line, "box lies (partly) outside the image")
    return tuple(min(1.0, max(0.0, v)) for v in (x1, y1, x2, y2))


# ---------------------------------------------------------------- YOLO


def yolo_names(root: Path) -> list[str]:
    data = root / "data.yaml"
    if not data.is_file():
        raise _fail(data, None, "not found; a YOLO import needs data.yaml for its class names")
    names = (yaml.safe_load(data.read_text()) or {}).get("names")
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names)]
    if isinstance(names, list) and names:
        return [str(n) for n in names]
    raise _fail(data, None, "has no 'names' (a list or an id -> name mapping)")


def _label_path(image: Path) -> Path:
    parts = list(image.parts)
    index = len(parts) - 1 - parts[::-1].index("images")  # Ultralytics: the last /images/ becomes /labels/
    parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_yolo(root: Path) -> list[LabelBox]:
    """Every box of a YOLO detection (or segmentation) dataset: data.yaml, images/..., labels/...."""
    names = yolo_names(root)
    boxes = []
    for image in sorted(p for p in (root / "images").rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES):
        label = _label_path(image)
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
            if not values[0].is_integer() or not 0 <= values[0] < len(names):
                raise _fail(label, number, f"class id {fields[0]} is not one of data.yaml's names "
                                           f"(0 to {len(names) - 1})")
            concept = names[int(values[0])]
            if len(values) == 5:
                cx, cy, w, h = values[1:]
                box = _checked_box(label, number, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                boxes.append(LabelBox(image, concept, *box))
            elif len(values) >= 7 and len(values) % 2 == 1:
                xs, ys = values[1::2], values[2::2]
                box = _checked_box(label, number, min(xs), min(ys), max(xs), max(ys))
                boxes.append(LabelBox(image, concept, *box, polygon=tuple(values[1:])))
            else:
                raise _fail(label, number, f"expected 'class cx cy w h' or a polygon, got {len(values)} values")
    return boxes


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_yolo(rows: pd.DataFrame, inputs: pd.DataFrame, stored_image, out: Path, names: list[str],
               val_ratio: float) -> dict:
    """An Ultralytics detection dataset: images/{train,val}, labels/{train,val}, data.yaml.

    `rows`: accepted annotations (input_id, concept, x1..y2); `inputs`: input_id, width, height, format;
    `stored_image(input_id) -> Path` of the stored original. Images are linked where the filesystem
    allows; an image whose EXIF rotates it is written upright instead, so that its pixels are the ones
    the boxes were computed on.
    """
    index = {name: i for i, name in enumerate(names)}
    counts = {"train": 0, "val": 0}
    for info in inputs.itertuples():
        split = split_of(info.input_id, val_ratio)
        counts[split] += 1
        image_dir, label_dir = out / "images" / split, out / "labels" / split
        image_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        place_image(stored_image(info.input_id), image_dir / f"{info.input_id}{image_suffix(info.format)}")
        lines = []
        for box in rows[rows["input_id"] == info.input_id].itertuples():
            cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
            lines.append(f"{index[box.concept]} {cx:.6f} {cy:.6f} {box.x2 - box.x1:.6f} {box.y2 - box.y1:.6f}")
        (label_dir / f"{info.input_id}.txt").write_text("".join(line + "\n" for line in sorted(lines)))
    (out / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(out.resolve()), "train": "images/train", "val": "images/val",
         "names": dict(enumerate(names))}, sort_keys=False))
    return counts


def image_suffix(fmt: str) -> str:
    return {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}[fmt]


def place_image(source: Path, target: Path) -> None:
    if target.exists() or target.is_symlink():
        target.unlink()
    with Image.open(source) as image:
        orientation = image.getexif().get(0x0112, 1)
        if orientation not in (0, 1):
            from PIL import ImageOps

            upright = ImageOps.exif_transpose(image)
            upright.save(target, quality=95) if target.suffix == ".jpg" else upright.save(target)
            return
    try:
        os.symlink(source, target)
    except OSError:
        shutil.copyfile(source, target)


# ---------------------------------------------------------------- COCO


def write_coco(rows: pd.DataFrame, inputs: pd.DataFrame, out_file: Path, names: list[str],
               image_prefix: str = "") -> dict:
    """A COCO detection JSON; bbox is [x, y, w, h] in pixels of the oriented image."""
    categories = [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(names)]
    category = {n: i + 1 for i, n in enumerate(names)}
    image_ids = {input_id: i + 1 for i, input_id in enumerate(sorted(inputs["input_id"]))}
    sizes = inputs.set_index("input_id")[["width", "height", "format"]]
    images = [{"id": image_ids[i], "file_name": f"{image_prefix}{i}{image_suffix(sizes.loc[i, 'format'])}",
               "width": int(sizes.loc[i, "width"]), "height": int(sizes.loc[i, "height"])} for i in image_ids]
    annotations = []
    ordered = rows.sort_values(["input_id", "concept", "x1", "y1", "x2", "y2"])
    for number, box in enumerate(ordered.itertuples(), start=1):
        width, height = int(sizes.loc[box.input_id, "width"]), int(sizes.loc[box.input_id, "height"])
        x, y = box.x1 * width, box.y1 * height
        w, h = (box.x2 - box.x1) * width, (box.y2 - box.y1) * height
        polygon = getattr(box, "polygon", None)
        has_polygon = hasattr(polygon, "__len__") and len(polygon) >= 6
        segmentation = ([[round(v * (width if i % 2 == 0 else height), 2) for i, v in enumerate(polygon)]]
                        if has_polygon else [])
        annotations.append({"id": number, "image_id": image_ids[box.input_id], "category_id": category[box.concept],
                            "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                            "area": round(w * h, 2), "iscrowd": 0, "segmentation": segmentation})
    document = {"info": {"description": "autoannotate dataset version"}, "images": images,
                "annotations": annotations, "categories": categories}
    out_file.parent.mkdir(parents=True, exist_ok=True)
    out_file.write_text(json.dumps(document, indent=1))
    return {"images": len(images), "annotations": len(annotations)}


def read_coco(path: Path) -> list[LabelBox]:
    """Boxes of a COCO JSON; images are found next to it or in its images/ folder."""
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise _fail(path, error.lineno, f"not valid JSON ({error.msg})") from None
    categories = {c["id"]: c["name"] for c in document.get("categories", [])}
    images = {i["id"]: i for i in document.get("images", [])}
    text = path.read_text()
    boxes = []
    for number, annotation in enumerate(document.get("annotations", []), start=1):
        line = _json_line(text, annotation.get("id"), number)
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
        width, height = float(image["width"]), float(image["height"])
        box = _checked_box(path, line, x / width, y / height, (x + w) / width, (y + h) / height)
        boxes.append(LabelBox(_coco_image(path, image["file_name"]), categories[annotation["category_id"]], *box))
    return boxes


def _json_line(text: str, annotation_id: object, ordinal: int) -> int:
    """The line of an annotation's `"id": N` in the JSON text (the annotations come after images)."""
    start = text.find('"annotations"')
    match = re.compile(rf'"id"\s*:\s*{re.escape(str(annotation_id))}\b').search(text, max(start, 0))
    return text.count("\n", 0, match.start()) + 1 if match else ordinal


def _coco_image(path: Path, file_name: str) -> Path:
    for candidate in (path.parent / file_name, path.parent / "images" / file_name):
        if candidate.exists():
            return candidate
    return path.parent / file_name


# ---------------------------------------------------------------- Pascal VOC


def read_voc(root: Path) -> list[LabelBox]:
    """Boxes of Pascal VOC XML files (Annotations/*.xml or *.xml); images in JPEGImages/ or next to them."""
    folder = root / "Annotations" if (root / "Annotations").is_dir() else root
    boxes = []
    for xml_file in sorted(folder.glob("*.xml")):
        text = xml_file.read_text()
        try:
            document = ET.fromstring(text)
        except ET.ParseError as error:
            raise _fail(xml_file, error.position[0], f"not valid XML ({error})") from None
        try:
            width = float(document.findtext("size/width"))
            height = float(document.findtext("size/height"))
        except (TypeError, ValueError):
            raise _fail(xml_file, None, "size/width and size/height must be numbers") from None
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
            boxes.append(LabelBox(image, name, *box))
    return boxes


def _voc_image(root: Path, xml_file: Path, file_name: str) -> Path:
    for candidate in (root / "JPEGImages" / file_name, xml_file.parent / file_name, root / file_name):
        if candidate.exists():
            return candidate
    return root / "JPEGImages" / file_name

