"""Property tests (Hypothesis): random and mutated YOLO, COCO and VOC files and task files never end in a
traceback, only in boxes inside the image or in one sentence (`LabelFormatError`, `TaskConfigError`); a refused
import writes no row."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.formats import LabelFormatError
from core.formats.coco import read_coco
from core.formats.voc import read_voc
from core.formats.yolo import read_yolo
from core.task_config import TaskConfigError, parse_task

# PROPERTY_EXAMPLES=400 for a longer hunt; 60 examples each keep the suite's time.
SETTINGS = settings(max_examples=int(os.environ.get("PROPERTY_EXAMPLES", "60")), deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# What hostile or broken files hold in a number's place.
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**20, 10**20),
                    st.sampled_from(["inf", "-inf", "nan", "1e308", "-0", "0x10", "", "  ", "1,5", "½"]),
                    st.text(max_size=6))
JSON_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=8)),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=8)


def checked_boxes(boxes: list) -> None:
    for box in boxes:
        assert all(math.isfinite(v) for v in (box.x1, box.y1, box.x2, box.y2))
        assert 0 <= box.x1 < box.x2 <= 1 and 0 <= box.y1 < box.y2 <= 1


def boxes_or_one_sentence(read, path: Path, named: Path) -> None:
    """`read(path)` gives boxes inside the image, or one sentence that starts with the file it names."""
    try:
        checked_boxes(read(path))
    except LabelFormatError as error:
        assert str(error).startswith(str(named)) and "\n" not in str(error).strip()


def dataset_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="property-"))
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    Image.new("RGB", (40, 30), (90, 140, 30)).save(folder / "images" / "a.png")
    return folder


@SETTINGS
@given(lines=st.lists(st.lists(NUMBERS.map(str), min_size=0, max_size=9).map(" ".join), max_size=4),
       names=st.one_of(st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.integers(-2, 3),
                                                                                 st.text(max_size=4), max_size=3),
                       JSON_VALUES))
def test_random_yolo_labels_give_boxes_inside_the_image_or_one_sentence(lines: list[str], names: object) -> None:
    folder = dataset_folder()
    try:
        (folder / "labels" / "a.txt").write_text("\n".join(lines))
        (folder / "data.yaml").write_text(json.dumps({"train": "images", "names": names}))
        boxes_or_one_sentence(read_yolo, folder, folder)
    finally:
        shutil.rmtree(folder)


@SETTINGS
@given(image=st.fixed_dictionaries({"id": st.one_of(st.just(1), JSON_VALUES), "file_name": st.just("a.png"),
                                    "width": st.one_of(st.just(40), NUMBERS, JSON_VALUES),
                                    "height": st.one_of(st.just(30), NUMBERS, JSON_VALUES)}),
       annotation=st.fixed_dictionaries({"id": JSON_VALUES, "image_id": st.one_of(st.just(1), JSON_VALUES),
                                         "category_id": st.one_of(st.just(1), JSON_VALUES),
                                         "bbox": st.one_of(st.lists(NUMBERS, min_size=0, max_size=6), JSON_VALUES),
                                         "score": st.one_of(st.none(), NUMBERS)}))
def test_mutated_coco_files_give_boxes_inside_the_image_or_one_sentence(image: dict, annotation: dict) -> None:
    folder = dataset_folder()
    try:
        path = folder / "instances.json"
        path.write_text(json.dumps({"images": [image], "annotations": [annotation],
                                    "categories": [{"id": 1, "name": "ball"}]}, default=str))
        boxes_or_one_sentence(read_coco, path, path)
    finally:
        shutil.rmtree(folder)


XML_TEXT = st.one_of(NUMBERS.map(str), st.text(alphabet=st.characters(blacklist_categories=("Cs",),
                                                                      blacklist_characters="<&\x00"), max_size=6))


@SETTINGS
@given(width=XML_TEXT, height=XML_TEXT, corners=st.lists(XML_TEXT, min_size=4, max_size=4),
       name=st.text(alphabet="abc <>", max_size=4))
def test_mutated_voc_files_give_boxes_inside_the_image_or_one_sentence(width: str, height: str, corners: list[str],
                                                                       name: str) -> None:
    from xml.sax.saxutils import escape

    folder = dataset_folder()
    try:
        (folder / "Annotations").mkdir()
        xmin, ymin, xmax, ymax = (escape(c) for c in corners)
        (folder / "Annotations" / "a.xml").write_text(
            f"<annotation><filename>a.png</filename><size><width>{escape(width)}</width><height>{escape(height)}"
            f"</height></size><object><name>{escape(name)}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object></annotation>")
        boxes_or_one_sentence(read_voc, folder, folder)
    finally:
        shutil.rmtree(folder)


TASK_FIELDS = {"name": st.one_of(st.just("t"), JSON_VALUES), "concepts": st.one_of(st.just(["ball"]), JSON_VALUES),
               "thresholds": st.one_of(st.just({"upper": 0.9, "lower": 0.5}),
                                       st.fixed_dictionaries({"upper": JSON_VALUES, "lower": JSON_VALUES}),
                                       JSON_VALUES),
               "reviewers": st.one_of(st.just(["alice"]), JSON_VALUES), "class_map": JSON_VALUES,
               "auto_annotate": JSON_VALUES, "spot_check": JSON_VALUES, "inputs": JSON_VALUES,
               "priority": JSON_VALUES, "band_status": JSON_VALUES, "match_iou": JSON_VALUES}


@SETTINGS
@given(data=st.fixed_dictionaries({}, optional=TASK_FIELDS))
def test_random_task_files_are_a_task_or_one_sentence(data: dict) -> None:
    try:
        task = parse_task(data, "t.yaml")
    except TaskConfigError as error:
        assert str(error).startswith("t.yaml: ") and "\n" not in str(error)
    else:
        assert task.concepts and all(0 <= r.lower <= r.upper <= 1 for r in task.rules())


@pytest.fixture(scope="module")
def empty_home(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from core.settings import Settings
    from resources import build_resources

    return build_resources(Settings(home=tmp_path_factory.mktemp("property-home")))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.lists(NUMBERS.map(str), min_size=1, max_size=6).map(" ".join), min_size=1, max_size=3))
def test_a_refused_import_writes_no_row(empty_home: dict, lines: list[str]) -> None:
    from services.datasets import import_labels

    folder = dataset_folder()
    try:
        (folder / "labels" / "a.txt").write_text("\n".join(lines))
        (folder / "data.yaml").write_text("train: images\nnames: [ball]\n")
        store = empty_home["store"]
        tables = ("inputs", "input_sources", "annotations", "empty_inputs", "task_classes")
        before = store.read(lambda s: [s.scalar(f"SELECT count(*) FROM {t}") for t in tables])
        try:
            import_labels(store, empty_home["images"], "yolo", folder, "t", "prop", 50_000_000, ["ball"])
        except LabelFormatError:
            assert store.read(lambda s: [s.scalar(f"SELECT count(*) FROM {t}") for t in tables]) == before
        else:
            store.write(lambda s: [s.conn.execute(f"DELETE FROM {t}") for t in (*tables, "annotation_state")])
    finally:
        shutil.rmtree(folder)
