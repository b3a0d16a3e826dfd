"""Dataset versions: as-of semantics, reproducible manifests, backfills, exports that tools load, imports."""

import hashlib
import json
from datetime import datetime
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from helpers import ap_against_itself, exported_input_ids, image_bytes, query, table_count, yolo_dataset

from apps.demo_scenes import SHAPE_CLASSES, generate_scene
from assets.versions import dataset_versions
from core.formats import LabelFormatError
from services.datasets import import_labels
from services.exports import export_version

# The one image these histories annotate: stored, as every image a version holds is (a build checks its bytes).
PHOTO_BYTES = image_bytes("PNG")
SHA = hashlib.sha256(PHOTO_BYTES).hexdigest()
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


def event(annotation: str, status: str, at: str, source: str = "auto", x1: float = 0.1) -> dict:
    return {"annotation_id": annotation.ljust(32, "0"), "task": "t", "input_id": SHA, "prediction_id": None,
            "model_id": None, "batch": "b", "concept": "car", "x1": x1, "y1": 0.1, "x2": 0.5, "y2": 0.5,
            "polygon": None, "confidence": 0.9, "status": status, "annotator": "u", "source": source,
            "event_at": datetime.fromisoformat(at)}


def write_events(resources: dict, events: list[dict]) -> None:
    resources["images"].put(SHA, PHOTO_BYTES)
    resources["store"].write(lambda s: s.history.append(pd.DataFrame(events)))


def versions_of(resources: dict) -> dict[str, tuple[str, int]]:
    rows = query(resources["store"], "SELECT version_key, manifest_sha256, annotations FROM dataset_versions")
    return {r.version_key: (r.manifest_sha256, r.annotations) for r in rows.itertuples()}


def build(resources: dict, instance: dg.DagsterInstance, start: str,
          end: str | None = None) -> dg.ExecuteInProcessResult:
    if end is None:
        return dg.materialize([dataset_versions], partition_key=start, instance=instance, resources=resources)
    return dg.materialize([dataset_versions], instance=instance, resources=resources,
                          tags={RANGE_START: start, RANGE_END: end})


def test_as_of_semantics_over_a_history_with_controlled_timestamps(resources: dict,
                                                                   instance: dg.DagsterInstance) -> None:
    write_events(resources, [
        event("a", "SUCCESS", "2026-11-02T09:00:00"),                       # auto-accepted on day 1
        event("b", "AWAITING_REVIEW", "2026-11-02T09:00:00", x1=0.2),       # accepted in review on day 3
        event("b", "SUCCESS", "2026-11-04T23:59:59", "review", x1=0.2),
        event("c", "SUCCESS", "2026-11-03T00:00:00", x1=0.3),               # in from day 2, rejected on day 4
        event("c", "REJECTED", "2026-11-05T08:00:00", "review", x1=0.3),
    ])
    for day in ("2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"):
        build(resources, instance, day)
    versions = versions_of(resources)
    assert versions["t@2026-11-01"][1] == 0  # before the task's first event: an empty version, still exportable
    assert {day: versions[f"t@{day}"][1] for day in ("2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05")} == {
        "2026-11-02": 1, "2026-11-03": 2, "2026-11-04": 3, "2026-11-05": 2}
    manifest = resources["versions"].read_manifest("t", "2026-11-03").splitlines()
    assert manifest[0] == "input_id\tconcept\tx1\ty1\tx2\ty2\tsource\toriginal_concept"
    assert [line.split("\t")[2] for line in manifest[1:]] == ["0.100000", "0.300000"]  # a and c, not b


def test_manifest_bytes_are_the_documented_canonical_text(resources: dict) -> None:
    """The manifest is formatted and sorted inside DuckDB; its bytes are those of the format's definition:
    six decimals rounded as Python's `f"{v:.6f}"` does, lines sorted by code point (upper case before lower,
    accents after ASCII), one newline after each line, header first."""
    import hashlib

    rows = [("a", "car", 0.1234565), ("b", "Zebra", 0.0000005), ("c", "éclair", 0.4999995), ("d", "eel", 0.25),
            ("e", "car", 1 / 3)]
    write_events(resources, [{**event(name, "SUCCESS", "2026-11-02T09:00:00", x1=x1), "concept": concept}
                             for name, concept, x1 in rows])
    manifest = resources["store"].read(lambda s: s.versions.manifest("t", datetime(2026, 11, 3)))
    lines = sorted(f"{SHA}\t{concept}\t{x1:.6f}\t0.100000\t0.500000\t0.500000\tauto\t"
                   for name, concept, x1 in rows)
    expected = "input_id\tconcept\tx1\ty1\tx2\ty2\tsource\toriginal_concept\n" + "".join(
        line + "\n" for line in lines)
    assert manifest.text == expected
    assert [line.split("\t")[1] for line in expected.splitlines()[1:]] == ["Zebra", "car", "car", "eel", "éclair"]
    assert (manifest.sha256, manifest.annotations, manifest.inputs) == (
        hashlib.sha256(expected.encode()).hexdigest(), 5, 1)
    assert manifest.per_concept == {"Zebra": 1, "car": 2, "eel": 1, "éclair": 1}


def test_rebuild_and_week_backfill_give_the_same_manifest_hashes(resources: dict,
                                                                 instance: dg.DagsterInstance) -> None:
    write_events(resources, [event("a", "SUCCESS", "2026-11-02T09:00:00"),
                             event("b", "SUCCESS", "2026-11-04T10:00:00", x1=0.2)])
    build(resources, instance, "2026-11-02", "2026-11-08")
    first = versions_of(resources)
    assert len(first) == 7
    manifests = {k: resources["versions"].read_manifest("t", k[2:]) for k in first}
    build(resources, instance, "2026-11-05")  # re-materialize one day
    build(resources, instance, "2026-11-02", "2026-11-08")  # backfill the week again
    assert versions_of(resources) == first
    assert {k: resources["versions"].read_manifest("t", k[2:]) for k in first} == manifests
    changed = query(resources["store"], "SELECT count(DISTINCT changed_at) AS n FROM dataset_versions")
    assert changed["n"].iloc[0] == 1  # nothing was rewritten


def imported_version(resources: dict, instance: dg.DagsterInstance, fmt: str, path: Path) -> str:
    import_labels(resources["store"], resources["images"], fmt, path, "imported", "labeler-1", 50_000_000,
                  SHAPE_CLASSES)
    build(resources, instance, datetime.utcnow().date().isoformat())
    return f"imported@{datetime.utcnow().date().isoformat()}"


def exported_boxes(resources: dict, version: str, out: Path) -> dict[str, list]:
    """Boxes of a YOLO export in pixels, per input id."""
    export_version(resources["store"], resources["images"], resources["versions"], version, "yolo", out)
    names = __import__("yaml").safe_load((out / "data.yaml").read_text())["names"]
    sizes = query(resources["store"], "SELECT input_id, width, height FROM inputs").set_index("input_id")
    boxes, ids = {}, exported_input_ids(out)
    for label in (out / "labels").rglob("*.txt"):
        input_id = ids[label.stem]
        w, h = sizes.loc[input_id, "width"], sizes.loc[input_id, "height"]
        rows = []
        for line in label.read_text().splitlines():
            c, cx, cy, bw, bh = line.split()
            cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
            rows.append((names[int(c)], cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2))
        boxes[input_id] = sorted(rows)
    return boxes


def assert_within_a_pixel(truth: dict[str, list], exported: dict[str, list], ids: dict[str, str]) -> None:
    assert len(exported) == len(truth)
    for name, expected in truth.items():
        got = exported[ids[name]]
        assert [g[0] for g in got] == [e[0] for e in expected]
        for g, e in zip(got, expected, strict=True):
            assert max(abs(a - b) for a, b in zip(g[1:], e[1:], strict=True)) <= 1.0


def input_ids_by_name(resources: dict) -> dict[str, str]:
    rows = query(resources["store"], "SELECT uri, input_id FROM input_sources")
    return {Path(r.uri).stem: r.input_id for r in rows.itertuples()}


def test_yolo_round_trip_and_ultralytics_trains_on_the_export(resources: dict, instance: dg.DagsterInstance,
                                                              tmp_path: Path) -> None:
    truth = yolo_dataset(tmp_path / "src", 12)
    version = imported_version(resources, instance, "yolo", tmp_path / "src")
    exported = exported_boxes(resources, version, tmp_path / "out")
    assert_within_a_pixel(truth, exported, input_ids_by_name(resources))
    assert table_count(resources, "annotations", "source = 'import' AND annotator = 'labeler-1'") == sum(
        len(v) for v in truth.values())

    import_labels(resources["store"], resources["images"], "yolo", tmp_path / "src", "imported", "labeler-1",
                  50_000_000, SHAPE_CLASSES)
    assert table_count(resources, "annotations") == sum(len(v) for v in truth.values())  # re-import: no duplicates

    from ultralytics import YOLO
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(tmp_path / "out" / "data.yaml"))
    assert data["nc"] == 4
    model = YOLO(str(Path(__file__).resolve().parents[1] / "scripts" / "demo_detector.yaml"))
    model.train(data=str(tmp_path / "out" / "data.yaml"), epochs=1, imgsz=64, batch=4, device="cpu", workers=0,
                project=str(tmp_path / "runs"), name="one-epoch", plots=False, amp=False, val=True, verbose=False)
    assert (tmp_path / "runs" / "one-epoch" / "weights" / "last.pt").exists()


def test_coco_export_loads_in_pycocotools_and_scores_ap_one_against_itself(
        resources: dict, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    from pycocotools.coco import COCO

    yolo_dataset(tmp_path / "src", 8)
    version = imported_version(resources, instance, "yolo", tmp_path / "src")
    export_version(resources["store"], resources["images"], resources["versions"], version, "coco", tmp_path / "coco")
    truth = COCO(str(tmp_path / "coco" / "annotations.json"))
    assert all((tmp_path / "coco" / "images" / i["file_name"]).exists() for i in truth.dataset["images"])
    assert ap_against_itself(truth) == pytest.approx(1.0)


def test_voc_and_coco_imports_round_trip_within_a_pixel(resources: dict, instance: dg.DagsterInstance,
                                                        tmp_path: Path) -> None:
    voc, coco_dir = tmp_path / "voc", tmp_path / "coco"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": i + 1, "name": n}
                                                            for i, n in enumerate(SHAPE_CLASSES)]}
    (coco_dir / "images").mkdir(parents=True)
    truth = {}
    for index in range(6):
        image, objects = generate_scene(8_000_000 + index)
        name = f"voc{index}"
        image.save(voc / "JPEGImages" / f"{name}.png")
        image.save(coco_dir / "images" / f"{name}.png")
        truth[name] = sorted((o.class_name, o.x1, o.y1, o.x2, o.y2) for o in objects)
        xml_objects = "".join(f"<object><name>{o.class_name}</name><bndbox><xmin>{o.x1}</xmin><ymin>{o.y1}</ymin>"
                              f"<xmax>{o.x2}</xmax><ymax>{o.y2}</ymax></bndbox></object>" for o in objects)
        (voc / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename><size><width>{image.width}</width>"
            f"<height>{image.height}</height></size>{xml_objects}</annotation>")
        coco["images"].append({"id": index + 1, "file_name": f"{name}.png", "width": image.width,
                               "height": image.height})
        for o in objects:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": index + 1,
                                        "category_id": SHAPE_CLASSES.index(o.class_name) + 1,
                                        "bbox": [o.x1, o.y1, o.x2 - o.x1, o.y2 - o.y1]})
    (coco_dir / "instances.json").write_text(json.dumps(coco, indent=1))

    version = imported_version(resources, instance, "voc", voc)
    assert_within_a_pixel(truth, exported_boxes(resources, version, tmp_path / "out-voc"), input_ids_by_name(resources))
    events = table_count(resources, "annotations")
    import_labels(resources["store"], resources["images"], "coco", coco_dir / "instances.json", "imported",
                  "labeler-1", 50_000_000, SHAPE_CLASSES)
    assert table_count(resources, "annotations") == events  # the same boxes from COCO are the same annotations
    boxes = exported_boxes(resources, version, tmp_path / "out-coco")
    assert_within_a_pixel(truth, boxes, input_ids_by_name(resources))


@pytest.mark.parametrize(("line", "message"), [
    ("7 0.5 0.5 0.1 0.1", "class id 7 is not one of data.yaml's names (0 to 3)"),
    ("1 1.5 0.5 0.2 0.1", "box (1.4, 0.45, 1.6, 0.55) lies entirely outside the image"),
    ("1 0.5 abc 0.2 0.1", "'abc' is not a number"),
])
def test_a_malformed_label_file_is_rejected_with_file_and_line_and_nothing_is_written(
        resources: dict, tmp_path: Path, line: str, message: str) -> None:
    yolo_dataset(tmp_path / "src", 3)
    label = tmp_path / "src" / "labels" / "train" / "img001.txt"
    label.write_text(label.read_text() + line + "\n")
    bad_line = len(label.read_text().splitlines())
    with pytest.raises(LabelFormatError) as raised:
        import_labels(resources["store"], resources["images"], "yolo", tmp_path / "src", "imported", "u", 50_000_000,
                      SHAPE_CLASSES)
    assert str(raised.value) == f"{label}:{bad_line}: {message}"
    assert table_count(resources, "annotations") == 0
    assert table_count(resources, "inputs") == 0


def test_each_day_of_a_backfill_describes_its_own_version_and_every_day_exports(
        resources: dict, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    write_events(resources, [event("a", "SUCCESS", "2026-11-03T09:00:00"),
                             event("b", "SUCCESS", "2026-11-04T10:00:00", x1=0.2)])
    build(resources, instance, "2026-11-02", "2026-11-04")  # one run for three days
    records = instance.fetch_materializations(dg.AssetKey("dataset_versions"), limit=10).records
    metadata = {r.asset_materialization.partition: r.asset_materialization.metadata for r in records}
    days = ("2026-11-02", "2026-11-03", "2026-11-04")
    assert {day: list(m["versions"].value) for day, m in metadata.items()} == {d: [f"t@{d}"] for d in days}
    assert {day: m["annotations"].value for day, m in metadata.items()} == dict(zip(days, (0, 1, 2), strict=True))
    empty = export_version(resources["store"], resources["images"], resources["versions"], "t@2026-11-02", "coco",
                           tmp_path / "empty")
    assert json.loads(Path(empty.out).read_text())["annotations"] == []
    with pytest.raises(KeyError) as missing:
        export_version(resources["store"], resources["images"], resources["versions"], "t@2026-10-01", "coco",
                       tmp_path / "missing")
    assert missing.value.args[0] == ("No dataset version 't@2026-10-01': `autoannotate version create --date DAY` "
                                     "builds a day's version; stored: t@2026-11-04, t@2026-11-03, t@2026-11-02.")
