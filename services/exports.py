"""Dataset versions out: a version as an Ultralytics YOLO (detection or segmentation), Ultralytics classification
or COCO dataset, with its images, split train/val/test by the hash of each image's group (a video's frames
share one split)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.annotations import Kind
from core.formats import LINK_MODES, ExportRequest, export_file_name, label_format
from core.locations import RELATIONS, is_remote, location_parts, relation
from core.manifests import NEGATIVE_CHOICES, NEGATIVE_MAKERS, check_split_ratios
from core.quality import wilson_interval
from core.results import ExportSummary
from core.task_config import LabelingTask
from services.integrity import checked_image
from services.ports import StoredImages, UnitsOfWork, VersionFiles
from storage.blobs import blob_store
from store import Session


def missing_version_sentence(version_key: str, stored: list[str]) -> str:
    """Why `version_key` names no version, and what to type instead."""
    if "@" not in version_key:
        hint = f"a version key is TASK@DAY, e.g. {version_key}@{datetime.now(UTC).date().isoformat()}"
    else:
        hint = "`autoannotate version create --date DAY` builds a day's version"
    newest = f"; stored: {', '.join(stored[:5])}{' ...' if len(stored) > 5 else ''}" if stored else ""
    return f"No dataset version {version_key!r}: {hint}{newest}."


EXPORT_RECORD = "autoannotate_export.json"


def default_negatives(store: UnitsOfWork, task: LabelingTask | None) -> tuple[str, str]:
    """Which negatives an export takes when the user does not say (`NEGATIVE_CHOICES`), and why: people's only,
    unless the task states `model_negatives_below_miss_rate` and the spot checks of its discarded band measure a
    miss rate whose 95 % upper bound lies below it (the model's silence is then evidence too)."""
    bound = task.model_negatives_below_miss_rate if task is not None else None
    if bound is None:
        return "people", "only people's negatives: the task states no model_negatives_below_miss_rate"
    outcomes = store.read(lambda s: s.quality.spot_check_outcomes(task))
    checked = sum(bands.get("discard", (0, 0))[0] for bands in outcomes.values())
    missed = sum(bands.get("discard", (0, 0))[1] for bands in outcomes.values())
    high = wilson_interval(missed, checked)[1]
    measured = f"{missed} missed objects in {checked} spot-checked discarded predictions (upper bound {high:.3f})"
    if checked and high < bound:
        return "all", f"the model's negatives too: {measured} is below the task's bound {bound}"
    return "people", f"only people's negatives: {measured} is not below the task's bound {bound}"


def check_export_folder(out: Path, overwrite: bool) -> None:
    """An export never mixes with what a folder already holds: a non-empty `out` is refused unless `overwrite`,
    and then only when it is an earlier export (its `autoannotate_export.json`)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder; give a folder to export into.")
    if out.is_dir() and any(out.iterdir()):
        held = sum(1 for _ in out.iterdir())
        if not overwrite:
            raise ValueError(f"--out {out} already holds {held} entries (an earlier export?); exporting into it would "
                             "mix two datasets. Pass --overwrite to replace the folder whole, or give an empty folder.")
        if not (out / EXPORT_RECORD).is_file():
            raise ValueError(not_an_export(str(out), f"{held} entries"))


def not_an_export(out: str, held: str) -> str:
    return (f"--out {out} holds {held} but no {EXPORT_RECORD}: it is not an earlier export, and --overwrite replaces "
            "only an earlier export; give an empty folder or prefix, or that export's own.")


def check_kept_apart(out: str, kept: dict[str, str]) -> None:
    """`--overwrite` replaces `out` whole: never what autoannotate keeps, nor a folder or prefix holding or inside
    any of it (a bucket's root holds every prefix in it)."""
    related = []
    for what, location in kept.items():
        how = relation(out, location)
        if how is not None:
            depth = len(location_parts(location))
            related.append((RELATIONS.index(how), depth if how == "holds" else -depth, what, location, how))
    if related:  # the closest one named: what `out` is, else the innermost it lies in, else the outermost it holds
        *_, what, location, how = min(related)
        raise ValueError(f"--out {out} {how} {what} ({location}): --overwrite would replace what autoannotate "
                         "keeps; export into a folder or prefix of its own.")


@contextlib.contextmanager
def replaced_whole(out: Path) -> Iterator[Path]:
    """A fresh folder beside `out` to write the export into; on success it becomes `out` (an earlier `out` is
    removed only then), on failure it is removed and `out` stays as it was."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    earlier = out.with_name(f".{out.name}.replaced-{staging.name.rsplit('-', 1)[-1]}") if out.exists() else None
    if earlier is not None:
        os.replace(out, earlier)
    os.replace(staging, out)
    if earlier is not None:
        shutil.rmtree(earlier, ignore_errors=True)


def export_version_to(store: UnitsOfWork, images: StoredImages, versions: VersionFiles, version_key: str, fmt: str,
                      out: str, overwrite: bool = False, kept: dict[str, str] | None = None,
                      **options: Any) -> ExportSummary:
    """`export_version` into `out`: a folder, or a bucket prefix (s3://bucket/prefix), where the export is written
    to a scratch folder first and then stored file by file under the prefix (a YOLO data.yaml names no `path`, so
    the copied export trains as it is). A prefix that holds objects is refused unless `overwrite`, which removes
    the objects the new export does not have once every new one is stored. With `overwrite`, `out` may be none of
    the `kept` locations (what autoannotate keeps, by name), hold one or lie inside one, and must hold an earlier
    export if anything."""
    if overwrite:
        check_kept_apart(out, kept or {})
    if not is_remote(out):
        return export_version(store, images, versions, version_key, fmt, Path(out), overwrite=overwrite, **options)
    target = blob_store(out)
    held = {info.key for info in target.listing()}
    if held and not overwrite:
        raise ValueError(f"--out {out} already holds {len(held)} objects (an earlier export?); exporting into it "
                         "would mix two datasets. Pass --overwrite to replace them, or give an empty prefix.")
    if held and EXPORT_RECORD not in held:
        raise ValueError(not_an_export(out, f"{len(held)} objects"))
    with tempfile.TemporaryDirectory(prefix="autoannotate-export-") as scratch:
        folder = Path(scratch) / "export"
        exported = export_version(store, images, versions, version_key, fmt, folder, **options)
        stored = set()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            key = path.relative_to(folder).as_posix()
            target.put_file(key, path)
            stored.add(key)
        for key in held - stored:
            target.delete(key)
        main_file = Path(exported.out).resolve().relative_to(folder.resolve()).as_posix()
    return replace(exported, out=target.url(main_file) if main_file != "." else target.location)


def export_version(store: UnitsOfWork, images: StoredImages, versions: VersionFiles, version_key: str, fmt: str,
                   out: Path, negatives: str = "people", longest_side: int = 0,
                   model_classes: tuple[list[str], dict[str, str]] | None = None, overwrite: bool = False,
                   link: str = "copy", tracker_of: dict[str, str] | None = None) -> ExportSummary:
    """Write a version as an Ultralytics YOLO dataset (`yolo-seg`, or `yolo` when the version has polygons: Ultralytics'
    segmentation labels), an Ultralytics classification dataset (`classify`: its image-level concepts, one per
    image) or a COCO JSON (boxes, and image-level concepts on each image), with its images, into `out`, split
    train/val/test by group hash (a video's frames share one split). The version's negative images go in with no
    objects as `negatives` says: `people` (default: those a person made, imported without labels or reviewed with
    nothing left), `all` (the model's too: images it found nothing on) or `none`; `longest_side` resizes larger
    images. `autoannotate_export.json` records all of it, so the export can be made again byte for byte, and names
    the input each image file is. `model_classes` (a detector's class names, and the class each concept stands for)
    writes boxes in that detector's class space, to train it.

    A non-empty `out` is refused unless `overwrite`, which replaces it whole (the export is written beside it and
    renamed: a failed export leaves the old one intact). Images are real files named by the original file's stem and
    a short content hash (`core.formats.export_file_name`), each checked against its id first: copies of their own
    (reflinks where the filesystem has them), hard links with `link="hardlink"` (the stored file made read-only), or
    symlinks with `link="symlink"`."""
    check_split_ratios(versions.val_ratio, versions.test_ratio)
    check_export_folder(out, overwrite)
    tracker_of = tracker_of or {}  # task -> its tracker: `mot` writes those track ids
    writer = label_format(fmt, reading=False)
    takes_negatives = writer.kind == Kind.BOX
    if negatives not in NEGATIVE_CHOICES:
        raise ValueError(f"--negatives {negatives!r} is not one of {', '.join(NEGATIVE_CHOICES)}.")
    if link not in LINK_MODES:
        raise ValueError(f"--link {link!r} is not one of {', '.join(LINK_MODES)}.")
    if longest_side < 0:
        raise ValueError(f"--resize {longest_side} is not a size: give the longest side in pixels, or 0 to keep "
                         "the stored images as they are.")

    def read(s: Session):
        version = s.versions.get(version_key)
        if version is None:
            raise KeyError(missing_version_sentence(version_key, s.versions.keys(version_key.split("@")[0])))
        rows = s.history.as_of(version["task"], version["cutoff"])
        # A box format carries objects only: an image-level concept (its box is the whole image) is not a box.
        is_concept = rows["kind"].fillna(str(Kind.BOX)) == str(Kind.CONCEPT)
        boxes, concepts = rows[~is_concept], rows[is_concept]
        made = s.versions.negatives(version["task"], version["cutoff"]) if takes_negatives else {}
        empty = sorted(i for maker in NEGATIVE_CHOICES[negatives] for i in made.get(maker, []))
        # Class ids come from the task's registry, so they never move between versions.
        names = s.history.class_names(version["task"], sorted((boxes if takes_negatives else concepts)
                                                              ["concept"].unique()))
        tracks = s.tracks.of_boxes(boxes, tracker_of.get(version["task"])) if fmt == "mot" else None
        return (version, boxes, concepts, empty, made, names,
                s.inputs.sizes(sorted(set(rows["input_id"]) | set(empty))),
                s.versions.manifest(version["task"], version["cutoff"]).sha256, tracks)

    version, boxes, concepts, empty, made, names, inputs, current_sha256, tracks = store.write(read)
    # What went in, and what the version holds that this export left out, by who made it.
    negative_counts = {"negatives": len(empty), **{
        f"{maker}_negatives": len(made.get(maker, [])) for maker in NEGATIVE_MAKERS},
        "negatives_left_out": sum(len(made.get(m, [])) for m in NEGATIVE_MAKERS) - len(empty)}
    if model_classes is not None:
        names, class_of = model_classes
        boxes = boxes[boxes["concept"].isin(class_of)].assign(concept=lambda rows: rows["concept"].map(class_of))
    recorded = version["manifest_sha256"]
    if current_sha256 != recorded:
        day = version_key.partition("@")[2]
        raise ValueError(f"The annotations of {version_key} no longer match its manifest {recorded[:12]} (people "
                         f"decided since it was built); build it again with `autoannotate version create --date "
                         f"{day}`, then export it.")
    if writer.kind == Kind.CONCEPT and concepts.empty:
        raise ValueError(f"{version_key} holds no image-level concepts to export as {fmt} (its task "
                         "annotates boxes: export it as yolo or coco).")
    inputs = inputs.assign(file_name=[export_file_name(u, i, f) for u, i, f in
                                      zip(inputs["uri"], inputs["input_id"], inputs["format"], strict=True)])
    request = ExportRequest(boxes, concepts, inputs, frozenset(empty),
                            lambda i: checked_image(images, i, "nothing was exported"), names,
                            (versions.val_ratio, versions.test_ratio), longest_side, link, tracks)
    with replaced_whole(out) as staging:
        written = writer.write(request, staging)
        taken = inputs if written.images is None else inputs[inputs["input_id"].isin(written.images)]
        counts = (negative_counts if takes_negatives else {}) | written.counts | {
            "split_groups": int(taken["split_group"].nunique()),
            "videos_split_whole": int((taken["split_group"].value_counts() > 1).sum())}
        record = {"version": version_key, "format": fmt, "manifest_sha256": recorded, "labels": written.labels,
                  "splits": {"val": request.ratios[0], "test": request.ratios[1],
                             "by": "split group hash (a video's frames one group, any other image its own)"},
                  "negatives_included": sorted(NEGATIVE_CHOICES[negatives]) if takes_negatives else [],
                  "resize_longest_side": longest_side,
                  "images": dict(zip(taken["file_name"], taken["input_id"], strict=True)), "counts": counts}
        (staging / EXPORT_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return ExportSummary(version_key, fmt, recorded, written.labels, record["splits"], record["negatives_included"],
                         longest_side, str(out / written.main_file if written.main_file else out), counts)
