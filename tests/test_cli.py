"""The `autoannotate` console script, run as a user runs it."""

import json
import random
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import autoannotate, suggestions_dataset, write_task_file
from PIL import Image, ImageOps

REAL_PHOTOS = [
    *Path(sys.prefix).glob("lib/python3*/site-packages/ultralytics/assets/*.jpg"),
    *Path(sys.prefix).glob("lib/python3*/site-packages/matplotlib/mpl-data/sample_data/grace_hopper.jpg"),
]


def write_real_world_jpegs(folder: Path, count: int) -> int:
    """Crops, rescales and re-encodings (baseline, progressive, EXIF-rotated) of real photographs."""
    rng = random.Random(7)
    photos = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in REAL_PHOTOS]
    for index in range(count):
        photo = photos[index % len(photos)]
        w, h = photo.size
        cw, ch = rng.randint(w // 3, w), rng.randint(h // 3, h)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = photo.crop((x, y, x + cw, y + ch)).resize((max(32, cw // 2), max(32, ch // 2)))
        options = {"quality": rng.randint(60, 95), "progressive": index % 3 == 0}
        if index % 5 == 0:
            exif = Image.Exif()
            exif[0x0112] = rng.choice([3, 6, 8])
            options["exif"] = exif
        sub = folder / f"camera{index % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        crop.save(sub / f"IMG_{index:04d}.JPG", **options)
    return count


@pytest.mark.skipif(not REAL_PHOTOS, reason="no photographs in the installed packages")
def test_run_json_reports_every_good_image_and_every_broken_file(tmp_path: Path) -> None:
    inbox = tmp_path / "photos"
    good = write_real_world_jpegs(inbox, 300)
    (inbox / "broken").mkdir()
    data = (inbox / "camera0" / "IMG_0000.JPG").read_bytes()
    (inbox / "broken" / "half.jpg").write_bytes(data[: len(data) // 3])
    (inbox / "broken" / "zero.jpg").write_bytes(b"")
    (inbox / "broken" / "page.jpeg").write_text("<html>404 not found</html>")

    result = autoannotate("run", "--inbox", str(inbox), "--json", home=tmp_path / "home")
    summary = json.loads(result.stdout)
    assert summary["files"] == good + 3
    assert summary["ingestion"] == {"inputs": good, "duplicates": 0, "rejected": 3}
    reasons = {Path(r["uri"]).name: r["reason_code"] for r in summary["rejections"]}
    assert reasons == {"half.jpg": "corrupt", "zero.jpg": "empty", "page.jpeg": "not_an_image"}

    status = json.loads(autoannotate("status", "--json", home=tmp_path / "home").stdout)
    assert (status["inputs"], status["rejected"]) == (good, 3)
    again = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=tmp_path / "home").stdout)
    assert again["batch"] is None


def test_demo_then_run_on_the_default_inbox(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert "wrote 6 demo images" in autoannotate("demo", "--count", "6", home=home).stdout
    assert "wrote 0 demo images" in autoannotate("demo", "--if-empty", home=home).stdout
    summary = json.loads(autoannotate("run", "--json", home=home).stdout)
    assert summary["ingestion"]["inputs"] == 6
    assert "versions" not in summary  # a batch costs what the batch costs: no whole-dataset manifest
    assert not (home / "versions").exists()
    autoannotate("demo", "--count", "2", "--seed", "7", home=home)
    summary = json.loads(autoannotate("run", "--json", "--version", home=home).stdout)  # what `make run` does
    today = datetime.now(UTC).date().isoformat()
    assert summary["ingestion"]["inputs"] == 2
    assert list(summary["versions"]) == [f"demo-shapes@{today}"]
    manifest = (home / "versions" / "demo-shapes" / today / "manifest.tsv").read_text().splitlines()
    built = summary["versions"][f"demo-shapes@{today}"]
    assert len(manifest) - 1 == built["annotations"] + built["negatives"] and built["annotations"] > 0


def test_errors_are_one_line_and_non_zero(tmp_path: Path) -> None:
    result = autoannotate("run", "--inbox", str(tmp_path / "missing"), home=tmp_path / "home", check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == f"autoannotate: The inbox {tmp_path / 'missing'} is not a folder."


def every_verb(parser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every verb and group of verbs the parser has, as the words a user types."""
    import argparse

    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += [(*path, name), *every_verb(child, (*path, name))]
    return found


def test_every_verb_help_ends_with_an_example_of_that_verb(capsys: pytest.CaptureFixture) -> None:
    from apps.cli import build_parser

    verbs = every_verb(build_parser())
    assert len(verbs) == 31  # 10 verbs and 4 groups (review, version, model, input) of 17 verbs
    for verb in verbs:
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([*verb, "--help"])
        assert exited.value.code == 0
        example = capsys.readouterr().out.rsplit("example:\n  ", 1)[1]
        assert example.startswith(f"autoannotate {verb[0]}"), verb
        if len(verb) == 2:
            assert example.startswith(f"autoannotate {' '.join(verb)}"), verb


def test_task_is_a_name_and_task_file_a_file_and_the_old_spelling_still_works(home: Path, tmp_path: Path) -> None:
    """`--task` names a configured task everywhere; a file is `--task-file`. `run --task FILE` and `dry-run --task
    FILE` (earlier releases) still work for one release, with a deprecation line."""
    from apps.demo_scenes import write_demo_images

    images = write_demo_images(tmp_path / "in", 2, seed=8)
    task = write_task_file(tmp_path, name="named")
    old = autoannotate("run", "--inbox", str(tmp_path / "in"), "--task", str(task), home=home)
    assert f"--task {task} names a file: this spelling is deprecated" in old.stderr
    assert f"use --task-file {task}" in old.stderr
    assert json.loads(autoannotate("--json", "status", home=home).stdout)["tasks"].keys() == {"named"}
    by_name = json.loads(autoannotate("--json", "dry-run", "--task", "named", str(images[0]), home=home).stdout)
    by_file = json.loads(autoannotate("--json", "dry-run", "--task-file", str(task), str(images[0]), home=home).stdout)
    assert by_name == by_file and by_name["task"] == "named"
    refused = autoannotate("run", "--task", "named", home=home, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("autoannotate: --task named: `run` annotates with every configured task; "
                                      "choose the tasks it runs with --task-file FILE (repeatable).")


def test_class_ids_never_move_and_stray_concepts_and_tasks_are_refused(tmp_path: Path) -> None:
    """A model trained on last week's export must read this week's: class ids stay put when a stray concept is
    offered (refused) and when the task file lists its concepts in another order with one more."""
    import yaml
    from helpers import write_task_file

    from apps.demo_scenes import write_demo_images

    home, today = tmp_path / "home", datetime.now(UTC).date().isoformat()

    def exported_names(out: str) -> dict:
        autoannotate("export", "--version", f"demo-shapes@{today}", "--format", "yolo", "--out",
                     str(tmp_path / out), home=home, env=env)
        names = yaml.safe_load((tmp_path / out / "data.yaml").read_text())["names"]
        return dict(enumerate(names)) if isinstance(names, list) else names

    env = {}
    write_demo_images(tmp_path / "a", 8, seed=51)
    autoannotate("run", "--inbox", str(tmp_path / "a"), "--version", home=home)
    assert exported_names("v1") == {0: "ball", 1: "box", 2: "sign"}

    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    Image.new("RGB", (100, 80)).save(voc / "a.png")
    (voc / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><size><width>100</width><height>80</height></size>"
        "<object><name>raccoon</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>50</xmax><ymax>40</ymax></bndbox>"
        "</object></annotation>")
    refused = autoannotate("import", "--format", "voc", str(voc), "--user", "u", home=home, check=False)
    assert refused.returncode == 1
    assert "1 labels name concepts task 'demo-shapes' does not have: raccoon (1); its concepts are ball, box, " \
           "sign" in refused.stderr
    unknown = autoannotate("import", "--format", "voc", str(voc), "--user", "u", "--task", "raccoons", home=home,
                           check=False)
    assert unknown.returncode == 1 and "No task named 'raccoons'; configured: demo-shapes" in unknown.stderr

    task = write_task_file(tmp_path, concepts=["sign", "ball", "box", "raccoon"])
    env = {"AUTOANNOTATE_TASKS": str(task)}
    write_demo_images(tmp_path / "b", 4, seed=52)
    autoannotate("run", "--inbox", str(tmp_path / "b"), "--version", home=home, env=env)
    assert exported_names("v2") == {0: "ball", 1: "box", 2: "sign", 3: "raccoon"}


def test_every_refusal_is_one_line_exit_1_and_says_what_to_do(tmp_path: Path) -> None:
    import socket

    home = tmp_path / "home"

    def refused(*args: str) -> str:
        result = autoannotate(*args, home=home, check=False)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        return result.stderr.strip()

    assert refused("run", "--bogus") == "autoannotate: unrecognized arguments: --bogus (see `autoannotate --help`)."
    assert refused("review", "list") == ("autoannotate: the following arguments are required: --reviewer (see "
                                         "`autoannotate review list --help`).")
    assert refused("status", "--task", "nope") == (
        "autoannotate: No task named 'nope'; configured: demo-shapes (the task files are AUTOANNOTATE_TASKS="
        "a.yaml:b.yaml if set, else those of the last `run --task-file`, kept in the home's tasks.txt, else "
        "tasks/demo.yaml).")
    assert refused("review", "list", "--reviewer", "zed") == (
        "autoannotate: 'zed' is not a reviewer of task 'demo-shapes' (reviewers: alice, bob, carol).")
    today = datetime.now(UTC).date().isoformat()
    assert refused("export", "--version", "demo-shapes", "--format", "yolo", "--out", str(tmp_path / "x")) == (
        f"autoannotate: No dataset version 'demo-shapes': a version key is TASK@DAY, e.g. demo-shapes@{today}.")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert refused("review", "serve", "--port", str(port)) == (
            f"autoannotate: Cannot serve the review page on 127.0.0.1:{port}: address already in use; pass --port "
            "with a free port.")

    assert autoannotate("run", home=home).stdout.strip() == (
        f"The inbox {home / 'inbox'} does not exist: put images there, or pass --inbox FOLDER.")
    assert autoannotate("review", "list", "--reviewer", "bob", "--pending", home=home).stdout.strip() == (
        "bob has nothing left to review in task demo-shapes.")
    assert json.loads(autoannotate("--json", "status", home=home).stdout)["inputs"] == 0  # --json before the verb


def test_the_tasks_of_the_last_run_are_the_tasks_every_command_sees(tmp_path: Path) -> None:
    from helpers import write_task_file

    from apps.demo_scenes import write_demo_images

    home = tmp_path / "home"
    task = write_task_file(tmp_path, name="parcels", reviewers=["dora"])
    write_demo_images(tmp_path / "in", 6, seed=3)
    autoannotate("run", "--inbox", str(tmp_path / "in"), "--task-file", str(task), home=home)
    assert (home / "tasks.txt").read_text() == f"{task}\n"
    status = json.loads(autoannotate("status", "--json", home=home).stdout)
    assert list(status["tasks"]) == ["parcels"]
    assert json.loads(autoannotate("review", "list", "--reviewer", "dora", "--json", home=home).stdout)["task"] \
        == "parcels"
    rows = autoannotate("status", home=home).stdout.split("annotations (current state):")[1].split("\n\n")[0]
    cells = [line.split() for line in rows.strip().splitlines()[2:]]
    assert cells and all(len(row) == 4 and all(c.isdigit() for c in row[1:]) for row in cells)  # no blank cells

    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\n")
    result = autoannotate("run", "--task-file", str(broken), home=home, check=False)
    assert result.returncode == 1 and "concepts: Field required" in result.stderr
    assert (home / "tasks.txt").read_text() == f"{task}\n"  # a broken file is not remembered
    both = autoannotate("run", "--task-file", str(task), home=home, env={"AUTOANNOTATE_TASKS": str(task)}, check=False)
    assert both.returncode == 1 and "AUTOANNOTATE_TASKS is set" in both.stderr


def test_a_class_map_naming_a_class_the_model_lacks_is_refused_and_model_classes_lists_them(tmp_path: Path) -> None:
    from helpers import write_task_file

    from apps.demo_scenes import write_demo_images

    home = tmp_path / "home"
    typo = write_task_file(tmp_path, class_map={"circel": "ball", "square": "box", "triangle": "sign"})
    images = write_demo_images(tmp_path / "in", 3, seed=9)
    sentence = (f"{typo}: class_map names 'circel', which the model demo_detector.pt does not have; its classes are "
                "circle, square, triangle, cross (`autoannotate model classes` lists them).")
    dry = autoannotate("dry-run", "--task-file", str(typo), str(images[0]), home=home, check=False)
    assert (dry.returncode, dry.stderr.strip()) == (1, f"autoannotate: {sentence}")
    run = autoannotate("run", "--inbox", str(tmp_path / "in"), "--task-file", str(typo), home=home, check=False)
    assert run.returncode == 1 and sentence in run.stderr
    assert json.loads(autoannotate("status", "--json", home=home).stdout)["predictions"] == 0

    fixed = write_task_file(tmp_path, class_map={"circle": "ball", "square": "box", "triangle": "sign"})
    assert fixed == typo
    # The refused run took nothing (it was refused before any file was pinned): the fixed one takes the files.
    resumed = json.loads(autoannotate("run", "--inbox", str(tmp_path / "in"), "--json", home=home).stdout)
    assert resumed["resumed"] == [] and (resumed["files"], resumed["ingestion"]["inputs"]) == (3, 3)
    assert json.loads(autoannotate("status", "--json", home=home).stdout)["predictions"] > 0

    listing = json.loads(autoannotate("model", "classes", "--json", home=home).stdout)["models"]
    assert [m["classes"] for m in listing] == [["circle", "square", "triangle", "cross"]]
    assert listing[0]["tasks"] == {"demo-shapes": {"circle": "ball", "square": "box", "triangle": "sign",
                                                   "cross": None}}
    missing = autoannotate("model", "classes", str(tmp_path / "nope.pt"), home=home, check=False)
    assert missing.returncode == 1 and str(tmp_path / "nope.pt") in missing.stderr


def test_suggestions_named_versions_and_exports_from_the_command_line(tmp_path: Path) -> None:
    """`import --as suggestions`, `review reopen`, `version create --name` (twice: refused) and `export` with
    negatives, as a user types them."""
    home = tmp_path / "home"
    autoannotate("demo", "--count", "4", home=home)
    Image.new("RGB", (320, 240), (128, 128, 128)).save(home / "inbox" / "empty-wall.png")
    autoannotate("run", home=home)
    suggestions_dataset(tmp_path / "suggested", 3)
    imported = json.loads(autoannotate("import", "--format", "yolo", str(tmp_path / "suggested"), "--user",
                                       "model-v2", "--as", "suggestions", "--json", home=home).stdout)
    assert (imported["status"], imported["newly_assigned"]) == ("AWAITING_REVIEW", 3)
    queue = json.loads(autoannotate("review", "list", "--reviewer", "alice", "--json", home=home).stdout)
    suggestion = next(i for i in queue["undecided"] if i["confidence"] is not None and i["confidence"] >= 0.8
                      and "suggest" in i["file"])
    autoannotate("review", "accept", suggestion["annotation_id"], "--reviewer", "alice", home=home)
    reopened = json.loads(autoannotate("review", "reopen", suggestion["annotation_id"], "--reviewer", "alice",
                                       "--json", home=home).stdout)
    assert (reopened["status"], reopened["written"]) == ("AWAITING_REVIEW", 1)

    created = json.loads(autoannotate("version", "create", "--name", "release-1", "--json", home=home).stdout)
    assert list(created["versions"]) == ["demo-shapes@release-1"]
    assert created["versions"]["demo-shapes@release-1"]["negatives"] >= 1  # the empty wall, at least
    again = autoannotate("version", "create", "--name", "release-1", home=home, check=False)
    assert (again.returncode, again.stderr.strip()) == (1, "autoannotate: Version demo-shapes@release-1 already "
                                                           "exists and is frozen: a named version never changes; "
                                                           "pick another name.")
    today = datetime.now(UTC).date().isoformat()
    daily = json.loads(autoannotate("version", "create", "--json", home=home).stdout)["versions"]
    listed = json.loads(autoannotate("version", "list", "--json", home=home).stdout)["versions"]
    assert {v["version_key"]: (v["frozen"], v["annotations"], v["inputs"], v["negatives"], v["manifest_sha256"])
            for v in listed} == {
        key: (key.endswith("release-1"), v["annotations"], v["inputs"], v["negatives"], v["manifest_sha256"])
        for key, v in {**created["versions"], **daily}.items()}
    assert set(listed[0]["per_concept"]) <= {"ball", "box", "sign"} and listed[0]["day"] == today
    text = autoannotate("version", "list", "--task", "demo-shapes", home=home).stdout
    assert "demo-shapes@release-1" in text and f"demo-shapes@{today}" in text and "frozen" in text
    typo = autoannotate("version", "list", "--task", "demo-shape", home=home, check=False)
    assert (typo.returncode, typo.stderr.strip()) == (1, "autoannotate: No dataset versions of task 'demo-shape': "
                                                         "the stored versions are of demo-shapes.")
    exported = autoannotate("export", "--version", "demo-shapes@release-1", "--format", "yolo", "--out",
                            str(tmp_path / "out"), "--negatives", "all", home=home).stdout
    negatives = created["versions"]["demo-shapes@release-1"]["negatives"]
    assert f"; {negatives} negative images (no objects)" in exported
    assert (tmp_path / "out" / "autoannotate_export.json").is_file()
    coco = autoannotate("export", "--version", "demo-shapes@release-1", "--format", "coco", "--out",
                        str(tmp_path / "coco"), "--negatives", "all", home=home).stdout
    images = len(json.loads((tmp_path / "coco" / "annotations.json").read_text())["images"])
    per_split = {split: len(json.loads((tmp_path / "coco" / f"annotations_{split}.json").read_text())["images"])
                 for split in ("train", "val", "test")}
    assert f"images: train {per_split['train']}, val {per_split['val']}, test {per_split['test']}; " in coco
    assert sum(per_split.values()) == images >= negatives + 1


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture) -> None:
    """`autoannotate review list | head` printed "autoannotate: [Errno 32] Broken pipe" when head had its lines."""
    from apps.cli import main

    class ClosedPipe:
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["demo", "--count", "1", "--inbox", str(tmp_path / "inbox")]) == 141  # 128 + SIGPIPE, as `cat`
    sys.stdout.flush()  # what the console script does last: no second error
    assert capsys.readouterr().err == ""


def test_an_export_of_a_version_people_changed_since_names_the_command_that_rebuilds_it(tmp_path: Path) -> None:
    """Before: "... no longer matches its manifest; re-create the version", without the command."""
    import json
    from datetime import UTC, datetime

    from helpers import query, write_task_file

    from apps.demo_scenes import write_demo_images
    from core.settings import Settings
    from resources import build_resources

    home = tmp_path / "home"
    task = write_task_file(tmp_path, thresholds={"upper": 0.99, "lower": 0.2}, reviewers=["alice"])
    write_demo_images(home / "inbox", 6, seed=45)
    autoannotate("run", "--task-file", str(task), "--version", home=home)
    store = build_resources(Settings(home=home, task_files=(str(task),)))["store"]
    waiting = query(store, "SELECT annotation_id FROM annotation_state WHERE status = 'AWAITING_REVIEW' LIMIT 1")
    autoannotate("review", "accept", waiting["annotation_id"][0], "--reviewer", "alice", home=home)
    day = datetime.now(UTC).date().isoformat()
    refused = autoannotate("export", "--version", f"demo-shapes@{day}", "--format", "yolo", "--out",
                           str(tmp_path / "out"), home=home, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith(
        f"(people decided since it was built); build it again with `autoannotate version create --date {day}`, "
        "then export it.")
    autoannotate("version", "create", "--date", day, home=home)
    summary = json.loads(autoannotate("export", "--version", f"demo-shapes@{day}", "--format", "yolo", "--out",
                                      str(tmp_path / "out"), "--json", home=home).stdout)
    assert summary["annotations"] > 0
