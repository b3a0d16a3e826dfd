"""Ultralytics classification datasets in and out: {train,val,test}/<concept>/<image>, or a folder per concept;
one image-level concept per image."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from core.annotations import Kind
from core.formats.base import (
    ExportRequest,
    LabelBox,
    LabelFormat,
    Written,
    concept_label,
    concepts_per_image,
    fail,
    inside_dataset,
)
from core.formats.images import place_image
from core.image_checks import SUPPORTED_SUFFIXES
from core.manifests import SPLITS, split_of


def read_concept_folders(root: Path) -> list[LabelBox]:
    """A folder per concept holding its images (`root/<concept>/*.jpg`), or Ultralytics' classification layout
    with split folders (`root/train/<concept>/...`, `root/val/<concept>/...`)."""
    splits = [root / s for s in SPLITS if (root / s).is_dir()]
    labels = []
    for parent in splits or [root]:
        for folder in sorted(p for p in parent.iterdir() if p.is_dir()):
            labels += [concept_label(inside_dataset(root, image, image, None), folder.name) for image in
                       sorted(folder.iterdir()) if image.suffix.lower() in SUPPORTED_SUFFIXES]
    if not labels:
        raise fail(root, None, "holds no images in concept folders (expected <concept>/<image>, or "
                               "train/<concept>/<image> as Ultralytics' classification datasets have it)")
    return labels


def write_classify(concepts: pd.DataFrame, inputs: pd.DataFrame, stored_image: Callable[[str], Path], out: Path,
                   names: list[str],
                   ratios: tuple[float, float], longest_side: int = 0, link: str = "copy") -> dict[str, Any]:
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
        split = split_of(info.split_group, *ratios)
        counts[split] += 1
        place_image(stored_image(info.input_id), out / split / per_image[info.input_id][0] / info.file_name,
                    longest_side, link)
    return counts


def write_classify_dataset(request: ExportRequest, folder: Path) -> Written:
    counts = write_classify(request.concepts, request.inputs, request.stored_image, folder, request.names,
                            request.ratios, request.longest_side, request.link)
    return Written(counts | {"annotations": len(request.concepts)}, "", "classify")


CLASSIFY = LabelFormat("classify", Kind.CONCEPT, "Ultralytics classification dataset: <split>/<concept>/<image>",
                       read=read_concept_folders, write=write_classify_dataset)
