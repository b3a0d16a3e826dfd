"""Label readers on the layouts published datasets use, and on the files they must refuse."""

import json
from pathlib import Path

import pytest
from helpers import autoannotate
from PIL import Image

from core.formats import LabelFormatError
from core.formats.coco import read_coco
from core.formats.voc import read_voc
from core.formats.yolo import read_yolo


def png(path: Path, size: tuple[int, int] = (100, 80)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 140, 30)).save(path)
    return path


def voc_xml(file_name: str, boxes: list[tuple[int, int, int, int]], prologue: str = "") -> str:
    objects = "".join(f"<object><name>ball</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax>"
                      f"<ymax>{d}</ymax></bndbox></object>\n" for a, b, c, d in boxes)
    return (f"{prologue}<annotation><filename>{file_name}</filename><size><width>100</width><height>80</height>"
            f"</size>\n{objects}</annotation>\n")


@pytest.mark.parametrize(("labels", "images"), [("Annotations", "JPEGImages"), ("annotations", "images"),
                                                (".", "."), ("annotations", ".")])
def test_voc_layouts_of_published_datasets(tmp_path: Path, labels: str, images: str) -> None:
    png(tmp_path / images / "a.png")
    (tmp_path / labels).mkdir(exist_ok=True)
    (tmp_path / labels / "a.xml").write_text(voc_xml("a.png", [(10, 8, 60, 40), (0, 0, 50, 80)]))
    boxes = read_voc(tmp_path)
    assert [(b.image, b.x1, b.y1, b.x2, b.y2) for b in boxes] == [
        (tmp_path / images / "a.png", 0.1, 0.1, 0.6, 0.5), (tmp_path / images / "a.png", 0.0, 0.0, 0.5, 1.0)]


def test_voc_without_xml_says_where_it_looked_and_the_cli_exits_1(tmp_path: Path) -> None:
    png(tmp_path / "data" / "images" / "a.png")
    with pytest.raises(LabelFormatError, match=r"no Pascal VOC XML files found \(looked in .*Annotations, "
                                                r".*annotations, .*\)"):
        read_voc(tmp_path / "data")
    result = autoannotate("import", "--format", "voc", str(tmp_path / "data"), "--user", "u", home=tmp_path / "home",
                          check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"autoannotate: {tmp_path / 'data'}: no Pascal VOC XML files found")


def test_voc_label_naming_a_missing_image_or_one_outside_the_dataset_is_refused(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    xml = tmp_path / "Annotations" / "a.xml"
    xml.write_text(voc_xml("gone.png", [(1, 1, 5, 5)]))
    with pytest.raises(LabelFormatError, match=r"a.xml: image 'gone.png' does not exist; looked for .*JPEGImages"):
        read_voc(tmp_path)
    png(tmp_path.parent / "secret.png")
    xml.write_text(voc_xml("../secret.png", [(1, 1, 5, 5)]))
    with pytest.raises(LabelFormatError, match=r"which lies outside the dataset folder .*; refused"):
        read_voc(tmp_path)


def test_voc_entities_are_never_expanded(tmp_path: Path) -> None:
    png(tmp_path / "a.png")
    laughs = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>')
    (tmp_path / "a.xml").write_text(voc_xml("a.png", [(1, 1, 5, 5)], prologue=laughs).replace("ball", "&lol2;"))
    with pytest.raises(LabelFormatError, match=r"a.xml: refused: the XML declares entities or a DTD"):
        read_voc(tmp_path)


def test_boxes_past_the_border_are_clipped_and_reported_and_the_cli_says_how_many(tmp_path: Path) -> None:
    png(tmp_path / "voc" / "JPEGImages" / "a.png")
    (tmp_path / "voc" / "Annotations").mkdir()
    xml = tmp_path / "voc" / "Annotations" / "a.xml"
    xml.write_text(voc_xml("a.png", [(10, 8, 101, 40), (5, 5, 20, 20), (-3, 10, 30, 81)]))
    boxes = read_voc(tmp_path / "voc")
    assert [(b.x1, b.x2, b.y2) for b in boxes] == [(0.1, 1.0, 0.5), (0.05, 0.2, 0.25), (0.0, 0.3, 1.0)]
    assert [b.clipped_at for b in boxes] == [f"{xml}:2", None, f"{xml}:4"]
    result = autoannotate("import", "--format", "voc", str(tmp_path / "voc"), "--user", "u", home=tmp_path / "home")
    assert "2 boxes reached outside their image and were clipped to it: " in result.stdout
    report = json.loads(autoannotate("import", "--format", "voc", str(tmp_path / "voc"), "--user", "u", "--json",
                                     home=tmp_path / "home").stdout)
    assert (report["labels"], report["clipped_boxes"], report["annotations_written"]) == (3, 2, 0)


def test_coco_images_beside_the_json_or_in_images_and_nothing_else(tmp_path: Path) -> None:
    png(tmp_path / "images" / "a.png")
    png(tmp_path / "b.png")
    document = {"categories": [{"id": 1, "name": "car"}],
                "images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 80},
                           {"id": 2, "file_name": "b.png", "width": 100, "height": 80}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 8, 50, 32]},
                                {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10]}]}
    coco = tmp_path / "instances.json"
    coco.write_text(json.dumps(document))
    assert [b.image for b in read_coco(coco)] == [tmp_path / "images" / "a.png", tmp_path / "b.png"]
    document["images"][1]["file_name"] = "/etc/hostname"
    coco.write_text(json.dumps(document))
    with pytest.raises(LabelFormatError, match=r"names /etc/hostname, which lies outside the dataset folder"):
        read_coco(coco)
    document["images"][1]["file_name"] = "c.png"
    coco.write_text(json.dumps(document))
    with pytest.raises(LabelFormatError, match=r"image 'c.png' does not exist; looked for .*c.png, .*images/c.png"):
        read_coco(coco)
    with pytest.raises(LabelFormatError, match=r"missing.json: not found"):
        read_coco(tmp_path / "missing.json")


def test_yolo_data_yaml_with_path_split_lists_and_image_list_files(tmp_path: Path) -> None:
    root = tmp_path / "set"
    for split in ("train", "extra", "val"):
        png(root / "images" / split / f"{split}.png")
        (root / "labels" / split).mkdir(parents=True)
        (root / "labels" / split / f"{split}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "val.txt").write_text("images/val/val.png\n")
    (tmp_path / "data.yaml").write_text("path: set\ntrain: [images/train, images/extra]\nval: val.txt\n"
                                        "names: [car]\n")
    assert sorted(b.image.name for b in read_yolo(tmp_path)) == ["extra.png", "train.png", "val.png"]
    (root / "val.txt").write_text("../../outside.png\n")
    with pytest.raises(LabelFormatError, match=r"val.txt:1: names .*outside.png, which lies outside the dataset"):
        read_yolo(tmp_path)


def test_yolo_without_label_files_says_where_it_looked(tmp_path: Path) -> None:
    png(tmp_path / "images" / "a.png")
    (tmp_path / "data.yaml").write_text("names: [car]\n")
    with pytest.raises(LabelFormatError, match=r"data.yaml: no label files found for its 1 images"):
        read_yolo(tmp_path)


def test_a_voc_xml_without_an_object_is_a_persons_negative(tmp_path: Path) -> None:
    """Before, images whose XML holds no <object> were neither inputs nor negatives, without a word (200 photos
    with 12 such XMLs imported as `images 184, images_without_labels 0`)."""
    for index, name in enumerate(("a", "b", "c")):
        Image.new("RGB", (100, 80), (40 * index, 140, 30)).save(png(tmp_path / "voc" / "JPEGImages" / f"{name}.png"))
    (tmp_path / "voc" / "Annotations").mkdir()
    (tmp_path / "voc" / "Annotations" / "a.xml").write_text(voc_xml("a.png", [(10, 8, 60, 40)]))
    for name in ("b", "c"):
        (tmp_path / "voc" / "Annotations" / f"{name}.xml").write_text(voc_xml(f"{name}.png", []))
    report = json.loads(autoannotate("import", "--format", "voc", str(tmp_path / "voc"), "--user", "u", "--json",
                                     home=tmp_path / "home").stdout)
    assert (report["images"], report["labels"], report["images_without_labels"]) == (3, 1, 2)
    said = autoannotate("import", "--format", "voc", str(tmp_path / "voc"), "--user", "u", home=tmp_path / "home")
    assert "2 of those images are listed without a label" in said.stdout


def test_a_versions_own_export_read_back_changes_no_annotation_and_makes_no_persons_label(tmp_path: Path) -> None:
    """Before, importing a version's own COCO export made 23 of its boxes "taken over" (COCO's pixel rounding made
    them differ by 1e-5): the model's auto-accepts became people's labels, reference boxes for quality and audit.
    Now the folder is recognized as this home's export and refused, naming --as-people; with it, every label
    matches its annotation to the export's rounding and is unchanged: no event, no `import` annotation."""
    from helpers import query, write_task_file

    from apps.demo_scenes import write_demo_images
    from core.settings import Settings
    from resources import build_resources

    home = tmp_path / "home"
    task = write_task_file(tmp_path, thresholds={"upper": 0.5, "lower": 0.2})
    write_demo_images(home / "inbox", 8, seed=44)
    autoannotate("run", "--task-file", str(task), "--version", home=home)
    store = build_resources(Settings(home=home, task_files=(str(task),)))["store"]
    [version] = query(store, "SELECT version_key FROM dataset_versions")["version_key"].tolist()
    autoannotate("export", "--version", version, "--format", "coco", "--out", str(tmp_path / "coco"), home=home)
    events = query(store, "SELECT count(*) AS n FROM annotations")["n"][0]
    refused = autoannotate("import", "--format", "coco", str(tmp_path / "coco" / "annotations.json"), "--user", "u",
                           home=home, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"autoannotate: {tmp_path / 'coco' / 'annotations.json'} is this home's own export of {version} "
        "(autoannotate_export.json): its labels are this home's annotations, the model's and people's alike, and "
        "importing them would record the model's boxes as people's labels; nothing was written. Pass --as-people "
        "to record them as u's labels all the same.")
    report = json.loads(autoannotate("import", "--format", "coco", str(tmp_path / "coco" / "annotations.json"),
                                     "--user", "u", "--as-people", "--json", home=home).stdout)
    assert report["labels"] > 0
    assert (report["unchanged"], report["taken_over"], report["annotations_written"]) == (report["labels"], 0, 0)
    assert query(store, "SELECT count(*) AS n FROM annotations")["n"][0] == events
    assert query(store, "SELECT count(*) AS n FROM annotations WHERE source = 'import'")["n"][0] == 0
