"""Dataset-version manifests: canonical, sorted rows and their sha256; pure functions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

# original_concept: for an annotation a person relabelled, the concept the model (or importer) gave; else empty.
MANIFEST_COLUMNS = ["input_id", "concept", "x1", "y1", "x2", "y2", "source", "original_concept"]


@dataclass(frozen=True)
class Manifest:
    text: str
    sha256: str
    annotations: int
    inputs: int
    per_concept: dict[str, int]
    negatives: int = 0

    @property
    def input_ids(self) -> set[str]:
        """The images the version holds (its annotations' and its negatives')."""
        return {line.split("\t", 1)[0] for line in self.text.splitlines()[1:]}


def end_of_day(day: date) -> datetime:
    """The cutoff of day D: everything strictly before the next midnight (UTC) belongs to D."""
    return datetime.combine(day + timedelta(days=1), time.min)


def manifest_of(lines: str, inputs: int, per_concept: dict[str, int], negatives: int = 0) -> Manifest:
    """The manifest whose body is `lines`: one tab-separated line per accepted annotation in MANIFEST_COLUMNS
    order, boxes with BOX_DECIMALS decimals (empty for an image-level concept), and one line per negative image
    (source NEGATIVE_SOURCE, every other field empty), lines sorted by code point, each ending in a newline."""
    text = "\t".join(MANIFEST_COLUMNS) + "\n" + lines
    return Manifest(text, hashlib.sha256(text.encode()).hexdigest(), sum(per_concept.values()), inputs,
                    dict(sorted(per_concept.items())), negatives)


# A negative (background) image: the model ran on it, or a person reviewed it, and it holds no accepted object.
NEGATIVE_SOURCE = "negative"
# Who made a negative: a person (imported without labels, or reviewed with nothing left) or the model's silence
# alone (nothing above the lower threshold). Exports take people's by default: a model that misses an object would
# otherwise teach the next model to miss it too.
NEGATIVE_MAKERS = ("person", "model")
NEGATIVE_CHOICES = {"people": ("person",), "all": NEGATIVE_MAKERS, "none": ()}
SPLITS = ("train", "val", "test")


def check_split_ratios(val_ratio: float, test_ratio: float) -> None:
    """One sentence when the val and test shares leave no training split."""
    if not (0 <= val_ratio < 1 and 0 <= test_ratio < 1 and val_ratio + test_ratio < 1):
        raise ValueError(f"Split ratios val={val_ratio:g} and test={test_ratio:g} must each lie in [0, 1) and "
                         "add up to less than 1 (the rest is train): set AUTOANNOTATE_VAL_RATIO and "
                         "AUTOANNOTATE_TEST_RATIO.")


def split_of(split_group: str, val_ratio: float, test_ratio: float = 0.0) -> str:
    """Deterministic train/val/test split by the hash of the input's split group (its own id, or a video frame's
    video id: `InputsSQL.split_groups`): the same input, and every frame of one video, always lands in the same
    split. val is the lowest share of the hash range and test the next, so adding a test split leaves val as it
    was (test takes its images from train)."""
    share = int(split_group[:8], 16) / 0x1_0000_0000
    if share < val_ratio:
        return "val"
    return "test" if share < val_ratio + test_ratio else "train"
