"""Image-level concepts: the context-based classifier learned from people's labels, the concept scores of the
batch's inputs, and their routing into image-level annotations.

Lineage: `annotations` (people's image-level labels live in the same history) -> `concept_classifier` ->
`concept_predictions` -> `concept_annotations`. A classifier is content-addressed: unchanged labels give the
same classifier, so re-running a batch retrains nothing and re-writes nothing.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from assets.checks import table_metadata
from assets.partitions import batch_partitions
from assets.triage import annotate_task, annotations, log_hand_over, task_totals
from core.annotations import Kind
from core.concepts import ConceptClassifier, concept_accuracy, label_targets, train_concept_classifier
from core.plots import confidence_histograms, markdown_image
from core.routing import route_predictions
from core.task_config import LabelingTask
from engines.base import file_sha256
from resources.concepts import ConceptModels, context_labels, whole_image_detections
from resources.detector import oriented_bgr
from resources.image_store import ImageStore
from resources.store import DuckDBStore, write_or_retry
from resources.tasks import LabelingTasks
from store.predictions import prediction_rows
from store.tables import PREDICTIONS


@dataclass(frozen=True)
class TrainedClassifier:
    model_id: str
    classifier: ConceptClassifier
    labelled_images: int
    training_accuracy: dict[str, float]


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def embed_inputs(store: DuckDBStore, images: ImageStore, models: ConceptModels, task: LabelingTask,
                 input_ids: list[str], log: Callable[[str], object] = print) -> tuple[str, np.ndarray]:
    """(backbone id, one embedding row per input) for the task's context-based classifier; embeddings already
    stored are read, the others computed once and stored."""
    backbone = models.backbone(task.classifier_path(), task.classifier.imgsz)
    known = store.read(lambda s: s.concepts.embeddings(backbone.model_id, input_ids))
    fresh = []
    for done, input_id in enumerate([i for i in input_ids if i not in known], 1):
        known[input_id] = backbone.embed(oriented_bgr(images, input_id))
        fresh.append({"input_id": input_id, "model_id": backbone.model_id, "vector": known[input_id].tolist(),
                      "embedded_at": _now()})
        if done % 100 == 0:
            log(f"{task.name}: embedded {done} images")
    if fresh:
        write_or_retry(store, lambda s: s.concepts.store_embeddings(fresh))
    return backbone.model_id, np.stack([known[i] for i in input_ids]) if input_ids else np.zeros((0, 0))


def train_task_classifier(store: DuckDBStore, images: ImageStore, models: ConceptModels, task: LabelingTask,
                          log: Callable[[str], object] = print) -> TrainedClassifier | None:
    """The task's context-based classifier, learned from every image people gave image-level concepts, stored
    content-addressed and registered in `models`; None while no concept has a positive and a negative image."""
    labels, key = context_labels(store, task)
    if key is None:
        return None
    input_ids, targets = label_targets(labels)
    backbone_id, vectors = embed_inputs(store, images, models, task, input_ids, log)
    # The same labels give the same classifier: read it instead of fitting it again for every batch.
    learned = store.read(lambda s: s.concepts.classifier_learned_from(task.name, key))
    if learned:
        model_id, path = learned
        classifier = models.load(Path(path))
    else:
        classifier = train_concept_classifier(vectors, targets, backbone_id)
        model_id, path = models.save(classifier)
        details = {"task": task.name, "backbone_id": backbone_id, "labels": classifier.labels,
                   "labelled_images": len(input_ids)}

        def register(s) -> None:
            s.predictions.register_model(model_id, path.name, str(path), "context", classifier.concepts, _now(),
                                         details)
            s.concepts.add_labels_key(model_id, key)

        write_or_retry(store, register)
    return TrainedClassifier(model_id, classifier, len(input_ids), concept_accuracy(classifier, vectors, targets))


def classifier_tasks(tasks: LabelingTasks) -> list[LabelingTask]:
    return [task for task in tasks.load() if task.classifier is not None]


@dg.asset(
    partitions_def=batch_partitions,
    deps=[annotations],
    group_name="concepts",
    kinds={"python", "numpy"},
    description="Each task's context-based concept classifier, learned from the images people gave image-level "
                "concepts (imported, or decided in review), over embeddings from the task's `classifier.backbone`; "
                "stored content-addressed under the home's `models/` and registered in `models`. New labels give "
                "a new classifier; the same labels the same one.",
)
def concept_classifier(context: dg.AssetExecutionContext, store: DuckDBStore, images: ImageStore,
                       concept_models: ConceptModels, tasks: LabelingTasks) -> dg.MaterializeResult:
    learned = {}
    for task in classifier_tasks(tasks):
        if task.classifier.kind != "context":
            continue
        started = time.perf_counter()
        trained = train_task_classifier(store, images, concept_models, task, context.log.info)
        if trained is None:
            learned[task.name] = {"model_id": None, "why": "no concept has both a positive and a negative labelled "
                                                           "image yet: label some images (import or review)"}
            context.log.info(f"{task.name}: {learned[task.name]['why']}")
            continue
        learned[task.name] = {
            "model_id": trained.model_id, "labelled_images": trained.labelled_images,
            "labels": trained.classifier.labels, "training_accuracy": trained.training_accuracy,
            "seconds": round(time.perf_counter() - started, 2)}
    return dg.MaterializeResult(metadata={"classifiers": learned})


def whole_image_rows(batch: str, model_id: str, input_id: str, scores: list[tuple[str, float]],
                     now: datetime) -> list[dict]:
    """Rows of `predictions` for one image's concept scores: predictions whose box is the whole image."""
    return prediction_rows(batch, model_id, input_id, whole_image_detections(scores), now)


def trained_classifiers(instance: dg.DagsterInstance, batch: str) -> dict[str, dict]:
    """What `concept_classifier` recorded for `batch` (per task: the classifier's model id, or why there is none),
    so that scoring uses the classifier of that materialization instead of training it a second time."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=concept_classifier.key, asset_partitions=[batch]), limit=1).records
    if not records:
        return {}
    return records[0].asset_materialization.metadata["classifiers"].value


def score_batch(store: DuckDBStore, images: ImageStore, models: ConceptModels, task: LabelingTask,
                input_ids: list[str], batch: str, trained: dict, log: Callable[[str], object]) -> dict:
    """Score the batch's inputs with the task's classifier and store the scores; returns what was done.
    `trained` is what `concept_classifier` recorded for the task (context-based classifiers only)."""
    now = _now()
    if task.classifier.kind == "classify":
        path = task.classifier_path()
        arrays = [oriented_bgr(images, i) for i in input_ids]
        model_id, names, found = models.top_classes(path, arrays, task.classifier.top_k, task.classifier.imgsz)
        rows = [r for i, scores in zip(input_ids, found, strict=True)
                for r in whole_image_rows(batch, model_id, i, scores, now)]
        register = {"name": path.name, "path": str(path), "task_type": "classify", "class_names": names}
    else:
        model_id = trained.get("model_id")
        if model_id is None:
            return {"model_id": None, "scored_images": 0,
                    "why": trained.get("why", f"concept_classifier has not run for batch {batch}")}
        classifier = models.load(Path(store.read(lambda s: s.predictions.model_path(model_id))))
        _, vectors = embed_inputs(store, images, models, task, input_ids, log)
        scores = classifier.scores(vectors) if input_ids else np.zeros((0, len(classifier.concepts)))
        rows = [r for i, row in zip(input_ids, scores, strict=True)
                for r in whole_image_rows(batch, model_id, i, list(zip(classifier.concepts, row)), now)]
        register = None
    frame = pd.DataFrame(rows, columns=[c.name for c in PREDICTIONS.columns])
    processed = pd.DataFrame([{"input_id": i, "model_id": model_id, "batch": batch,
                               "prediction_count": int((frame["input_id"] == i).sum()), "processed_at": now}
                              for i in input_ids])

    def write(s) -> None:
        if register:
            s.predictions.register_model(model_id, register["name"], register["path"], register["task_type"],
                                         register["class_names"], now)
        s.concepts.replace_batch_scores(task.name, batch, model_id, frame, processed)

    write_or_retry(store, write)
    return {"model_id": model_id, "scored_images": len(input_ids), "scores": len(frame)}


@dg.asset(
    partitions_def=batch_partitions,
    deps=[concept_classifier, "inputs"],
    group_name="concepts",
    kinds={"duckdb", "python", "pytorch"},
    metadata=table_metadata("predictions"),
    description="Image-level concept scores of the batch's inputs from each task's classifier (an Ultralytics "
                "classification model's top-k classes, or the context-based classifier's probability of every "
                "concept it learned): rows of the DuckDB table `predictions` whose box is the whole image.",
)
def concept_predictions(context: dg.AssetExecutionContext, store: DuckDBStore, images: ImageStore,
                        concept_models: ConceptModels, tasks: LabelingTasks) -> dg.MaterializeResult:
    batch = context.partition_key
    input_ids = store.read(lambda s: s.inputs.batch_input_ids(batch))
    trained = trained_classifiers(context.instance, batch)
    scored = {task.name: score_batch(store, images, concept_models, task, input_ids, batch,
                                     trained.get(task.name, {}), context.log.info)
              for task in classifier_tasks(tasks)}
    return dg.MaterializeResult(metadata={"images": len(input_ids), "per_task": scored,
                                          "dagster/row_count": sum(t.get("scores", 0) for t in scored.values())})


@dg.asset(
    partitions_def=batch_partitions,
    deps=[concept_predictions],
    group_name="concepts",
    kinds={"duckdb", "python"},
    pool="duckdb",
    metadata=table_metadata("annotations"),
    description="Image-level annotations (kind `concept`) of the batch: each concept score routed by the task's "
                "thresholds, operators and per-concept overrides, written with the status its band writes "
                "(`band_status`), review items assigned to reviewers (DuckDB table `annotations`).",
)
def concept_annotations(context: dg.AssetExecutionContext, store: DuckDBStore,
                        tasks: LabelingTasks) -> dg.MaterializeResult:
    batch = context.partition_key
    now = _now()
    per_task, metadata = {}, {}
    for task in classifier_tasks(tasks):
        weights_id = file_sha256(task.classifier_path()) if task.classifier.kind == "classify" else None
        model_id = store.read(lambda s, task=task, w=weights_id: s.concepts.batch_classifier(task.name, batch, w))
        if model_id is None:
            per_task[task.name] = {"appended_events": 0, "bands": {}, "why": "no classifier scored this batch"}
            continue
        per_task[task.name] = write_or_retry(
            store, lambda s, task=task, model_id=model_id: annotate_task(s, task, batch, model_id, now, Kind.CONCEPT))
        log_hand_over(context.log.info, task.name, per_task[task.name]["handed_over"])
        queues = store.read(lambda s, task=task: s.reviews.progress(task.name))
        metadata.update(task_totals(store, task.name, per_task[task.name]["bands"], queues))
        scores = store.read(lambda s, model_id=model_id: s.predictions.batch_confidences(batch, model_id))
        metadata[f"{task.name} concept score histogram"] = dg.MetadataValue.md(markdown_image(
            confidence_histograms(route_predictions(scores, task), task), f"{task.name} concept scores"))
    return dg.MaterializeResult(metadata={
        **metadata,
        "dagster/row_count": sum(t["appended_events"] for t in per_task.values()),
        "bands_per_task_and_concept": {name: t["bands"] for name, t in per_task.items()},
    })
