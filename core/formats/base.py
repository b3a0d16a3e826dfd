"""What every label format shares: the label a reader returns, the one-sentence error, the checks every reader
applies to a box or a path, and the shape of a format (`LabelFormat`) that the registry (`core.formats`) gathers.

Boxes inside autoannotate are normalised (x1, y1, x2, y2) in [0, 1] in the image as ingestion oriented it (EXIF
applied). Every reader checks every line and reports the file and line of the first mistake; nothing is returned
half-parsed."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from core.annotations import Kind
from core.image_checks import SUPPORTED_SUFFIXES

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


def fail(path: Path, line: int | None, message: str) -> LabelFormatError:
    return LabelFormatError(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def checked_box(path: Path, line: int | None, x1: float, y1: float, x2: float, y2: float
                ) -> tuple[float, float, float, float, str | None]:
    """The box clipped to the image, and where it was when clipping changed it. Published datasets often
    reach a pixel past the border; a box with nothing inside the image is refused, and so is one whose numbers
    are not finite (`inf`, `nan`, `1e308` overflowing): it would be clipped to the image edge, not refused."""
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise fail(path, line, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is not made of finite numbers")
    if min(x1, y1) < -1 or max(x2, y2) > 2:
        raise fail(path, line, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) reaches more than a whole image past the "
                               "border (coordinates are relative to the image); refused, not clipped")
    if not (x1 < x2 and y1 < y2):
        raise fail(path, line, f"empty box ({x1:g}, {y1:g}, {x2:g}, {y2:g}): x1 < x2 and y1 < y2 is needed")
    clipped: tuple[float, float, float, float] = (min(1.0, max(0.0, x1)), min(1.0, max(0.0, y1)),
                                                  min(1.0, max(0.0, x2)), min(1.0, max(0.0, y2)))
    if not (clipped[0] < clipped[2] and clipped[1] < clipped[3]):
        raise fail(path, line, f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies entirely outside the image")
    moved = min(x1, y1) < -EPSILON or max(x2, y2) > 1 + EPSILON
    return (*clipped, f"{path}:{line}" if line else str(path)) if moved else (*clipped, None)


def inside_dataset(root: Path, path: Path, named_in: Path, line: int | None) -> Path:
    """`path` when it lies inside the dataset folder `root`, symlinks resolved; a label naming a file elsewhere, or
    a link pointing out of the dataset, is refused."""
    if not path.resolve().is_relative_to(root.resolve()):
        raise fail(named_in, line, f"names {path}, which lies outside the dataset folder {root}; refused")
    return path


def walked_images(root: Path, folder: Path) -> list[Path]:
    """The image files under `folder`, each checked to lie inside the dataset `root` once links are resolved (a
    symlink found by walking is followed only to a file inside the dataset)."""
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUPPORTED_SUFFIXES)
    return [inside_dataset(root, p, p, None) for p in found]


def positive_size(named_in: Path, line: int | None, width: Any, height: Any, what: str
                  ) -> tuple[float, float]:
    """An image size a label file declares: two finite numbers above 0 (a width of 0 would divide by zero)."""
    try:
        size = float(width), float(height)
    except (TypeError, ValueError):
        raise fail(named_in, line, f"{what}: width and height must be numbers") from None
    if not all(math.isfinite(v) and v > 0 for v in size):
        raise fail(named_in, line, f"{what}: size {width} x {height} is not two finite numbers above 0")
    return size


def existing_file(candidates: list[Path], named_in: Path, line: int | None, what: str) -> Path:
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise fail(named_in, line, f"{what} does not exist; looked for " + ", ".join(map(str, candidates)))


def has_polygon(box: object) -> bool:
    polygon = getattr(box, "polygon", None)
    return polygon is not None and hasattr(polygon, "__len__") and len(polygon) >= 6


def concepts_per_image(concepts: pd.DataFrame) -> pd.Series:
    """input_id -> the sorted, distinct concepts of that image (`concepts`: input_id, concept rows)."""
    return concepts.groupby("input_id")["concept"].agg(lambda c: sorted(set(c)))


@dataclass(frozen=True)
class ExportRequest:
    """What a format's writer gets: a version's accepted labels, its images and where to put them."""

    boxes: pd.DataFrame  # accepted object annotations: input_id, concept, x1, y1, x2, y2, polygon
    concepts: pd.DataFrame  # accepted image-level concepts: input_id, concept
    inputs: pd.DataFrame  # every image of the version: input_id, width, height, format, file_name, split_group
    negatives: frozenset[str]  # input ids of the negative images the export takes (no object)
    stored_image: Callable[[str], Path]  # input_id -> the stored original
    names: list[str]  # class names, index = class id
    ratios: tuple[float, float]  # val and test shares, split by the hash of each input's split group
    longest_side: int = 0
    link: str = "copy"
    # Boxes on video frames: annotation_id, input_id, video_id, video_uri, frame_index, track_id (none for a box
    # no tracker linked), frame_rate. None when the version has no video frames.
    tracks: pd.DataFrame | None = None


@dataclass(frozen=True)
class Written:
    """What a writer wrote: its counts, its main file (relative to the export folder; "" is the folder), what its
    labels are, and the input ids whose images went in (None: every input of the request)."""

    counts: dict[str, int]
    main_file: str
    labels: str
    images: frozenset[str] | None = None


@dataclass(frozen=True)
class LabelFormat:
    """One label format: what its labels are (`kind`), and the parts it has. `read(path)` returns every label of
    a dataset at `path`; `listed(path)` every image the dataset names, labelled or not (an image without labels
    is one a person looked at and found nothing on); `write(request, folder)` writes a version into `folder`."""

    name: str
    kind: Kind
    summary: str
    read: Callable[[Path], list[LabelBox]] | None = None
    listed: Callable[[Path], list[Path]] | None = None
    write: Callable[[ExportRequest, Path], Written] | None = None
