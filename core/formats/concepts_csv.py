"""Image-level concepts in from a CSV: one `file,concept` row per concept of an image (files relative to the CSV's
folder; an empty concept: the image has none of the task's concepts)."""

from __future__ import annotations

import csv
from pathlib import Path

from core.annotations import Kind
from core.formats.base import LabelBox, LabelFormat, concept_label, existing_file, fail, inside_dataset


def concept_csv_rows(path: Path) -> list[tuple[Path, str]]:
    """(image, concept) of each `file,concept` row (a header row `file,concept` is allowed; one row per concept of
    an image; an empty concept: the image has none of the task's concepts); files are relative to the CSV's
    folder."""
    rows = []
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), 1):
            if not row or (line == 1 and [c.strip().lower() for c in row] == ["file", "concept"]):
                continue
            if len(row) != 2 or not row[0].strip():
                raise fail(path, line, f"expected two fields `file,concept` (the concept empty for an image with "
                                       f"none), got {','.join(row)!r}")
            image = inside_dataset(path.parent, path.parent / row[0].strip(), path, line)
            rows.append((existing_file([image], path, line, f"image {row[0].strip()!r}"), row[1].strip()))
    if not rows:
        raise fail(path, None, "holds no `file,concept` rows")
    return rows


def read_concept_csv(path: Path) -> list[LabelBox]:
    """The image-level concept labels of a concepts CSV (`concept_csv_rows`); rows with an empty concept are
    images with none, which `listed_concept_csv` names."""
    return [concept_label(image, concept) for image, concept in concept_csv_rows(path) if concept]


def listed_concept_csv(path: Path) -> list[Path]:
    """Every image a row names, with a concept or with none."""
    return [image for image, _ in concept_csv_rows(path)]


CONCEPTS_CSV = LabelFormat("concepts-csv", Kind.CONCEPT, "image-level concepts from `file,concept` rows (import only)",
                           read=read_concept_csv, listed=listed_concept_csv)
