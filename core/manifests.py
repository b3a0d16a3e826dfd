"""Dataset-version manifests: canonical, sorted rows and their sha256; pure functions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

MANIFEST_COLUMNS = ["input_id", "concept", "x1", "y1", "x2", "y2", "source"]


@dataclass(frozen=True)
class Manifest:
    text: str
    sha256: str
    annotations: int
    inputs: int
    per_concept: dict[str, int]


def end_of_day(day: date) -> datetime:
    """The cutoff of day D: everything strictly before the next midnight (UTC) belongs to D."""
    return datetime.combine(day + timedelta(days=1), time.min)


def manifest_of(lines: str, inputs: int, per_concept: dict[str, int]) -> Manifest:
    """The manifest whose body is `lines`: one tab-separated line per accepted annotation in MANIFEST_COLUMNS
    order, boxes with BOX_DECIMALS decimals (empty for an image-level concept), lines sorted by code point, each
    ending in a newline."""
    text = "\t".join(MANIFEST_COLUMNS) + "\n" + lines
    return Manifest(text, hashlib.sha256(text.encode()).hexdigest(), sum(per_concept.values()), inputs,
                    dict(sorted(per_concept.items())))


def split_of(input_id: str, val_ratio: float) -> str:
    """Deterministic train/val split by the input's hash: the same input always lands in the same split."""
    return "val" if int(input_id[:8], 16) / 0x1_0000_0000 < val_ratio else "train"
