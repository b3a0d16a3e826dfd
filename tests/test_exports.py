"""Dataset exports that train well: negative images, a test split, segmentation labels, resizing, frozen named
versions; each checked with the tools that read them (Ultralytics' dataset loaders, pycocotools)."""

import hashlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml
from helpers import ap_against_itself, exported_input_ids, materialize_batch, new_batch, query, yolo_dataset
from PIL import Image

from apps.demo_scenes import SHAPE_CLASSES, generate_scene, write_demo_images
from apps.review_desk import ReviewDesk
from assets.inference import predictions
from assets.ingestion import inputs
from assets.triage import annotations
from assets.versions import dataset_versions
from services.datasets import create_named_version, import_labels
from services.exports import export_version
from store.history import CURRENT
from store.versions import FrozenVersion

SPLITS = ("train", "val", "test")


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def hash_share(input_id: str) -> float:
    return int(input_id[:8], 16) / 0x1_0000_0000


def split_by_hash(input_id: str) -> str:
    """The documented default split: the lowest 20 % of the hash range is val, the next 10 % test."""
    share = hash_share(input_id)
    return "val" if share < 0.2 else "test" if share < 0.3 else "train"


def write_blanks(folder: Path, per_split: int) -> dict[str, str]:
    """Plain grey PNGs (the detector finds nothing on them), `per_split` of them landing in each split by their
    content hash (an input's id is the sha256 of its bytes); input id -> split."""
    chosen: dict[str, str] = {}
    for grey in range(256):
        image = Image.new("RGB", (320 + grey, 240), (grey,) * 3)
        data = io.BytesIO()
        image.save(data, format="PNG")
        input_id = hashlib.sha256(data.getvalue()).hexdigest()
        split = split_by_hash(input_id)
        if sum(1 for s in chosen.values() if s == split) < per_split:
            (folder / f"blank{grey:03d}.png").write_bytes(data.getvalue())
            chosen[input_id] = split
        if len(chosen) == per_split * len(SPLITS):
            return chosen
    raise AssertionError("256 grey images did not fill every split")


def export(resources: dict, version: str, fmt: str, out: Path, **options: object) -> dict:
    """The export's summary as `autoannotate export --json` prints it."""
    return export_version(resources["store"], resources["images"], resources["versions"], version, fmt, out,
                          **options).as_dict()


def yolo_labels(out: Path, task: str = "detect") -> dict[str, list]:
    """What Ultralytics' own loader reads from each split of a YOLO export: image stem -> its label arrays."""
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(out / "data.yaml"))
    assert data["names"] == yaml.safe_load((out / "data.yaml").read_text())["names"]
    loaded, ids = {}, exported_input_ids(out)
    for split in SPLITS:
        dataset = YOLODataset(img_path=data[split], data=data, task=task, augment=False)
        loaded |= {ids[Path(label["im_file"]).stem]: label for label in dataset.labels}
    return loaded


def test_negatives_go_into_every_format_with_three_stable_splits(
        resources: dict, inbox: Path, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    write_demo_images(inbox, 40, seed=23)
    placed_blanks = write_blanks(inbox, per_split=2)
    batch = new_batch(resources, instance)
    materialize_batch([inputs, predictions, annotations], resources, instance, batch)
    store = resources["store"]
    state = query(store, f"SELECT annotation_id, input_id, status, kind FROM ({CURRENT})")
    blanks = set(query(store, "SELECT input_id FROM input_sources WHERE uri LIKE '%blank%'")["input_id"])
    assert blanks == set(placed_blanks) and not blanks & set(state["input_id"])  # the detector found nothing there

    # A person rejects every box of an image that had only boxes to review: the image becomes a negative.
    per_image = state.groupby("input_id")["status"].agg(set)
    only_review = per_image[per_image.map(lambda s: s == {"AWAITING_REVIEW"})].index
    assert len(only_review) >= 2
    rejected_image, open_image = only_review[0], only_review[1]
    owner = query(store, "SELECT reviewer FROM review_assignments WHERE input_id = ?", [rejected_image]).iloc[0, 0]
    desk = ReviewDesk(store, resources["tasks"].load())
    for annotation_id in state[state["input_id"] == rejected_image]["annotation_id"]:
        desk.decide(annotation_id, "reject", owner)
    assert dg.materialize([dataset_versions], partition_key=today(), instance=instance, resources=resources).success

    state = query(store, f"SELECT input_id, status FROM ({CURRENT})")
    kept = set(state[state["status"].isin(["SUCCESS", "AWAITING_REVIEW", "PENDING"])]["input_id"])
    accepted = set(state[state["status"] == "SUCCESS"]["input_id"])
    routed = set(query(store, "SELECT input_id FROM task_inputs")["input_id"])
    negatives = routed - kept
    assert blanks | {rejected_image} <= negatives and open_image not in negatives
    version = f"demo-shapes@{today()}"
    row = query(store, "SELECT inputs, negatives, manifest_path FROM dataset_versions WHERE version_key = ?",
                [version]).iloc[0]
    assert (row["inputs"], row["negatives"]) == (len(accepted), len(negatives))
    manifest = Path(row["manifest_path"]).read_text().splitlines()[1:]
    assert sorted(line.split("\t")[0] for line in manifest if line.split("\t")[6] == "negative") == sorted(negatives)

    # By default only the negatives a person made go in: the model's silence on the blanks is no such statement.
    people = export(resources, version, "yolo", tmp_path / "yolo-people")
    assert (people["negatives"], people["person_negatives"], people["model_negatives"],
            people["negatives_left_out"]) == (1, 1, len(negatives) - 1, len(negatives) - 1)
    # (Read from the files: with the blanks left out a split may hold no image, which Ultralytics' loader refuses.)
    people_ids = exported_input_ids(tmp_path / "yolo-people")
    assert set(people_ids.values()) == accepted | {rejected_image}
    (rejected_stem,) = [stem for stem, i in people_ids.items() if i == rejected_image]
    assert next((tmp_path / "yolo-people" / "labels").glob(f"*/{rejected_stem}.txt")).read_text() == ""

    summary = export(resources, version, "yolo", tmp_path / "yolo", negatives="all")
    assert (summary["negatives"], summary["labels"]) == (len(negatives), "detect")
    loaded = yolo_labels(tmp_path / "yolo")
    assert set(loaded) == accepted | negatives
    assert all(len(loaded[i]["cls"]) == 0 for i in negatives)
    assert all(len(loaded[i]["cls"]) > 0 for i in accepted)
    ids = exported_input_ids(tmp_path / "yolo")
    placed = {ids[p.stem]: p.parent.name for p in (tmp_path / "yolo" / "images").glob("*/*")}
    assert placed == {i: split_by_hash(i) for i in accepted | negatives}
    assert {split: summary[split] for split in SPLITS} == {
        split: sum(1 for s in placed.values() if s == split) for split in SPLITS}
    assert {placed[i] for i in blanks} == set(SPLITS)  # blank images made to land in every split did
    record = json.loads((tmp_path / "yolo" / "autoannotate_export.json").read_text())
    assert record["splits"] == {"val": 0.2, "test": 0.1,
                                "by": "split group hash (a video's frames one group, any other image its own)"}
    assert record["negatives_included"] == ["model", "person"]
    assert record["manifest_sha256"] == summary["manifest_sha256"]

    without = export(resources, version, "yolo", tmp_path / "yolo-positives", negatives="none")
    assert "negatives" not in without or without["negatives"] == 0
    ids = exported_input_ids(tmp_path / "yolo-positives")
    assert {ids[p.stem] for p in (tmp_path / "yolo-positives" / "images").glob("*/*")} == accepted

    coco = export(resources, version, "coco", tmp_path / "coco", negatives="all")
    truth = COCO(coco["out"])
    of_file = exported_input_ids(tmp_path / "coco")
    ids = {of_file[Path(image["file_name"]).stem]: image["id"] for image in truth.dataset["images"]}
    # COCO lists every image of the version: with accepted boxes, negatives, and those whose boxes still wait.
    assert set(ids) >= accepted | negatives
    assert all(truth.getAnnIds(imgIds=[ids[i]]) == [] for i in negatives)
    assert ap_against_itself(truth) == pytest.approx(1.0)
    # One file per split too, for trainers that read COCO by split: the same ids, split like the YOLO export.
    parts = {split: COCO(str(tmp_path / "coco" / f"annotations_{split}.json")) for split in SPLITS}
    assert {split: coco[split] for split in SPLITS} == {split: len(parts[split].dataset["images"]) for split in SPLITS}
    for split, part in parts.items():
        assert {split_by_hash(of_file[Path(image["file_name"]).stem]) for image in part.dataset["images"]} == {split}
        assert all(truth.imgs[image["id"]] == image for image in part.dataset["images"])
    assert sorted(a["id"] for part in parts.values() for a in part.dataset["annotations"]) == sorted(truth.anns)


def segmentation_dataset(root: Path, count: int) -> dict[str, int]:
    """A YOLO segmentation dataset of generated scenes: each object a diamond polygon, except the first object of
    each image, a plain box; returns the objects per image name."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    objects_per_image = {}
    for index in range(count):
        image, objects = generate_scene(9_100_000 + index, width=640, height=480)
        name = f"seg{index:03d}"
        image.save(root / "images" / "train" / f"{name}.png")
        lines = []
        for number, obj in enumerate(objects):
            x1, y1, x2, y2 = obj.x1 / 640, obj.y1 / 480, obj.x2 / 640, obj.y2 / 480
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            class_id = SHAPE_CLASSES.index(obj.class_name)
            if number == 0:
                lines.append(f"{class_id} {cx:.6f} {cy:.6f} {x2 - x1:.6f} {y2 - y1:.6f}")
            else:
                lines.append(f"{class_id} {cx:.6f} {y1:.6f} {x2:.6f} {cy:.6f} {cx:.6f} {y2:.6f} {x1:.6f} {cy:.6f}")
        (root / "labels" / "train" / f"{name}.txt").write_text("\n".join(lines) + "\n")
        objects_per_image[name] = len(objects)
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(SHAPE_CLASSES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nnames:\n{names}\n")
    return objects_per_image


def test_polygons_export_as_ultralytics_segmentation_labels_and_resizing_is_recorded(
        resources: dict, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    objects = segmentation_dataset(tmp_path / "src", 8)
    import_labels(resources["store"], resources["images"], "yolo", tmp_path / "src", "imported", "labeler-1",
                  50_000_000, SHAPE_CLASSES)
    assert dg.materialize([dataset_versions], partition_key=today(), instance=instance, resources=resources).success
    version = f"imported@{today()}"

    summary = export(resources, version, "yolo", tmp_path / "seg")  # polygons: segmentation labels by themselves
    assert (summary["labels"], summary["annotations"]) == ("segment", sum(objects.values()))
    loaded = yolo_labels(tmp_path / "seg", task="segment")
    assert sorted(len(label["segments"]) for label in loaded.values()) == sorted(objects.values())
    lines = [line.split() for label in (tmp_path / "seg" / "labels").glob("*/*.txt")
             for line in label.read_text().splitlines()]
    assert sum(len(fields) == 9 for fields in lines) == len(lines)  # the plain boxes became their four corners

    resized = export(resources, version, "coco", tmp_path / "coco-small", longest_side=320)
    record = json.loads((tmp_path / "coco-small" / "autoannotate_export.json").read_text())
    assert (record["resize_longest_side"], record["format"]) == (320, "coco")
    coco = COCO(resized["out"])
    assert {(i["width"], i["height"]) for i in coco.dataset["images"]} == {(320, 240)}
    for image in coco.dataset["images"]:
        with Image.open(tmp_path / "coco-small" / "images" / image["file_name"]) as placed:
            assert placed.size == (320, 240)
    full = COCO(export(resources, version, "coco", tmp_path / "coco-full")["out"])
    for small, large in zip(coco.dataset["annotations"], full.dataset["annotations"], strict=True):
        assert small["bbox"] == pytest.approx([v / 2 for v in large["bbox"]], abs=0.01)
        assert len(small["segmentation"]) == len(large["segmentation"])
        for ring, full_ring in zip(small["segmentation"], large["segmentation"], strict=True):
            assert ring == pytest.approx([v / 2 for v in full_ring], abs=0.01)


def tree_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file's bytes (through links), by path inside the folder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_named_version_is_frozen_and_exports_the_same_bytes_after_the_task_changes(
        resources: dict, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    yolo_dataset(tmp_path / "first", 5)
    import_labels(resources["store"], resources["images"], "yolo", tmp_path / "first", "imported", "labeler-1",
                  50_000_000, SHAPE_CLASSES)
    built = create_named_version(resources["store"], resources["versions"], resources["images"], "release-3", None)
    assert list(built) == ["imported@release-3"]
    export(resources, "imported@release-3", "yolo", tmp_path / "out")
    first = tree_digest(tmp_path / "out")

    yolo_dataset(tmp_path / "second", 4, seed=7_100_000)  # the task moves on: new labels, today's version rebuilt
    import_labels(resources["store"], resources["images"], "yolo", tmp_path / "second", "imported", "labeler-1",
                  50_000_000, SHAPE_CLASSES)
    assert dg.materialize([dataset_versions], partition_key=today(), instance=instance, resources=resources).success
    with pytest.raises(FrozenVersion) as refused:
        create_named_version(resources["store"], resources["versions"], resources["images"], "release-3", None)
    assert str(refused.value) == ("Version imported@release-3 already exists and is frozen: a named version never "
                                  "changes; pick another name.")
    export(resources, "imported@release-3", "yolo", tmp_path / "out", overwrite=True)
    assert tree_digest(tmp_path / "out") == first
    assert yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())["test"] == "images/test"
    rows = query(resources["store"], "SELECT version_key, annotations, frozen FROM dataset_versions ORDER BY 1")
    assert [(r.version_key, r.frozen) for r in rows.itertuples()] == [
        (f"imported@{today()}", False), ("imported@release-3", True)]
    assert rows["annotations"].iloc[0] > rows["annotations"].iloc[1]
    with pytest.raises(ValueError) as bad_name:
        create_named_version(resources["store"], resources["versions"], resources["images"], "2026-12-01", None)
    assert "is not a name: start with a letter" in str(bad_name.value)


def test_images_a_labelled_dataset_lists_without_labels_are_negatives(
        resources: dict, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    """A team's YOLO dataset with background images (no label file, or an empty one): imported, they are the
    version's negatives and export with empty label files; importing again records nothing twice."""
    truth = yolo_dataset(tmp_path / "src", 6)
    labels = tmp_path / "src" / "labels" / "train"
    (labels / "img000.txt").unlink()  # no label file: Ultralytics' background image
    (labels / "img001.txt").write_text("")  # an empty one
    first = import_labels(resources["store"], resources["images"], "yolo", tmp_path / "src", "imported", "carol",
                          50_000_000, SHAPE_CLASSES)
    assert (first.images_without_labels, first.images) == (2, 6)
    assert import_labels(resources["store"], resources["images"], "yolo", tmp_path / "src", "imported", "carol",
                         50_000_000, SHAPE_CLASSES).annotations_written == 0
    assert query(resources["store"], "SELECT count(*) AS n FROM empty_inputs")["n"][0] == 2
    assert dg.materialize([dataset_versions], partition_key=today(), instance=instance, resources=resources).success
    version = f"imported@{today()}"
    row = query(resources["store"], "SELECT inputs, negatives, annotations FROM dataset_versions").iloc[0]
    expected_boxes = sum(len(truth[f"img{i:03d}"]) for i in range(2, 6))
    assert (row["inputs"], row["negatives"], row["annotations"]) == (4, 2, expected_boxes)
    summary = export(resources, version, "yolo", tmp_path / "out")
    ids = {Path(u).stem: i for u, i in query(resources["store"], "SELECT uri, input_id FROM input_sources")
           .itertuples(index=False)}
    for name in ("img000", "img001"):
        label = next((tmp_path / "out" / "labels").glob(f"*/{name}-{ids[name][:12]}.txt"))
        assert label.read_text() == ""
    assert summary["negatives"] == 2
