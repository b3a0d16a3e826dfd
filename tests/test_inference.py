"""Real Ultralytics inference: the bundled detector, a segmentation model, bad weights, idempotency."""

import os
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from helpers import materialize_batch, new_batch, query, table_count, write_task_file

from apps.demo_scenes import generate_scene, write_demo_images
from assets.inference import predictions, predictions_schema_check
from assets.ingestion import inputs
from core.settings import DEMO_WEIGHTS
from engines.base import DetectorError, file_sha256
from resources.detector import Detector
from resources.tasks import LabelingTasks

HELD_OUT_SEED = 50_000_000  # far from the training (0..) and validation (10 000 000..) seeds


def iou(a: tuple, b: tuple) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_bundled_detector_recall_at_iou_half_is_at_least_080() -> None:
    detector = Detector(weights=str(DEMO_WEIGHTS), conf_floor=0.25)
    scenes = [generate_scene(HELD_OUT_SEED + i) for i in range(60)]
    images = [np.asarray(image)[:, :, ::-1].copy() for image, _ in scenes]
    found = total = 0
    for (image, truth), detections in zip(scenes, detector.predict_stream(images), strict=True):
        for obj in truth:
            box = (obj.x1 / image.width, obj.y1 / image.height, obj.x2 / image.width, obj.y2 / image.height)
            total += 1
            found += any(d.class_name == obj.class_name and iou(box, (d.x1, d.y1, d.x2, d.y2)) >= 0.5
                         for d in detections)
    recall = found / total
    print(f"recall@0.5 on {total} held-out objects: {recall:.3f}")
    assert total > 150
    assert recall >= 0.8


def test_a_seed_gives_the_same_scene_whatever_the_process_drew_before() -> None:
    """Every test and benchmark that counts predictions on demo scenes relies on this: a hard scene's noise once
    came from C's process-wide rand(), so a training run earlier in the process changed its pixels."""
    from PIL import Image

    first = np.asarray(generate_scene(7, hard=True)[0])
    Image.effect_noise((64, 64), 30)  # draws from C's rand(), as Ultralytics' training does through its libraries
    assert np.array_equal(np.asarray(generate_scene(7, hard=True)[0]), first)


@pytest.mark.parametrize("runtime", ["torch", "onnx", "openvino"])
def test_rectangular_batches_give_the_boxes_of_single_image_prediction(runtime: str) -> None:
    """Mixed aspect ratios grouped into rectangular mini-batches, on every runtime (ONNX Runtime and OpenVINO: our
    own numpy NMS, no torch): the same boxes (within 1e-3) as Ultralytics' own one-image-at-a-time `predict` on
    the torch weights, which letterboxes each image to its own rectangle."""
    from ultralytics import YOLO

    detector = Detector(weights=str(DEMO_WEIGHTS), conf_floor=0.25, batch_size=4, runtime=runtime)
    model = detector.load()
    assert model.runtime == runtime
    reference = YOLO(str(DEMO_WEIGHTS))
    sizes = [(256, 256), (320, 200), (200, 320), (300, 190), (256, 256), (330, 200), (190, 310), (256, 180)] * 2
    images = [np.asarray(generate_scene(HELD_OUT_SEED + 100 + i, w, h)[0])[:, :, ::-1].copy()
              for i, (w, h) in enumerate(sizes)]
    assert len({model.letterbox(image).array.shape for image in images}) >= 4  # really mixed shapes
    batched = list(detector.predict_stream(images))
    compared = 0
    for image, found in zip(images, batched, strict=True):
        single = reference.predict(image, imgsz=model.imgsz, conf=0.25, verbose=False)[0]
        expected = sorted(zip(single.boxes.xyxyn.tolist(), single.boxes.cls.tolist(), single.boxes.conf.tolist()))
        got = sorted(([d.x1, d.y1, d.x2, d.y2], model.class_names.index(d.class_name), d.confidence) for d in found)
        assert len(got) == len(expected)
        for (box, cls, confidence), (want, want_cls, want_confidence) in zip(got, expected, strict=True):
            assert cls == want_cls
            assert np.allclose(box, np.clip(want, 0, 1), atol=1e-3)
            assert abs(confidence - want_confidence) < 1e-3
            compared += 1
    assert compared > 20


def test_letterbox_matches_ultralytics_pixel_for_pixel() -> None:
    from ultralytics.data.augment import LetterBox

    from engines.base import letterbox

    rng = np.random.default_rng(5)
    for height, width in [(480, 640), (640, 480), (1000, 17), (3, 2000), (640, 640), (123, 457), (2000, 1500)]:
        image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        ours = letterbox(image, 640, 32)
        theirs = LetterBox(640, auto=True, stride=32)(image=image)
        assert ours.array.shape == theirs.shape
        assert np.array_equal(ours.array, theirs)
        assert ours.array[ours.top:ours.top + ours.height, ours.left:ours.left + ours.width].shape[:2] == (
            ours.height, ours.width)


@pytest.fixture(scope="module")
def segmentation_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLOv8n-seg built from Ultralytics' yaml, its class bias raised so the untrained head finds objects."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    model = YOLO("yolov8n-seg.yaml")
    for branch in model.model.model[-1].cv3:
        branch[-1].bias.data.fill_(4.0)
    path = tmp_path_factory.mktemp("seg") / "tiny-seg.pt"
    model.save(str(path))
    return path


@pytest.mark.parametrize("runtime", ["auto", "openvino"])
def test_segmentation_model_writes_polygons_pandera_accepts(
        resources: dict, inbox: Path, instance: dg.DagsterInstance, segmentation_weights: Path, runtime: str) -> None:
    write_demo_images(inbox, 2, seed=3)
    resources["detector"] = Detector(weights=str(segmentation_weights), imgsz=160, conf_floor=0.5, runtime=runtime)
    # A model of numbered classes: the demo task's class_map (circle, ...) would name classes it lacks.
    resources["tasks"] = LabelingTasks(task_files=[str(write_task_file(inbox.parent, model=None, class_map={}))])
    batch = new_batch(resources, instance)
    materialize_batch([inputs, predictions], resources, instance, batch, [predictions_schema_check])
    polygons = query(resources["store"], "SELECT polygon FROM predictions WHERE polygon IS NOT NULL")
    assert len(polygons) > 0
    assert all(len(p) >= 6 and len(p) % 2 == 0 for p in polygons["polygon"])
    assert query(resources["store"], "SELECT task_type FROM models")["task_type"].tolist() == ["segment"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "do not exist; autoannotate never downloads weights"),
    (b"this is not a checkpoint", "are not a YOLO checkpoint"),
])
def test_unusable_weights_fail_with_one_clear_message_before_any_image_is_read(
        resources: dict, inbox: Path, instance: dg.DagsterInstance, tmp_path: Path,
        content: bytes | None, message: str) -> None:
    weights = tmp_path / "best.pt"
    if content is not None:
        weights.write_bytes(content)
    with pytest.raises(DetectorError, match=message):
        Detector(weights=str(weights)).load()

    write_demo_images(inbox, 2)
    resources["detector"] = Detector(weights=str(weights))
    resources["tasks"] = LabelingTasks(task_files=[str(write_task_file(tmp_path, model=None))])
    batch = new_batch(resources, instance)
    materialize_batch([inputs], resources, instance, batch)
    # The image store is emptied: had the asset read an image first, it would fail with a KeyError instead.
    for stored in Path(resources["images"].root).rglob("*"):
        if stored.is_file():
            stored.unlink()
    result = dg.materialize([predictions], partition_key=batch, instance=instance, resources=resources,
                            raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert message in (failure.cause or failure).message
    assert table_count(resources, "predictions") == 0


def test_same_weights_same_model_id_and_reruns_do_not_duplicate(
        resources: dict, inbox: Path, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    copy = tmp_path / "renamed.pt"
    copy.write_bytes(DEMO_WEIGHTS.read_bytes())
    assert Detector(weights=str(copy)).load().model_id == Detector(weights=str(DEMO_WEIGHTS)).load().model_id
    assert Detector(weights=str(copy)).load().model_id == file_sha256(DEMO_WEIGHTS)

    write_demo_images(inbox, 8, seed=5)
    batch = new_batch(resources, instance)
    materialize_batch([inputs, predictions], resources, instance, batch)
    first = query(resources["store"], "SELECT * FROM predictions ORDER BY prediction_id")
    materialize_batch([predictions], resources, instance, batch)
    second = query(resources["store"], "SELECT * FROM predictions ORDER BY prediction_id")
    assert len(first) > 8
    assert first["prediction_id"].tolist() == second["prediction_id"].tolist()
    assert table_count(resources, "processed_inputs") == 8
    assert table_count(resources, "models") == 1


def test_rows_gathered_frame_by_frame_are_the_rows_of_one_frame(
        resources: dict, inbox: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's prediction rows become columns every ROWS_PER_FRAME rows (as dicts, 10 000 photos' rows took
    230 MB): no row is lost or doubled where one frame ends and the next begins."""
    write_demo_images(inbox, 8, seed=5)
    batch = new_batch(resources, instance)
    materialize_batch([inputs, predictions], resources, instance, batch)
    columns = "prediction_id, input_id, class_name, confidence, x1, y1, x2, y2"
    whole = query(resources["store"], f"SELECT {columns} FROM predictions ORDER BY prediction_id")
    monkeypatch.setattr("resources.detector.ROWS_PER_FRAME", 5)  # a frame every image or two
    materialize_batch([predictions], resources, instance, batch)
    gathered = query(resources["store"], f"SELECT {columns} FROM predictions ORDER BY prediction_id")
    assert len(whole) >= 15  # three frames or more
    assert whole.equals(gathered)
    assert table_count(resources, "processed_inputs") == 8


def test_auto_runs_the_cpu_runtime_measured_fastest_here_and_records_why(tmp_path: Path) -> None:
    import json

    from engines.measured import machine_key, record_path

    weights = tmp_path / "demo.pt"
    weights.write_bytes(DEMO_WEIGHTS.read_bytes())
    detector = Detector(weights=str(weights))
    choice = detector.runtime_choice()
    assert choice.measured_now and sorted(choice.milliseconds) == ["onnx", "openvino"]
    assert all(ms > 0 for ms in choice.milliseconds.values())
    assert choice.chosen == min(choice.milliseconds, key=choice.milliseconds.__getitem__)
    model = detector.load()
    assert model.runtime == choice.chosen
    figures = ", ".join(f"{name} {ms:g} ms" for name, ms in choice.milliseconds.items())
    assert detector.runtime_sentence(model) == (f"{model.name} runs on {choice.chosen} (auto: the fastest on this "
                                                f"CPU, one frame {figures})")
    again = Detector(weights=str(weights)).runtime_choice()  # the next process reads the record
    assert (again.chosen, again.milliseconds, again.measured_now) == (choice.chosen, choice.milliseconds, False)
    # What the record says was faster on this machine is what runs: here, the other runtime.
    other = "onnx" if choice.chosen == "openvino" else "openvino"
    record = record_path(weights, file_sha256(weights), "own-fp32")
    measured = json.loads(record.read_text())
    measured[machine_key(detector.thread_count())] = {"chosen": other, "milliseconds": {other: 1.0, choice.chosen: 2.0}}
    record.write_text(json.dumps(measured))
    assert Detector(weights=str(weights)).load().runtime == other
    assert Detector(weights=str(weights), threads=1).runtime_choice().measured_now  # another thread count: measured


@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_one_loaded_model_serves_several_threads_at_once(runtime: str) -> None:
    """Runs share a process's loaded model (an OpenVINO infer request serves one call at a time: it once failed
    with 'Infer Request is busy')."""
    from concurrent.futures import ThreadPoolExecutor

    model = Detector(weights=str(DEMO_WEIGHTS), runtime=runtime).load()
    frames = [model.letterbox(np.asarray(generate_scene(HELD_OUT_SEED + 300 + i)[0])[:, :, ::-1].copy())
              for i in range(6)]
    alone = [model.predict([frame], 0.25) for frame in frames]
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda frame: model.predict([frame], 0.25), frames * 4))
    assert together == alone * 4


def test_int8_is_opt_in_calibrated_on_stored_images_and_predicts_as_a_model_of_its_own(
        resources: dict, inbox: Path, instance: dg.DagsterInstance, tmp_path: Path) -> None:
    from apps.model_registry import list_models
    from assets.triage import annotations

    weights = tmp_path / "weights" / "demo.pt"
    weights.parent.mkdir()
    weights.write_bytes(DEMO_WEIGHTS.read_bytes())
    fp32_id = file_sha256(weights)
    task_file = write_task_file(tmp_path, model={"weights": str(weights), "precision": "int8"})
    resources["tasks"] = LabelingTasks(task_files=[str(task_file)])
    store = resources["store"]
    assert [m["runs_as"] for m in list_models(store, resources["tasks"])] == ["int8 (quantized by the next run)"]
    write_demo_images(inbox, 16, seed=21)
    batch = new_batch(resources, instance)
    result = materialize_batch([inputs, predictions, annotations], resources, instance, batch)
    quantized = weights.parent / f"demo.{fp32_id[:16]}.int8.onnx"
    assert quantized.is_file()
    int8_id = file_sha256(quantized)
    assert [m["runs_as"] for m in list_models(store, resources["tasks"])] == [f"int8 (model {int8_id[:12]})"]
    assert query(store, "SELECT DISTINCT model_id FROM predictions")["model_id"].tolist() == [int8_id]
    assert query(store, "SELECT name FROM models")["name"].tolist() == ["demo.pt (int8)"]
    routed = query(store, "SELECT DISTINCT model_id FROM annotations WHERE source = 'auto'")["model_id"].tolist()
    assert routed == [int8_id]  # routing found the INT8 predictions, not the fp32 weights' (there are none)
    logged = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any(m.startswith("demo.pt (int8) runs on ") and f" in INT8 (model {int8_id[:12]}, from demo.pt)" in m
               for m in logged)
    # The same scenes at fp32 (the default): INT8 finds nearly every object fp32 finds, in the same place.
    int8 = Detector(weights=str(weights), precision="int8", conf_floor=0.25, runtime="onnx").load()
    fp32 = Detector(weights=str(weights), conf_floor=0.25, runtime="onnx").load()
    assert (fp32.model_id, fp32.precision, int8.precision) == (fp32_id, "fp32", "int8")
    scenes = [np.asarray(generate_scene(HELD_OUT_SEED + 400 + i)[0])[:, :, ::-1].copy() for i in range(20)]
    matched = total = 0
    for scene in scenes:
        theirs, ours = fp32.predict([fp32.letterbox(scene)], 0.25)[0], int8.predict([int8.letterbox(scene)], 0.25)[0]
        total += len(theirs)
        matched += sum(any(o.class_name == t.class_name and iou((o.x1, o.y1, o.x2, o.y2), (t.x1, t.y1, t.x2, t.y2))
                           >= 0.5 for o in ours) for t in theirs)
    assert total > 40 and matched >= 0.9 * total


def test_int8_refuses_torch_and_an_unknown_precision_in_one_sentence() -> None:
    with pytest.raises(DetectorError) as refused:
        Detector(weights=str(DEMO_WEIGHTS), precision="int8", runtime="torch").load()
    assert str(refused.value) == ("precision int8 runs on the onnx or openvino runtime, not torch (set "
                                  "AUTOANNOTATE_RUNTIME or the detector's `runtime`).")
    with pytest.raises(DetectorError) as refused:
        Detector(weights=str(DEMO_WEIGHTS), precision="int4", runtime="onnx").load()
    assert str(refused.value) == ("precision 'int4' is not one autoannotate has: fp32, int8 (set "
                                  "AUTOANNOTATE_PRECISION or the task's model.precision).")


def test_autoannotate_run_at_int8_quantizes_on_the_first_batch_and_reuses_it(tmp_path: Path) -> None:
    import json

    from helpers import autoannotate

    weights = tmp_path / "weights" / "demo.pt"
    weights.parent.mkdir()
    weights.write_bytes(DEMO_WEIGHTS.read_bytes())
    task_file = write_task_file(tmp_path, model={"weights": str(weights)})
    for batch, seed in enumerate((31, 32)):
        write_demo_images(tmp_path / f"inbox{batch}", 6, seed=seed)
        done = autoannotate("run", "--inbox", str(tmp_path / f"inbox{batch}"), "--task-file", str(task_file),
                            "--json", home=tmp_path / "home", env={"AUTOANNOTATE_PRECISION": "int8"})
        assert list(json.loads(done.stdout)["inference"]) == ["demo.pt (int8)"]
    assert [p.name for p in weights.parent.glob("*.int8.onnx")] == [f"demo.{file_sha256(weights)[:16]}.int8.onnx"]


def test_a_run_on_exported_weights_never_imports_torch_or_ultralytics(tmp_path: Path) -> None:
    """Checking a task file's class_map read the checkpoint's class names through Ultralytics in every run, so an
    ONNX Runtime run paid 1.2 s and 700 MB for torch it never used; the names are now read once and recorded."""
    import subprocess
    import sys

    weights = tmp_path / "weights" / "demo.pt"
    weights.parent.mkdir()
    weights.write_bytes(DEMO_WEIGHTS.read_bytes())
    task_file = write_task_file(tmp_path, model={"weights": str(weights)})
    probe = ("import sys, json; from apps.cli import main; code = main(sys.argv[1:]); "
             "print(json.dumps([code, sorted({'torch', 'ultralytics'} & set(sys.modules))]))")
    imported = []
    for batch, seed in enumerate((41, 42)):
        write_demo_images(tmp_path / f"inbox{batch}", 4, seed=seed)
        done = subprocess.run([sys.executable, "-c", probe, "run", "--inbox", str(tmp_path / f"inbox{batch}"),
                               "--task-file", str(task_file), "--json"], capture_output=True, text=True,
                              env={**os.environ, "AUTOANNOTATE_HOME": str(tmp_path / "home"),
                                   "AUTOANNOTATE_RUNTIME": "onnx"}, timeout=600)
        code, modules = __import__("json").loads(done.stdout.splitlines()[-1])
        assert code == 0, done.stderr
        imported.append(modules)
    assert imported == [["torch", "ultralytics"], []]  # the first run exports the weights; the second reads files
    assert (weights.parent / f"demo.{file_sha256(weights)[:16]}.classes.json").is_file()
