"""Image-level concepts: the context-based classifier learned from people's labels, concept scores routed into
image-level annotations, and concept labels imported from a CSV or from concept folders."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from helpers import autoannotate, exported_input_ids, new_batch, query, table_count, write_labels_csv

from apps.demo_scenes import SCENE_CONCEPTS, write_concept_scenes
from assets.versions import dataset_versions
from core.annotations import Kind, Status
from core.concepts import train_concept_classifier
from core.settings import REPO_ROOT, Settings
from core.task_config import load_task, parse_task
from resources import build_resources
from services.datasets import import_labels
from services.exports import export_version

CONCEPT_TASK = REPO_ROOT / "tasks" / "demo_concepts.yaml"


def test_the_classifier_is_deterministic_and_needs_a_positive_and_a_negative_per_concept() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(12, 5))
    labels = {"a": vectors[:, 0] > 0, "b": np.ones(12, dtype=bool)}
    first = train_concept_classifier(vectors, labels, "backbone")
    second = train_concept_classifier(vectors, labels, "backbone")
    assert first.to_bytes() == second.to_bytes()
    assert first.concepts == ["a"]  # `b` has no negative image: nothing to learn from
    assert first.labels == {"a": {"positive": int(np.sum(labels["a"])), "negative": int(np.sum(~labels["a"]))}}
    assert ((first.scores(vectors)[:, 0] > 0.5) == labels["a"]).all()
    assert train_concept_classifier(vectors, {"b": labels["b"]}, "backbone") is None


def test_a_classifier_block_names_exactly_one_source_and_known_concepts(tmp_path: Path) -> None:
    base = {"name": "t", "concepts": ["a"], "thresholds": {"upper": 0.9, "lower": 0.5}, "reviewers": ["r"]}
    with pytest.raises(ValueError, match="name either `weights`"):
        parse_task({**base, "classifier": {"weights": "x.pt", "backbone": "y.pt"}}, "t.yaml")
    with pytest.raises(ValueError, match=r"classifier\.concepts: unknown concept 'zebra'"):
        parse_task({**base, "classifier": {"backbone": "y.pt", "concepts": ["zebra"]}}, "t.yaml")
    task = parse_task({**base, "classifier": {"backbone": "y.pt"}}, str(tmp_path / "t.yaml"))
    assert task.image_concepts == ["a"] and not task.detects
    assert task.classifier_path() == tmp_path / "y.pt"


def test_twenty_labelled_scenes_teach_the_context_classifier_and_its_scores_become_image_annotations(
        home: Path, inbox: Path, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    from pipelines.definitions import build_definitions

    settings = Settings(home=home, inbox=inbox, task_files=(str(CONCEPT_TASK),))
    definitions = build_definitions(settings)
    resources = definitions.resources
    task = load_task(CONCEPT_TASK)
    labelled = write_concept_scenes(tmp_path / "labelled", 20, seed=7)
    write_labels_csv(labelled, tmp_path / "labelled" / "labels.csv")
    imported = import_labels(resources["store"], resources["images"], "concepts-csv", tmp_path / "labelled" /
                             "labels.csv", task.name, "carol", 50_000_000, task.concepts)
    # A scene with none of the concepts is a row with an empty concept: labelled, a negative of every concept.
    without = {p for p, c in labelled.items() if not c}
    assert without and (imported.images, imported.images_without_labels) == (20, len(without))
    assert imported.labels == sum(len(c) for c in labelled.values())
    labels = resources["store"].read(lambda s: s.concepts.labels(task.name, task.image_concepts))
    assert labels["input_id"].nunique() == 20
    assert not labels[labels["input_id"].isin(query(resources["store"], "SELECT input_id FROM no_concept_inputs")
                                              ["input_id"])]["positive"].any()
    again = import_labels(resources["store"], resources["images"], "concepts-csv", tmp_path / "labelled" /
                          "labels.csv", task.name, "carol", 50_000_000, task.concepts)
    assert (again.annotations_written, again.new_inputs) == (0, 0)
    assert table_count(resources, "no_concept_inputs") == len(without)  # recorded once
    held_out = write_concept_scenes(inbox, 100, seed=8)
    batch = new_batch(resources, instance)
    job = definitions.resolve_job_def("annotate_batch")
    assert job.execute_in_process(partition_key=batch, instance=instance).success

    models = query(resources["store"], "SELECT model_id, task_type, class_names, details FROM models "
                                       "WHERE task_type = 'context'")
    assert len(models) == 1 and list(models["class_names"][0]) == sorted(SCENE_CONCEPTS)
    scores = query(resources["store"], "SELECT i.uri, p.class_name, p.confidence FROM predictions p "
                                       "JOIN inputs i USING (input_id) WHERE p.model_id = ?", [models["model_id"][0]])
    assert len(scores) == 100 * len(SCENE_CONCEPTS)  # every held-out scene, every concept
    truth = {Path(path).name: concepts for path, concepts in held_out.items()}
    correct = [(row.confidence > 0.5) == (row.class_name in truth[Path(row.uri).name]) for row in scores.itertuples()]
    accuracy = float(np.mean(correct))
    # What answering every concept's majority answer would score: a classifier that learned nothing gets about this.
    majority = float(np.mean([max(share, 1 - share) for share in (
        np.mean([c in t for t in truth.values()]) for c in SCENE_CONCEPTS)]))
    print(f"context classifier, 20 labelled scenes: accuracy {accuracy:.3f} on 100 held-out scenes "
          f"(majority answer {majority:.3f})")
    assert accuracy >= max(0.7, majority + 0.15)  # measured 0.827 against a majority answer of 0.567
    current = query(resources["store"], "SELECT concept, status, kind, x1, y1, x2, y2, confidence, annotator "
                                        "FROM annotation_state WHERE task = ? AND source = 'auto'", [task.name])
    assert set(current["kind"]) == {str(Kind.CONCEPT)}
    assert (current[["x1", "y1"]] == 0).all().all() and (current[["x2", "y2"]] == 1).all().all()
    assert set(current["annotator"]) == {task.annotator}
    expected_success = int((scores["confidence"] > 0.9).sum())
    expected_review = int(((scores["confidence"] > 0.5) & (scores["confidence"] <= 0.9)).sum())
    assert (current["status"] == Status.SUCCESS).sum() == expected_success
    assert (current["status"] == Status.AWAITING_REVIEW).sum() == expected_review
    reviewed_inputs = table_count(resources, "review_assignments", "task = ?", [task.name])
    assert reviewed_inputs == query(resources["store"], "SELECT count(DISTINCT input_id) FROM annotation_state "
                                    "WHERE task = ? AND status = 'AWAITING_REVIEW'", [task.name]).iloc[0, 0]

    # A re-run with the same labels trains the same classifier and writes nothing new.
    events = table_count(resources, "annotations")
    assert job.execute_in_process(partition_key=batch, instance=instance).success
    assert table_count(resources, "annotations") == events
    assert table_count(resources, "models", "task_type = 'context'") == 1
    assert table_count(resources, "embeddings") == 100 + imported.images

    # A dataset version holds the accepted concepts; a box export carries none of them as boxes.
    day = datetime.now(UTC).date().isoformat()
    assert dg.materialize([dataset_versions], partition_key=day, instance=instance, resources=resources).success
    accepted = table_count(resources, "annotation_state", "task = ? AND status = 'SUCCESS'", [task.name])
    assert table_count(resources, "dataset_versions", "annotations = ?", [accepted]) == 1
    exported = export_version(resources["store"], resources["images"], resources["versions"], f"{task.name}@{day}",
                              "yolo", tmp_path / "yolo")
    assert exported.counts["annotations"] == 0
    with pytest.raises(ValueError, match=r"image\(s\) have more than one accepted concept .* export this "
                                         "multi-label version as coco instead"):
        export_version(resources["store"], resources["images"], resources["versions"], f"{task.name}@{day}",
                       "classify", tmp_path / "cls")
    coco = export_version(resources["store"], resources["images"], resources["versions"], f"{task.name}@{day}",
                          "coco", tmp_path / "coco")
    assert (coco.counts["annotations"], coco.counts["image_concepts"]) == (0, accepted)


def route_concept_scores(resources: dict, task_data: dict, scores: list[float]) -> list[str | None]:
    """Store one whole-image score per input for concept `blurry`, route them as image-level annotations, and
    return each input's annotation status (None: no annotation)."""
    from core.annotations import WHOLE_IMAGE
    from store.predictions import prediction_rows

    task = parse_task(task_data, "concepts.yaml")
    model_id, now = "c" * 64, datetime(2026, 11, 23, 12, 0)
    inputs = [f"{i:064x}" for i in range(len(scores))]
    rows = [r for input_id, score in zip(inputs, scores, strict=True) for r in prediction_rows(
        "b1", model_id, input_id, [type("Score", (), {"class_name": "blurry", "confidence": score,
                                                      "x1": WHOLE_IMAGE.x1, "y1": WHOLE_IMAGE.y1, "x2": WHOLE_IMAGE.x2,
                                                      "y2": WHOLE_IMAGE.y2, "polygon": None})()], now)]

    def write(s) -> None:
        s.insert("predictions", rows)
        s.history.sync_auto(task, "b1", model_id, now, kind=Kind.CONCEPT)

    resources["store"].write(write)
    state = query(resources["store"], "SELECT input_id, status, kind FROM annotation_state")
    assert set(state["kind"]) <= {str(Kind.CONCEPT)}
    by_input = dict(zip(state["input_id"], state["status"], strict=True))
    return [by_input.get(i) for i in inputs]


CONCEPT_TASK_DATA = {"name": "c", "concepts": ["blurry"], "classifier": {"backbone": "b.pt"}, "reviewers": ["r"]}
A, R = str(Status.SUCCESS), str(Status.AWAITING_REVIEW)


@pytest.mark.parametrize(("operator", "expected"), [
    (">", [R, R, A]), (">=", [R, A, A]), ("=", [R, A, R]), ("<=", [A, A, R]), ("<", [A, R, R])])
def test_concept_scores_at_the_upper_threshold_route_by_its_operator(resources: dict, operator: str,
                                                                     expected: list[str]) -> None:
    thresholds = {"upper": 0.8, "lower": 0.4, "upper_operator": operator}
    assert route_concept_scores(resources, {**CONCEPT_TASK_DATA, "thresholds": thresholds},
                                [0.7999999, 0.8, 0.8000001]) == expected


@pytest.mark.parametrize(("operator", "expected"), [
    (">", [None, None, R]), (">=", [None, R, R]), ("=", [None, R, None]), ("<=", [R, R, None]),
    ("<", [R, None, None])])
def test_concept_scores_at_the_lower_threshold_route_by_its_operator(resources: dict, operator: str,
                                                                     expected: list[str | None]) -> None:
    thresholds = {"upper": 0.8, "lower": 0.4, "lower_operator": operator}
    assert route_concept_scores(resources, {**CONCEPT_TASK_DATA, "thresholds": thresholds},
                                [0.3999999, 0.4, 0.4000001]) == expected


def test_a_task_chooses_the_status_each_band_writes(resources: dict) -> None:
    data = {**CONCEPT_TASK_DATA, "thresholds": {"upper": 0.8, "lower": 0.4},
            "band_status": {"accept": "PENDING", "review": "SUCCESS"}}
    assert route_concept_scores(resources, data, [0.3, 0.5, 0.9]) == [None, A, str(Status.PENDING)]
    assert table_count(resources, "review_assignments") == 0  # nothing awaits review, so no queue


def test_a_single_label_version_exports_the_classification_layout_ultralytics_accepts(
        resources: dict, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    from pycocotools.coco import COCO
    from ultralytics.data.utils import check_cls_dataset

    # One concept per scene, in Ultralytics' own train/<concept>/ layout, imported as people's labels.
    scenes = write_concept_scenes(tmp_path / "scenes", 30, seed=11)
    folders = tmp_path / "labelled"
    placed: dict[str, str] = {}
    for index, path in enumerate(sorted(scenes)):
        concept = sorted(SCENE_CONCEPTS)[index % 3]
        (folders / "train" / concept).mkdir(parents=True, exist_ok=True)
        (folders / "train" / concept / path.name).write_bytes(path.read_bytes())
        placed[path.name] = concept
    task = load_task(CONCEPT_TASK)
    assert import_labels(resources["store"], resources["images"], "classify", folders, task.name, "carol",
                         50_000_000, task.concepts).images == 30
    day = datetime.now(UTC).date().isoformat()
    assert dg.materialize([dataset_versions], partition_key=day, instance=instance, resources=resources).success
    version = f"{task.name}@{day}"
    manifest = resources["versions"].read_manifest(task.name, day).splitlines()
    assert len(manifest) == 31 and all(line.split("\t")[2:6] == ["", "", "", ""] for line in manifest[1:])

    exported = export_version(resources["store"], resources["images"], resources["versions"], version, "classify",
                              tmp_path / "cls")
    assert (exported.counts["train"] + exported.counts["val"] + exported.counts["test"],
            exported.counts["without_concept"]) == (30, 0)
    checked = check_cls_dataset(tmp_path / "cls")  # what `yolo classify train data=...` runs first
    assert checked["nc"] == 3 and checked["names"] == dict(enumerate(sorted(SCENE_CONCEPTS)))
    sha_to_name = {query(resources["store"], "SELECT input_id FROM inputs WHERE uri LIKE ?",
                         [f"%{name}"]).iloc[0, 0]: name for name in placed}
    ids = exported_input_ids(tmp_path / "cls")
    written = {ids[f.stem]: f.parent.name for split in ("train", "val", "test")
               for f in (tmp_path / "cls" / split).glob("*/*")}
    assert written == {input_id: placed[name] for input_id, name in sha_to_name.items()}

    # The COCO export lists each image's concept on the image, and pycocotools reads the file.
    coco = export_version(resources["store"], resources["images"], resources["versions"], version, "coco",
                          tmp_path / "coco")
    assert (coco.counts["images"], coco.counts["annotations"], coco.counts["image_concepts"]) == (30, 0, 30)
    loaded = COCO(coco.out)
    of_file = exported_input_ids(tmp_path / "coco")
    assert {of_file[Path(loaded.imgs[i]["file_name"]).stem]: loaded.imgs[i]["concepts"] for i in loaded.imgs} == \
        {input_id: [placed[name]] for input_id, name in sha_to_name.items()}


CLASSIFY_TASK = REPO_ROOT / "tasks" / "demo_classify.yaml"


def test_a_classification_model_scores_whole_images_through_the_pipeline(tmp_path: Path) -> None:
    from ultralytics import YOLO

    from apps.runner import run_pipeline
    from resources import build_resources

    home = tmp_path / "home"
    scenes = write_concept_scenes(home / "inbox", 12, seed=21)
    settings = Settings(home=home, task_files=(str(CLASSIFY_TASK),))
    run_pipeline(settings)
    resources = build_resources(settings)
    task = load_task(CLASSIFY_TASK)
    models = query(resources["store"], "SELECT model_id, name, task_type, class_names FROM models")
    assert list(models["task_type"]) == ["classify"] and list(models["class_names"][0]) == sorted(SCENE_CONCEPTS)
    scores = query(resources["store"], "SELECT regexp_extract(i.uri, '[^/]*$') AS file, p.class_name, p.confidence, "
                                       "p.x1, p.y1, p.x2, p.y2 FROM predictions p JOIN inputs i USING (input_id)")
    assert len(scores) == 12 * task.classifier.top_k  # each image's top 2 classes
    assert (scores[["x1", "y1"]] == 0).all().all() and (scores[["x2", "y2"]] == 1).all().all()
    model = YOLO(str(task.classifier_path()))
    for path in scenes:  # the same top 2 and probabilities as Ultralytics' own prediction
        probs = model.predict(str(path), verbose=False)[0].probs
        expected = {model.names[i]: float(probs.data[i]) for i in probs.top5[:2]}
        mine = scores[scores.file == path.name]
        assert dict(zip(mine.class_name, mine.confidence, strict=True)) == pytest.approx(expected, abs=2e-3)

    state = query(resources["store"], "SELECT concept, status, kind, confidence FROM annotation_state "
                                      "WHERE task = ?", [task.name])
    assert set(state["kind"]) == {str(Kind.CONCEPT)}
    assert (state["status"] == Status.SUCCESS).sum() == (scores["confidence"] > 0.8).sum()
    assert (state["status"] == Status.AWAITING_REVIEW).sum() == \
        ((scores["confidence"] > 0.3) & (scores["confidence"] <= 0.8)).sum()
    # A detector named as a classification model is refused with a sentence saying what to do instead.
    from engines.base import DetectorError
    from resources.concepts import ConceptModels

    with pytest.raises(DetectorError, match=r"needs a classification \(-cls\) model.*`classifier.backbone`"):
        ConceptModels(root=str(tmp_path / "m")).classification_model(REPO_ROOT / "models" / "demo_detector.pt")


def test_an_embedding_at_another_size_is_another_embedding(tmp_path: Path) -> None:
    from core.settings import DEMO_WEIGHTS
    from engines.base import file_sha256
    from resources.concepts import ConceptModels

    models = ConceptModels(root=str(tmp_path))
    own, larger = models.backbone(DEMO_WEIGHTS), models.backbone(DEMO_WEIGHTS, 416)
    assert own.imgsz == 256 and own.model_id == file_sha256(DEMO_WEIGHTS)
    assert models.backbone(DEMO_WEIGHTS, 256).model_id == own.model_id  # the weights' own size: the same id
    assert larger.imgsz == 416 and larger.model_id not in (own.model_id, models.backbone(DEMO_WEIGHTS, 320).model_id)
    scene = np.zeros((480, 640, 3), dtype=np.uint8)
    assert own.embed(scene).shape == larger.embed(scene).shape  # pooled: the same length at any size


def test_images_ingested_before_anyone_labelled_them_are_scored_once_labels_arrive(tmp_path: Path) -> None:
    """The walkthrough's order: images arrive, people label a handful, the classifier scores the rest. Before, the
    images of a batch that ran while nothing could be learned were never scored (`run` found nothing new), and
    nothing re-scored a batch with the classifier that later labels gave."""
    home, scenes = tmp_path / "home", tmp_path / "scenes"
    truth = write_concept_scenes(scenes, 30, seed=11)
    autoannotate("run", "--inbox", str(scenes), "--task-file", str(CONCEPT_TASK), home=home)
    store = build_resources(Settings(home=home))["store"]
    status = json.loads(autoannotate("status", "--json", home=home).stdout)
    assert (status["image_concepts_by_concept"], status["unfinished_batches"]) == ({}, {})  # nothing to learn yet
    assert status["tasks"]["demo-scenes"]["waiting_for_labels"] is True  # listed, saying what it waits for
    text = autoannotate("status", home=home).stdout
    assert "task demo-scenes (priority medium): 0/30 inputs scored for image-level concepts\nits concept " \
           "classifier has nothing to learn from yet" in text

    labelled = dict(sorted(truth.items())[:12])
    rows = [f"scenes/{path.name},{concept}" for path, concepts in labelled.items() for concept in sorted(concepts)]
    (tmp_path / "labels.csv").write_text("file,concept\n" + "".join(f"{row}\n" for row in rows))
    autoannotate("import", "--format", "concepts-csv", str(tmp_path / "labels.csv"), "--task", "demo-scenes",
                 "--user", "carol", home=home)
    status = json.loads(autoannotate("status", "--json", home=home).stdout)
    assert list(status["unfinished_batches"].values()) == ["not scored for concepts"]
    assert status["tasks"]["demo-scenes"]["waiting_for_labels"] is False

    summary = json.loads(autoannotate("run", "--json", "--inbox", str(scenes), home=home).stdout)
    assert [item["stage"] for item in summary["resumed"]] == ["not scored for concepts"]
    first = query(store, "SELECT model_id, class_names FROM models WHERE task_type = 'context'")
    assert len(first) == 1
    learned = len(first["class_names"][0])
    scores = query(store, "SELECT count(*) AS n, count(DISTINCT input_id) AS images FROM predictions "
                          "WHERE model_id = ?", [first["model_id"][0]])
    assert (scores["n"][0], scores["images"][0]) == (30 * learned, 30)  # every image, every learned concept
    events = table_count({"store": store}, "annotations")
    assert table_count({"store": store}, "annotations", "source = 'auto'") > 0
    assert json.loads(autoannotate("run", "--json", "--inbox", str(scenes), home=home).stdout)["resumed"] == []
    assert table_count({"store": store}, "annotations") == events  # scored once: nothing left to do

    # A reviewer's decision is a new label: the classifier learns again. Batches it scored before keep their
    # scores until `run --rescore` (as a new detector re-predicts only when people promote it).
    queue = json.loads(autoannotate("review", "list", "--task", "demo-scenes", "--reviewer", "alice", "--json",
                                    home=home).stdout)
    decided = queue["undecided"][0]["annotation_id"]
    autoannotate("review", "accept", decided, "--reviewer", "alice", home=home)
    status = json.loads(autoannotate("status", "--json", home=home).stdout)
    assert (status["unfinished_batches"], status["batches_scored_by_earlier_classifiers"]) == ({}, {"demo-scenes": 1})
    assert "1 batches were scored by an earlier concept classifier" in autoannotate("status", home=home).stdout
    assert json.loads(autoannotate("run", "--json", "--inbox", str(scenes), home=home).stdout)["resumed"] == []
    rescored = json.loads(autoannotate("run", "--json", "--rescore", "--inbox", str(scenes), home=home).stdout)
    assert [item["stage"] for item in rescored["resumed"]] == ["not scored for concepts"]
    classifiers = query(store, "SELECT model_id FROM models WHERE task_type = 'context'")["model_id"]
    assert len(classifiers) == 2
    now_scoring = query(store, "SELECT DISTINCT model_id FROM predictions WHERE model_id IN (SELECT unnest(?))",
                        [list(classifiers)])["model_id"].tolist()
    assert now_scoring == [m for m in classifiers if m != first["model_id"][0]]  # replaced, not added
    assert table_count({"store": store}, "predictions") == 30 * learned
    assert query(store, "SELECT status, source FROM annotation_state WHERE annotation_id = ?",
                 [decided]).iloc[0].tolist() == ["SUCCESS", "review"]
    twice = query(store, "SELECT input_id, concept FROM annotation_state WHERE kind = 'concept' AND status IN "
                         "('SUCCESS', 'AWAITING_REVIEW', 'PENDING') GROUP BY 1, 2 HAVING count(*) > 1")
    assert twice.empty  # no image holds a concept twice
    status = json.loads(autoannotate("status", "--json", home=home).stdout)
    assert (status["unfinished_batches"], status["batches_scored_by_earlier_classifiers"]) == ({}, {})
    version = json.loads(autoannotate("version", "create", "--json", home=home).stdout)["versions"]
    accepted = version[f"demo-scenes@{datetime.now(UTC).date().isoformat()}"]["annotations"]
    exported = autoannotate("export", "--version", next(iter(version)), "--format", "coco", "--out",
                            str(tmp_path / "coco"), home=home).stdout
    assert f"; 0 annotations; {accepted} image-level concepts;" in exported and accepted > 0


def test_a_concepts_csv_names_images_with_none_of_the_concepts_by_an_empty_concept(tmp_path: Path) -> None:
    from core.formats import FORMATS, LabelFormatError
    from core.formats.concepts_csv import read_concept_csv

    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "labels.csv").write_text("file,concept\na.jpg,night\na.jpg,blurry\nb.jpg,\n")
    assert [(label.image.name, label.concept) for label in read_concept_csv(tmp_path / "labels.csv")] == [
        ("a.jpg", "night"), ("a.jpg", "blurry")]
    assert [p.name for p in FORMATS["concepts-csv"].listed(tmp_path / "labels.csv")] == ["a.jpg", "a.jpg", "b.jpg"]
    for text, line, said in (("a.jpg,night,extra\n", 1, "got 'a.jpg,night,extra'"), (",night\n", 1, "got ',night'")):
        (tmp_path / "bad.csv").write_text(text)
        with pytest.raises(LabelFormatError) as refused:
            read_concept_csv(tmp_path / "bad.csv")
        assert str(refused.value) == (f"{tmp_path / 'bad.csv'}:{line}: expected two fields `file,concept` (the "
                                      f"concept empty for an image with none), {said}")
