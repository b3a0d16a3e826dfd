"""What a task would write for some images, computed the same way the pipeline does; writes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from core.image_checks import Rejection, inspect_image_file, load_oriented_bgr
from core.routing import route_predictions
from core.settings import Settings
from core.task_config import LabelingTask, check_class_map
from engines.base import Detection
from resources import build_resources
from resources.tasks import detector_for
from services.concepts import whole_image_detections
from store.predictions import prediction_rows

ROUTED_COLUMNS = ["class_name", "confidence", "prediction_id", "x1", "y1", "x2", "y2"]


def routed_report(task: LabelingTask, model_id: str, input_id: str, found: list[Detection]) -> list[dict]:
    """Each prediction with the concept, band and status the task's routing gives it, most confident first."""
    rows = pd.DataFrame(prediction_rows("dry-run", model_id, input_id, found, datetime.now(UTC)),
                        columns=ROUTED_COLUMNS)
    statuses = task.band_statuses()
    routed = route_predictions(rows, task).sort_values("confidence", ascending=False)
    # Full precision: the preview is the run, to the digit (the table rounds for reading).
    return [{"class_name": r.class_name, "concept": r.concept, "confidence": float(r.confidence),
             "box": [float(r.x1), float(r.y1), float(r.x2), float(r.y2)],
             "band": r.band, "status": statuses.get(r.band, "not written")} for r in routed.itertuples()]


def concept_scorer(task: LabelingTask, resources: dict):
    """(model id, a function from a BGR image to its [(concept, score)]) for the task's classifier: its -cls
    weights, or the context-based classifier last trained for it (refused with a sentence while there is none)."""
    models = resources["concept_models"]
    if task.classifier.kind == "classify":
        path, top_k, imgsz = task.classifier_path(), task.classifier.top_k, task.classifier.imgsz
        model_id, _ = models.classification_model(path)
        return model_id, lambda image: models.top_classes(path, [image], top_k, imgsz)[2][0]
    trained = resources["store"].read(lambda s: s.concepts.latest_classifier(task.name))
    if trained is None:
        raise ValueError(f"Task {task.name!r} has no context-based classifier yet: label some images with its "
                         "concepts (`autoannotate import --format concepts-csv`, or review) and run the pipeline.")
    model_id, path = trained
    classifier = models.load(Path(path))
    backbone = models.backbone(task.classifier_path(), task.classifier.imgsz)
    return model_id, lambda image: list(zip(classifier.concepts, classifier.scores(backbone.embed(image)[None])[0]))


def dry_run(settings: Settings, task: LabelingTask, images: list[Path]) -> dict:
    """Band and status of every prediction of the task's model, and of every image-level concept score of its
    classifier, on `images`."""
    resources = build_resources(settings)
    model = scorer = None
    if task.detects:
        detector = detector_for(task, resources["detector"])
        model = detector.load()
        check_class_map(task, model.class_names, model.name)
    if task.classifier is not None:
        classifier_id, scorer = concept_scorer(task, resources)
    checked = {path: inspect_image_file(path, settings.max_pixels) for path in images}
    # Decoded once (a preview holds a few images), then letterboxed and batched by shape exactly as the run's
    # `predictions` step does it.
    arrays = {path: load_oriented_bgr(result.data) for path, result in checked.items()
              if not isinstance(result, Rejection)}
    detections = iter(detector.predict_stream(list(arrays.values()), model)) if model is not None else None
    report = []
    for path, result in checked.items():
        if isinstance(result, Rejection):
            report.append({"image": str(path), "rejected": result.reason})
            continue
        entry = {"image": str(path)}
        if detections is not None:
            entry["predictions"] = routed_report(task, model.model_id, result.input_id, next(detections))
        if scorer is not None:
            entry["concepts"] = routed_report(task, classifier_id, result.input_id,
                                              whole_image_detections(scorer(arrays[path])))
        report.append(entry)
    return {"task": task.name, "model_id": model.model_id if model else None,
            "classifier_id": classifier_id if scorer else None, "images": report}
