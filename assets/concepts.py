"""Image-level concepts: the context-based classifier learned from people's labels, the concept scores of the
batch's inputs, and their routing into image-level annotations.

Lineage: `annotations` (people's image-level labels live in the same history) -> `concept_classifier` ->
`concept_predictions` -> `concept_annotations`. A classifier is content-addressed: unchanged labels give the
same classifier, so re-running a batch retrains nothing and re-writes nothing.
"""

import time
from datetime import UTC, datetime

import dagster as dg

from assets import metadata_keys
from assets.checks import table_metadata
from assets.partitions import batch_partitions
from assets.triage import annotations, log_hand_over, task_totals
from core.annotations import Kind
from core.plots import confidence_histograms, markdown_image
from core.results import TaskRouting
from core.routing import route_predictions
from core.task_config import LabelingTask
from engines.base import model_ref
from resources.concepts import ConceptModels
from resources.image_store import ImageStore
from resources.store import DuckDBStore, RetryingStore, write_or_retry
from resources.tasks import LabelingTasks
from services.concepts import score_batch, train_task_classifier
from services.routing import annotate_task


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
        trained = train_task_classifier(RetryingStore(store), images, concept_models, task, context.log.info)
        if trained is None:
            learned[task.name] = {"model_id": None, "why": "no concept has both a positive and a negative labelled "
                                                           "image yet: label some images (import or review)"}
            context.log.info(f"{task.name}: {learned[task.name]['why']}")
            continue
        learned[task.name] = {
            "model_id": trained.model_id, "labelled_images": trained.labelled_images,
            "labels": trained.classifier.labels, "training_accuracy": trained.training_accuracy,
            "seconds": round(time.perf_counter() - started, 2)}
    return dg.MaterializeResult(metadata={metadata_keys.CLASSIFIERS: learned})


def trained_classifiers(instance: dg.DagsterInstance, batch: str) -> dict[str, dict]:
    """What `concept_classifier` recorded for `batch` (per task: the classifier's model id, or why there is none),
    so that scoring uses the classifier of that materialization instead of training it a second time."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=concept_classifier.key, asset_partitions=[batch]), limit=1).records
    if not records:
        return {}
    return records[0].asset_materialization.metadata[metadata_keys.CLASSIFIERS].value


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
    scored = {task.name: score_batch(RetryingStore(store), images, concept_models, task, input_ids, batch,
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
    now = datetime.now(UTC).replace(tzinfo=None)
    per_task: dict[str, TaskRouting] = {}
    metadata: dict[str, object] = {}
    for task in classifier_tasks(tasks):
        weights_id = model_ref(task.classifier_path()).model_id if task.classifier.kind == "classify" else None
        model_id = store.read(lambda s, task=task, w=weights_id: s.concepts.batch_classifier(task.name, batch, w))
        if model_id is None:
            per_task[task.name] = TaskRouting(0, {}, 0, 0, 0, skipped="no classifier scored this batch")
            continue
        per_task[task.name] = write_or_retry(
            store, lambda s, task=task, model_id=model_id: annotate_task(s, task, batch, model_id, now, Kind.CONCEPT))
        log_hand_over(context.log.info, task.name, per_task[task.name].handed_over)
        queues = store.read(lambda s, task=task: s.reviews.progress_of(task))
        metadata.update(task_totals(store, task.name, per_task[task.name], queues))
        scores = store.read(lambda s, model_id=model_id: s.predictions.batch_confidences(batch, model_id))
        metadata[f"{task.name} concept score histogram"] = dg.MetadataValue.md(markdown_image(
            confidence_histograms(route_predictions(scores, task), task), f"{task.name} concept scores"))
    return dg.MaterializeResult(metadata={
        **metadata,
        "dagster/row_count": sum(t.appended_events for t in per_task.values()),
        metadata_keys.BANDS: {name: t.bands for name, t in per_task.items()},
    })
