"""Label formats, one module each, gathered in one registry: imports, exports and the CLI's choices read it.

A new format is one module declaring a `LabelFormat` (its reader, what it lists, its writer: any it has) and one
line in `FORMATS` below."""

from __future__ import annotations

from core.formats.base import ExportRequest, LabelBox, LabelFormat, LabelFormatError, Written, concept_label
from core.formats.classify import CLASSIFY
from core.formats.coco import COCO
from core.formats.concepts_csv import CONCEPTS_CSV
from core.formats.images import LINK_MODES, export_file_name
from core.formats.mot import MOT
from core.formats.voc import VOC
from core.formats.yolo import YOLO, YOLO_SEG

FORMATS: dict[str, LabelFormat] = {f.name: f for f in (YOLO, YOLO_SEG, COCO, VOC, CONCEPTS_CSV, CLASSIFY, MOT)}
IMPORT_FORMATS = tuple(name for name, f in FORMATS.items() if f.read is not None)
EXPORT_FORMATS = tuple(name for name, f in FORMATS.items() if f.write is not None)


def label_format(name: str, reading: bool) -> LabelFormat:
    """The format called `name`, which must read (`reading`) or write; otherwise one sentence naming the ones that
    do."""
    known = IMPORT_FORMATS if reading else EXPORT_FORMATS
    if name not in known:
        raise ValueError(f"--format {name!r} is not a format autoannotate {'imports' if reading else 'exports'}: "
                         f"{', '.join(known)}.")
    return FORMATS[name]


__all__ = ["EXPORT_FORMATS", "FORMATS", "IMPORT_FORMATS", "LINK_MODES", "ExportRequest", "LabelBox", "LabelFormat",
           "LabelFormatError", "Written", "concept_label", "export_file_name", "label_format"]
