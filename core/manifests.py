"""Dataset-version manifests: canonical, sorted rows and their sha256; pure functions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import pandas as pd

from core.geometry import BOX_DECIMALS

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


def build_manifest(rows: pd.DataFrame) -> Manifest:
    """One tab-separated line per accepted annotation, sorted, boxes rounded to a fixed precision."""
    frame = rows[MANIFEST_COLUMNS].copy()
    for column in ("x1", "y1", "x2", "y2"):
        frame[column] = frame[column].map(lambda v: f"{v:.{BOX_DECIMALS}f}")
    lines = sorted("\t".join(values) for values in frame.astype(str).itertuples(index=False, name=None))
    text = "\t".join(MANIFEST_COLUMNS) + "\n" + "".join(line + "\n" for line in lines)
    per_concept = {str(k): int(v) for k, v in rows.groupby("concept").size().sort_index().items()}
    return Manifest(text, hashlib.sha256(text.encode()).hexdigest(), len(rows), rows["input_id"].nunique(),
                    per_concept)


def split_of(input_id: str, val_ratio: float) -> str:
    """Deterministic train/val split by the input's hash: the same input always lands in the same split."""
    return "val" if int(input_id[:8], 16) / 0x1_0000_0000 < val_ratio else "train"
