"""Datasets a team trains on without re-checking them: the preview is the run and the run is the model, the inbox as
cameras write it, refusals that leave no trace, and every refusal said (issue: no path may duplicate, invent or
silently lose a label)."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import autoannotate, exported_input_ids, query, write_task_file
from PIL import Image

from apps.demo_scenes import write_demo_images
from core.settings import DEMO_WEIGHTS, Settings
from resources import build_resources

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "hubble_deep_field", "immunohistochemistry",
          "retina", "moon")


def write_real_photos(folder: Path, count: int) -> list[Path]:
    """`skimage.data` photographs saved as JPEG at several sizes (up to 2.6x, so large ones exceed the detector's
    size many times over) and qualities."""
    import skimage.data

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        name = PHOTOS[index % len(PHOTOS)]
        photo = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        scale = (0.6, 1.0, 1.8, 2.6)[index // len(PHOTOS) % 4]
        size = (max(32, round(photo.width * scale)), max(32, round(photo.height * scale)))
        path = folder / f"{name}_{index:02d}.jpg"
        photo.resize(size, Image.Resampling.BILINEAR).save(path, quality=(60, 80, 95)[index % 3])
        paths.append(path)
    return paths


def stored_predictions(home: Path) -> dict[str, list[tuple]]:
    """File name -> its stored predictions (class, confidence, box), most confident first."""
    store = build_resources(Settings(home=home))["store"]
    rows = query(store, """SELECT regexp_extract(s.uri, '[^/]*$') AS file, p.class_name, p.confidence,
                                  p.x1, p.y1, p.x2, p.y2
                           FROM predictions p JOIN input_sources s USING (input_id)
                           ORDER BY file, p.confidence DESC, p.x1""")
    found: dict[str, list[tuple]] = {}
    for row in rows.itertuples():
        found.setdefault(row.file, []).append((row.class_name, row.confidence, row.x1, row.y1, row.x2, row.y2))
    return found


def test_the_preview_is_the_run_and_the_run_is_ultralytics_on_real_photos_and_demo_scenes(tmp_path: Path) -> None:
    """Every prediction of 40 demo scenes and 40 real JPEG photos of mixed sizes is the same (1e-6) in `dry-run` and
    in `run`, with the same band and status; and the run's predictions are Ultralytics' own `YOLO.predict` on the
    file (1e-3). Before, the run decoded large JPEGs at a reduced DCT scale: other pixels than the model's."""
    from ultralytics import YOLO

    inbox, home = tmp_path / "inbox", tmp_path / "home"
    files = write_demo_images(inbox, 40, seed=61) + write_real_photos(inbox, 40)
    autoannotate("run", "--inbox", str(inbox), "--json", home=home)
    stored = stored_predictions(home)
    preview = json.loads(autoannotate("--json", "dry-run", "--task-file", "tasks/demo.yaml", *map(str, files),
                                      home=home).stdout)
    task = yaml.safe_load(Path("tasks/demo.yaml").read_text())
    store = build_resources(Settings(home=home))["store"]
    states = query(store, """SELECT regexp_extract(s.uri, '[^/]*$') AS file, p.confidence, a.status
                             FROM annotation_state a JOIN predictions p USING (prediction_id)
                             JOIN input_sources s ON s.input_id = a.input_id""")
    compared = 0
    for image in preview["images"]:
        name = Path(image["image"]).name
        previewed = sorted(((p["class_name"], p["confidence"], *p["box"]) for p in image["predictions"]),
                           key=lambda p: (-p[1], p[2]))
        run = [p for p in stored.get(name, []) if p[0] in task["class_map"]]  # the preview routes mapped classes
        assert len(previewed) == len(run), name
        for seen, kept in zip(previewed, run, strict=True):
            assert seen[0] == kept[0], name
            assert np.allclose(seen[1:], kept[1:], atol=1e-6, rtol=0), (name, seen, kept)
        for p in image["predictions"]:
            if p["concept"] is None:
                continue
            written = states[(states.file == name) & ((states.confidence - p["confidence"]).abs() < 1e-6)]
            expected = {"accept": "SUCCESS", "review": "AWAITING_REVIEW"}.get(p["band"], "not written")
            assert p["status"] == expected
            assert (list(written["status"]) or ["not written"]) == [expected], (name, p)
        compared += len(run)
    assert compared > 100 and len(preview["images"]) == 80

    # Ultralytics' own predictor on the photos as files: the run's numbers to 1e-3.
    model = YOLO(str(DEMO_WEIGHTS))
    floor = min(0.05, task["thresholds"]["lower"])
    for path in [f for f in files if not f.name.startswith("scene")][:12] + files[:4]:
        result = model.predict(str(path), imgsz=256, conf=floor, verbose=False)[0]
        height, width = result.orig_shape
        theirs = sorted(((model.names[int(c)], float(s), *(np.asarray(b) / [width, height, width, height]))
                         for b, s, c in zip(result.boxes.xyxy.numpy(), result.boxes.conf.numpy(),
                                            result.boxes.cls.numpy(), strict=True)), key=lambda p: (-p[1], p[2]))
        ours = stored.get(path.name, [])
        confident = [p for p in theirs if p[1] > floor + 2e-3]  # a box at the floor may fall either side of it
        assert len([p for p in ours if p[1] > floor + 2e-3]) == len(confident), path.name
        for mine, other in zip([p for p in ours if p[1] > floor + 2e-3], confident, strict=True):
            assert mine[0] == other[0] and np.allclose(mine[1:], other[1:], atol=1e-3, rtol=0), (path.name, mine,
                                                                                                 other)


def test_a_fifo_in_the_inbox_is_skipped_with_a_reason_and_never_opened(tmp_path: Path) -> None:
    inbox, home = tmp_path / "inbox", tmp_path / "home"
    write_demo_images(inbox, 3, seed=62)
    os.mkfifo(inbox / "camera.jpg")
    first = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=home).stdout)
    assert first["ingestion"] == {"inputs": 3, "duplicates": 0, "rejected": 1}
    (rejection,) = first["rejections"]
    assert rejection["reason_code"] == "not_a_file"
    assert rejection["reason"] == ("camera.jpg is not a regular file (a pipe, socket or device); skipped without "
                                   "opening it.")
    again = autoannotate("run", "--inbox", str(inbox), home=home)  # the batch is complete: no hang finishing it
    assert "Nothing new in the inbox" in again.stdout


def test_a_file_still_being_written_is_left_and_a_rejected_file_is_taken_again_once_complete(tmp_path: Path
                                                                                               ) -> None:
    """A camera writing into the inbox: a run takes only settled files and says which it left; a file rejected as
    truncated is inspected again once its size or time changes, and becomes an input."""
    from apps.runner import pending_files

    inbox, home = tmp_path / "inbox", tmp_path / "home"
    (scene,) = write_demo_images(tmp_path / "camera", 1, seed=63)
    whole = scene.read_bytes()
    write_demo_images(inbox, 2, seed=64)
    growing = inbox / "growing.jpg"
    stop = threading.Event()

    def camera() -> None:
        with growing.open("wb") as handle:
            for start in range(0, len(whole), 64):
                if stop.is_set():
                    return
                handle.write(whole[start:start + 64])
                handle.flush()
                time.sleep(0.05)

    writer = threading.Thread(target=camera)
    writer.start()
    try:
        time.sleep(0.2)
        scan = pending_files(build_resources(Settings(home=home, inbox=inbox))["inbox"])
    finally:
        stop.set()
        writer.join()
    assert scan.still_written == [growing]
    assert sorted(p.name for p in scan.ready) == ["scene_0064_00000.jpg", "scene_0064_00001.jpg"]

    # A truncated file that looks settled (old) is rejected; once complete it is taken again.
    growing.write_bytes(whole[: len(whole) // 2])
    os.utime(growing, (time.time() - 120, time.time() - 120))
    first = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=home).stdout)
    assert first["ingestion"]["rejected"] == 1 and first["rejections"][0]["reason_code"] == "corrupt"
    assert first["still_written"] == []
    nothing = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=home).stdout)
    assert nothing["batch"] is None
    growing.write_bytes(whole)
    os.utime(growing, (time.time() - 60, time.time() - 60))
    second = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=home).stdout)
    assert second["files"] == 1
    assert second["ingestion"] == {"inputs": 1, "duplicates": 0, "rejected": 0}


def test_run_and_status_name_every_rejected_file_with_its_reason(tmp_path: Path) -> None:
    inbox, home = tmp_path / "inbox", tmp_path / "home"
    write_demo_images(inbox, 2, seed=65)
    for index in range(23):
        (inbox / f"broken_{index:02d}.jpg").write_bytes(b"")
    text = autoannotate("run", "--inbox", str(inbox), home=home).stdout
    assert "rejected files (23):" in text
    assert f"  {inbox / 'broken_00.jpg'}: broken_00.jpg is empty (0 bytes)." in text
    assert "  ... and 3 more" in text
    status = json.loads(autoannotate("status", "--json", home=home).stdout)
    assert status["rejected"] == 23 and len(status["rejected_files"]) == 20
    assert {r["reason"] for r in status["rejected_files"]} <= {f"broken_{i:02d}.jpg is empty (0 bytes)."
                                                                for i in range(23)}
    shown = autoannotate("status", home=home).stdout
    assert "rejected files (23):" in shown and shown.count("is empty (0 bytes).") == 20


def test_refused_runs_leave_the_remembered_tasks_alone(tmp_path: Path) -> None:
    inbox, home = tmp_path / "inbox", tmp_path / "home"
    write_demo_images(inbox, 2, seed=66)
    good = write_task_file(tmp_path, name="good")
    autoannotate("run", "--inbox", str(inbox), "--task-file", str(good), home=home)
    remembered = (home / "tasks.txt").read_text()
    missing = write_task_file(tmp_path, name="missing-weights", model={"weights": str(tmp_path / "nowhere.pt")})
    typo = write_task_file(tmp_path, name="typo", class_map={"circel": "ball"})
    for refused, sentence in ((missing, "do not exist"), (typo, "class_map names 'circel'")):
        result = autoannotate("run", "--inbox", str(inbox), "--task-file", str(refused), home=home, check=False)
        assert result.returncode == 1 and sentence in result.stderr, result.stderr
        assert (home / "tasks.txt").read_text() == remembered
    status = json.loads(autoannotate("status", "--json", home=home).stdout)
    assert list(status["tasks"]) == ["good"]


def test_calibrate_with_too_few_reference_boxes_says_so_and_writes_nothing(tmp_path: Path) -> None:
    inbox, home = tmp_path / "inbox", tmp_path / "home"
    write_demo_images(inbox, 3, seed=67)
    task = write_task_file(tmp_path, name="few")
    autoannotate("run", "--inbox", str(inbox), "--task-file", str(task), home=home)
    result = autoannotate("calibrate", "--task", "few", "--target-precision", "0.9", "--write", home=home,
                          check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("autoannotate: Nothing written: no concept of task 'few' can be calibrated")
    assert "ball: only 0 reference boxes, at least 20 are needed to calibrate (0 reference boxes)" in result.stderr
    assert not (tmp_path / "few.calibrated.yaml").exists()
    shown = json.loads(autoannotate("--json", "calibrate", "--task", "few", "--target-precision", "0.9",
                                    home=home).stdout)
    assert {c: p["upper"] for c, p in shown["concepts"].items()} == {"ball": None, "box": None, "sign": None}


def test_model_classes_reads_the_checkpoint_and_exports_nothing(tmp_path: Path) -> None:
    weights = tmp_path / "weights" / "best.pt"
    weights.parent.mkdir()
    shutil.copyfile(DEMO_WEIGHTS, weights)
    listed = json.loads(autoannotate("--json", "model", "classes", str(weights), home=tmp_path / "home").stdout)
    assert listed["models"][0]["classes"] == ["circle", "square", "triangle", "cross"]
    assert sorted(p.name for p in weights.parent.iterdir()) == ["best.pt"]


def test_review_list_shows_a_reviewer_s_finished_images(tmp_path: Path) -> None:
    inbox, home = tmp_path / "inbox", tmp_path / "home"
    write_demo_images(inbox, 12, seed=68)
    task = write_task_file(tmp_path, name="solo", reviewers=["alice"])
    autoannotate("run", "--inbox", str(inbox), "--task-file", str(task), home=home)
    queue = json.loads(autoannotate("--json", "review", "list", "--reviewer", "alice", home=home).stdout)
    first = queue["items"][0]["input_id"]
    for item in [i for i in queue["undecided"] if i["input_id"] == first]:
        autoannotate("review", "accept", item["annotation_id"], "--reviewer", "alice", home=home)
    listing = autoannotate("review", "list", "--reviewer", "alice", home=home)
    finished = [line for line in listing.stdout.splitlines() if line.startswith(first)]
    assert len(finished) == 1 and finished[0].rstrip().endswith("-"), listing.stdout


def test_exports_stand_alone_and_replace_a_folder_whole_or_not_at_all(tmp_path: Path) -> None:
    """The documented daily recipe exports into the same folder: a non-empty folder is refused unless --overwrite,
    which leaves exactly the new export (no image or label of the earlier one); images are real files named by
    their photo, so a copied export trains elsewhere; a failed export leaves the old one intact."""
    from datetime import UTC, datetime

    from ultralytics.data.utils import check_det_dataset

    inbox, home = tmp_path / "inbox", tmp_path / "home"
    write_demo_images(inbox, 16, seed=69)
    summary = json.loads(autoannotate("run", "--inbox", str(inbox), "--version", "--json", home=home).stdout)
    version = f"demo-shapes@{datetime.now(UTC).date().isoformat()}"
    negatives = summary["versions"][version]["negatives"]
    assert negatives > 0
    out = tmp_path / "exports" / "yolo"
    # The demo's negatives are the model's silence alone: by default they stay out, and the summary says so.
    default = json.loads(autoannotate("--json", "export", "--version", version, "--format", "yolo", "--out",
                                      str(tmp_path / "default"), home=home).stdout)
    assert (default["negatives"], default["person_negatives"], default["model_negatives"],
            default["negatives_left_out"]) == (0, 0, negatives, negatives)
    first = json.loads(autoannotate("--json", "export", "--version", version, "--format", "yolo", "--out", str(out),
                                    "--negatives", "all", home=home).stdout)
    assert first["negatives"] == negatives
    images = sorted(p for p in (out / "images").rglob("*") if p.is_file())
    assert len(images) == first["train"] + first["val"] + first["test"]
    assert all(not p.is_symlink() and p.stat().st_nlink == 1 for p in images)  # files of their own, not the store's
    names = {p.name for p in images}
    assert all(re.fullmatch(r"scene_0069_\d{5}-[0-9a-f]{12}\.jpg", n) for n in names), names
    assert "path" not in yaml.safe_load((out / "data.yaml").read_text())

    refused = autoannotate("export", "--version", version, "--format", "yolo", "--out", str(out), "--no-negatives",
                           home=home, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"autoannotate: --out {out} already holds 4 entries (an earlier export?); "
                                      "exporting into it would mix two datasets. Pass --overwrite to replace the "
                                      "folder whole, or give an empty folder.")
    assert sorted(p.name for p in (out / "images").rglob("*") if p.is_file()) == sorted(names)
    replaced = json.loads(autoannotate("--json", "export", "--version", version, "--format", "yolo", "--out",
                                       str(out), "--no-negatives", "--overwrite", home=home).stdout)
    kept = [p for p in (out / "images").rglob("*") if p.is_file()]
    labels = list((out / "labels").rglob("*.txt"))
    assert len(kept) == len(labels) == len(images) - negatives == replaced["train"] + replaced["val"] + \
        replaced["test"]
    assert all(label.read_text() for label in labels)  # no empty label file of the earlier negatives is left
    assert sorted(p.name for p in out.parent.iterdir()) == ["yolo"]  # nothing half-written beside it

    elsewhere = tmp_path / "other-machine" / "dataset"
    shutil.copytree(out, elsewhere)
    shutil.rmtree(out)
    data = check_det_dataset(str(elsewhere / "data.yaml"))
    assert Path(data["train"]).is_relative_to(elsewhere) and len(list(Path(data["train"]).iterdir())) > 0

    # A stored image gone: the export fails, and the folder it was to replace is as it was.
    shutil.copytree(elsewhere, out)
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    gone = next(iter(exported_input_ids(elsewhere).values()))
    (home / "images" / gone[:2] / gone).unlink()
    failed = autoannotate("export", "--version", version, "--format", "coco", "--out", str(out), "--overwrite",
                          home=home, check=False)
    assert failed.returncode == 1
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["yolo"]


def live_annotations(home: Path, task: str = "demo-shapes") -> int:
    store = build_resources(Settings(home=home))["store"]
    return int(query(store, "SELECT count(*) FROM annotation_state WHERE task = ? AND status IN "
                            "('SUCCESS', 'AWAITING_REVIEW', 'PENDING')", [task]).iloc[0, 0])


@pytest.mark.parametrize("photos", [False, True], ids=["demo-scenes", "real-photos"])
def test_re_importing_a_version_s_own_export_gives_no_object_a_second_annotation(tmp_path: Path, photos: bool
                                                                                  ) -> None:
    """Export today's version as YOLO and import it again: refused as this home's own export unless --as-people;
    with it, every label matches the annotation it was exported from and is unchanged (its annotator, the model
    or a person, stays: the model's boxes never become people's), so live annotations and the next version's
    boxes stay as they were; a second import says the same and writes nothing. Before, every object got a second
    annotation and the next version exported both; after that, every label took its annotation over as an
    `import`, and the model was measured against itself."""
    from datetime import UTC, datetime

    inbox, home = tmp_path / "inbox", tmp_path / "home"
    write_demo_images(inbox, 20, seed=70)
    if photos:
        write_real_photos(inbox, 10)
    summary = json.loads(autoannotate("run", "--inbox", str(inbox), "--version", "--json", home=home).stdout)
    version = f"demo-shapes@{datetime.now(UTC).date().isoformat()}"
    exported_boxes = summary["versions"][version]["annotations"]
    before = live_annotations(home)
    store = build_resources(Settings(home=home))["store"]
    sources_of = "SELECT source, count(*) AS n FROM annotation_state WHERE status = 'SUCCESS' GROUP BY 1"
    sources = query(store, sources_of)
    autoannotate("export", "--version", version, "--format", "yolo", "--out", str(tmp_path / "export"), home=home)
    refused = autoannotate("import", "--format", "yolo", str(tmp_path / "export"), "--user", "carol", home=home,
                           check=False)
    assert refused.returncode == 1 and "is this home's own export of" in refused.stderr
    imported = json.loads(autoannotate("--json", "import", "--format", "yolo", str(tmp_path / "export"), "--user",
                                       "carol", "--as-people", home=home).stdout)
    assert imported["labels"] == exported_boxes
    assert (imported["matched_existing"], imported["taken_over"], imported["unchanged"], imported["new_labels"]) == (
        exported_boxes, 0, exported_boxes, 0)
    assert live_annotations(home) == before
    assert query(store, sources_of).equals(sources)  # whoever made each annotation still did
    again = json.loads(autoannotate("--json", "import", "--format", "yolo", str(tmp_path / "export"), "--user",
                                    "carol", "--as-people", home=home).stdout)
    assert (again["annotations_written"], again["unchanged"]) == (0, exported_boxes)
    rebuilt = json.loads(autoannotate("--json", "version", "create", home=home).stdout)
    assert rebuilt["versions"][version]["annotations"] == exported_boxes
    assert query(store, "SELECT count(*) AS n FROM annotation_state")["n"][0] == \
        query(store, "SELECT count(DISTINCT annotation_id) AS n FROM annotations")["n"][0]
    batch = summary["batch"]
    assert store.read(lambda s: s.history.overlapping_live_pairs(batch)).empty


def test_byte_identical_images_under_two_names_get_one_set_of_labels(tmp_path: Path) -> None:
    """A VOC dataset with the same photo under two names, each file labelled (one box a few pixels apart, one box
    only in the second): one stored image, one annotation per object, and the summary names both files."""
    import skimage.data

    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "JPEGImages").mkdir()
    Image.fromarray(skimage.data.chelsea()).save(voc / "JPEGImages" / "cat.jpg", quality=90)
    shutil.copyfile(voc / "JPEGImages" / "cat.jpg", voc / "JPEGImages" / "cat_copy.jpg")

    def xml(name: str, boxes: list[tuple]) -> str:
        objects = "".join(f"<object><name>{c}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{x}</xmax>"
                          f"<ymax>{y}</ymax></bndbox></object>" for c, a, b, x, y in boxes)
        return f"<annotation><filename>{name}</filename><size><width>451</width><height>300</height></size>" \
               f"{objects}</annotation>"

    (voc / "Annotations" / "cat.xml").write_text(xml("cat.jpg", [("ball", 100, 50, 300, 280)]))
    (voc / "Annotations" / "cat_copy.xml").write_text(xml("cat_copy.jpg", [("ball", 103, 52, 298, 281),
                                                                          ("box", 10, 10, 60, 60)]))
    home = tmp_path / "home"
    result = json.loads(autoannotate("--json", "import", "--format", "voc", str(voc), "--user", "carol",
                                     home=home).stdout)
    assert (result["images"], result["new_inputs"], result["annotations_written"]) == (2, 1, 2)
    (duplicate,) = result["identical_files"]
    assert [Path(f).name for f in duplicate["files"]] == ["cat.jpg", "cat_copy.jpg"]
    assert (duplicate["labels"], duplicate["conflicting_labels"]) == (2, 1)
    text = autoannotate("import", "--format", "voc", str(voc), "--user", "carol", home=home).stdout
    assert "byte-identical files, one image:" in text and "cat_copy.jpg" in text
    store = build_resources(Settings(home=home))["store"]
    rows = query(store, "SELECT concept, x1 FROM annotation_state ORDER BY concept")
    assert list(rows["concept"]) == ["ball", "box"]
    assert rows["x1"][0] == pytest.approx(100 / 451)  # the first file's box stands


def test_two_overlapping_live_boxes_of_one_object_are_found(tmp_path: Path) -> None:
    """The store's duplicate finder (behind the blocking `one_annotation_per_object` check): two live boxes of one
    concept at IoU >= 0.9 on one image are a pair, a box beside them is not."""
    from datetime import UTC, datetime

    from core.annotations import AnnotationEvent, Source, Status

    home = tmp_path / "home"
    store = build_resources(Settings(home=home))["store"]
    now = datetime.now(UTC).replace(tzinfo=None)

    def event(name: str, x1: float) -> AnnotationEvent:
        return AnnotationEvent(name.ljust(32, "0"), "t", "f" * 64, None, None, "b1", "ball", x1, 0.1, x1 + 0.5,
                               0.6, None, None, Status.SUCCESS, "carol", Source.IMPORT, now)

    store.write(lambda s: s.history.append([event("a", 0.10), event("b", 0.11), event("c", 0.45)]))
    pairs = store.read(lambda s: s.history.overlapping_live_pairs("b1"))
    assert len(pairs) == 1 and (pairs["first"][0][:1], pairs["second"][0][:1]) == ("a", "b")
    assert pairs["iou"][0] == pytest.approx(0.9608, abs=1e-4)


def summary_day() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).date().isoformat()


def labelled_scenes(root: Path, count: int, seed: int) -> int:
    """A YOLO dataset of demo scenes labelled with the demo task's concepts (crosses are not part of it); returns
    how many boxes it holds."""
    from helpers import CONCEPT_OF, NAMES

    from apps.demo_scenes import generate_scene

    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    boxes = 0
    for index in range(count):
        image, objects = generate_scene(seed + index, hard=index % 2 == 1)
        image.save(root / "images" / "train" / f"labelled_{index:03d}.jpg", quality=92)
        lines = [f"{NAMES.index(CONCEPT_OF[o.class_name])} {(o.x1 + o.x2) / 2 / image.width:.6f} "
                 f"{(o.y1 + o.y2) / 2 / image.height:.6f} {(o.x2 - o.x1) / image.width:.6f} "
                 f"{(o.y2 - o.y1) / image.height:.6f}" for o in objects if o.class_name in CONCEPT_OF]
        (root / "labels" / "train" / f"labelled_{index:03d}.txt").write_text("".join(f"{line}\n" for line in lines))
        boxes += len(lines)
    (root / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [ball, box, sign]\n")
    return boxes


def test_imported_images_are_predicted_by_the_next_run_and_calibrate_on_their_labels(tmp_path: Path) -> None:
    """Import a labelled half, put the other half in the inbox: `status` says the import's batch is not predicted
    yet, the next `run` predicts and routes it (no label gets a second annotation: a person's label wins over the
    prediction it matches), and `quality` and `calibrate` rest on exactly the imported boxes."""
    home = tmp_path / "home"
    imported_boxes = labelled_scenes(tmp_path / "dataset", 40, seed=8_100_000)
    write_demo_images(tmp_path / "inbox", 20, seed=71)
    result = json.loads(autoannotate("--json", "import", "--format", "yolo", str(tmp_path / "dataset"), "--user",
                                     "carol", home=home).stdout)
    assert result["annotations_written"] == imported_boxes
    status = json.loads(autoannotate("--json", "status", home=home).stdout)
    assert status["unfinished_batches"] == {result["batch"]: "not predicted"}
    assert status["tasks"]["demo-shapes"]["inputs_processed"] == 0
    summary = json.loads(autoannotate("--json", "run", "--inbox", str(tmp_path / "inbox"), home=home).stdout)
    assert summary["resumed"] == [{"batch": result["batch"], "stage": "not predicted", "inputs": 40}]
    assert summary["ingestion"]["inputs"] == 20
    status = json.loads(autoannotate("--json", "status", home=home).stdout)
    assert status["unfinished_batches"] == {} and status["tasks"]["demo-shapes"]["inputs_processed"] == 60
    store = build_resources(Settings(home=home))["store"]
    assert store.read(lambda s: s.history.overlapping_live_pairs(result["batch"])).empty
    people = query(store, "SELECT count(*) AS n FROM annotation_state WHERE source = 'import' AND status = 'SUCCESS'")
    assert people["n"][0] == imported_boxes  # every label stands, none was replaced by a prediction
    # The model predicted the labelled images (quality measures those predictions) but invented nothing there.
    on_labelled = query(store, "SELECT (SELECT count(*) FROM predictions WHERE batch = $b) AS predicted, "
                               "(SELECT count(*) FROM annotation_state WHERE batch = $b AND source = 'auto') AS auto",
                        {"b": result["batch"]})
    assert on_labelled["predicted"][0] > imported_boxes and on_labelled["auto"][0] == 0
    autoannotate("version", "create", home=home)
    exported = json.loads(autoannotate("--json", "export", "--version", f"demo-shapes@{summary_day()}", "--format",
                                       "yolo", "--out", str(tmp_path / "export"), home=home).stdout)
    empty = sum(1 for p in (tmp_path / "dataset" / "labels" / "train").iterdir() if not p.read_text().strip())
    labelled = list((tmp_path / "export" / "labels").rglob("labelled_*.txt"))
    assert len(labelled) == 40 and exported["person_negatives"] == empty  # a person said: nothing there
    assert sum(len(p.read_text().splitlines()) for p in labelled) == imported_boxes  # exactly the ground truth
    quality = json.loads(autoannotate("--json", "quality", home=home).stdout)
    assert sum(c["reference_boxes"] for c in quality["concepts"].values()) == imported_boxes
    calibration = json.loads(autoannotate("--json", "calibrate", "--target-precision", "0.8", home=home).stdout)
    assert sum(c["reference_boxes"] for c in calibration["concepts"].values()) == imported_boxes
    assert any(c["upper"] is not None for c in calibration["concepts"].values())
    again = json.loads(autoannotate("--json", "run", "--inbox", str(tmp_path / "inbox"), home=home).stdout)
    assert (again["batch"], again["resumed"]) == (None, [])


def test_the_model_s_negatives_go_in_by_default_only_when_spot_checks_bound_its_misses(tmp_path: Path) -> None:
    """Every discarded prediction is spot-checked and a reviewer rejects each (none was a missed object): with
    `model_negatives_below_miss_rate: 0.2` the measured miss rate's upper bound is below it, so a plain export
    takes the model's negatives (grey images it found nothing on) too; without the field, only people's."""
    from datetime import UTC, datetime

    from apps.review_desk import ReviewDesk

    inbox, home = tmp_path / "inbox", tmp_path / "home"
    write_demo_images(inbox, 12, seed=72)
    for grey in range(3):
        Image.new("RGB", (200, 150), (40 + grey * 60,) * 3).save(inbox / f"grey_{grey}.png")
    checked = write_task_file(tmp_path, name="checked", reviewers=["alice"], spot_check={"discarded": 1.0},
                              model_negatives_below_miss_rate=0.2)
    autoannotate("run", "--inbox", str(inbox), "--task-file", str(checked), home=home)
    resources = build_resources(Settings(home=home, task_files=(str(checked),)))
    store, tasks = resources["store"], resources["tasks"].load()
    spot = query(store, "SELECT annotation_id FROM spot_checks WHERE band = 'discard'")["annotation_id"]
    assert len(spot) >= 16
    desk = ReviewDesk(store, tasks)
    for annotation_id in spot:
        desk.decide(annotation_id, "reject", "alice")
    version = f"checked@{datetime.now(UTC).date().isoformat()}"
    autoannotate("version", "create", home=home)
    chosen = json.loads(autoannotate("--json", "export", "--version", version, "--format", "yolo", "--out",
                                     str(tmp_path / "a"), home=home).stdout)
    assert chosen["negatives_chosen"].startswith(f"the model's negatives too: 0 missed objects in {len(spot)} ")
    assert chosen["model_negatives"] >= 3 and chosen["negatives"] == chosen["model_negatives"] + \
        chosen["person_negatives"]
    (tmp_path / "plain").mkdir()
    plain = write_task_file(tmp_path / "plain", name="checked", reviewers=["alice"], spot_check={"discarded": 1.0})
    autoannotate("run", "--inbox", str(inbox), "--task-file", str(plain), home=home)
    people = json.loads(autoannotate("--json", "export", "--version", version, "--format", "yolo", "--out",
                                     str(tmp_path / "b"), home=home).stdout)
    assert people["negatives_chosen"].startswith("only people's negatives: the task states no")
    assert people["negatives"] == people["person_negatives"] == chosen["person_negatives"]


def test_a_task_added_to_a_home_routes_the_earlier_batches_and_says_how_many_inputs(tmp_path: Path) -> None:
    inbox, home = tmp_path / "inbox", tmp_path / "home"
    write_demo_images(inbox, 6, seed=73)
    first = write_task_file(tmp_path, name="first")
    autoannotate("run", "--inbox", str(inbox), "--task-file", str(first), home=home)
    second = write_task_file(tmp_path, name="second", concepts=["ball"], class_map={"circle": "ball"},
                             thresholds={"upper": 0.5, "lower": 0.5}, reviewers=[])
    result = autoannotate("run", "--inbox", str(inbox), "--task-file", str(first), "--task-file", str(second),
                          home=home)
    (line,) = [text for text in result.stdout.splitlines() if text.startswith("finished batch")]
    assert "(6 inputs), which was not routed" in line
    status = json.loads(autoannotate("--json", "status", home=home).stdout)
    assert status["tasks"]["second"]["inputs_processed"] == 6
