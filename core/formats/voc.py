"""Pascal VOC XML in: one XML file per image, parsed without expanding entities."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET

from core.annotations import Kind
from core.formats.base import LabelBox, LabelFormat, checked_box, existing_file, fail, inside_dataset, positive_size

VOC_LABEL_FOLDERS = ("Annotations", "annotations", ".")
VOC_IMAGE_FOLDERS = ("JPEGImages", "images")


def voc_documents(root: Path) -> Iterator[tuple[Path, str, Any, Path]]:
    """Each XML file of the dataset: its path, text, parsed document and the image it describes."""
    xml_files = next((sorted((root / name).glob("*.xml")) for name in VOC_LABEL_FOLDERS
                      if (root / name).is_dir() and any((root / name).glob("*.xml"))), [])
    if not xml_files:
        raise fail(root, None, "no Pascal VOC XML files found (looked in " +
                   ", ".join(f"{root / name}" for name in VOC_LABEL_FOLDERS) + ")")
    for xml_file in xml_files:
        text = xml_file.read_text()
        try:
            document = SafeET.fromstring(text)
        except SafeET.ParseError as error:
            raise fail(xml_file, error.position[0], f"not valid XML ({error})") from None
        except defusedxml.DefusedXmlException as error:
            raise fail(xml_file, None, f"refused: the XML declares entities or a DTD ({type(error).__name__})") \
                from None
        yield xml_file, text, document, _voc_image(root, xml_file, document.findtext("filename") or "")


def read_voc(root: Path) -> list[LabelBox]:
    """Boxes of Pascal VOC XML files in Annotations/, annotations/ or the folder itself; images in JPEGImages/,
    images/, beside the XML file or in the folder. XML is parsed without expanding entities."""
    boxes = []
    for xml_file, text, document, image in voc_documents(root):
        width, height = positive_size(xml_file, None, document.findtext("size/width"),
                                      document.findtext("size/height"), "size")
        object_lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r"<object\b", text)]
        for number, obj in enumerate(document.findall("object")):
            line = object_lines[number] if number < len(object_lines) else None
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise fail(xml_file, line, "object without a <name>")
            try:
                x1, y1, x2, y2 = (float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                raise fail(xml_file, line, f"object {name!r}: bndbox xmin/ymin/xmax/ymax must be numbers") \
                    from None
            box = checked_box(xml_file, line, x1 / width, y1 / height, x2 / width, y2 / height)
            boxes.append(LabelBox(image, name, *box[:4], clipped_at=box[4], declared_size=(width, height),
                                  declared_in=str(xml_file)))
    return boxes


def listed_voc(root: Path) -> list[Path]:
    """Every image an XML file describes, with objects or none (an XML without an object is a person's word that
    the image holds nothing: a negative)."""
    return [image for _, _, _, image in voc_documents(root)]


def _voc_image(root: Path, xml_file: Path, file_name: str) -> Path:
    folders = [root / name for name in VOC_IMAGE_FOLDERS] + [xml_file.parent, root]
    candidates = list(dict.fromkeys(inside_dataset(root, folder / file_name, xml_file, None) for folder in folders))
    return existing_file(candidates, xml_file, None, f"image {file_name!r}")



VOC = LabelFormat("voc", Kind.BOX, "Pascal VOC XML files (import only)", read=read_voc, listed=listed_voc)
