"""Stage 6: `detector_models`, the model loop. For each day's dataset version, every task that detects objects
fine-tunes its current detector on the version's YOLO export (the train split), measures the candidate and the
current detector on the same val split, and promotes the candidate when the task's `promote_when` rule says so.
A promoted detector is the one the next batches (and the catch-up of earlier ones) predict with."""

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from assets.partitions import daily_partitions
from assets.versions import dataset_versions
from core.model_loop import (
    METRICS,
    average_precision,
    concepts_without_class,
    promotion_decision,
    share_auto_accepted,
    training_classes,
)
from core.plots import learning_curves, markdown_image, model_comparison
from core.task_config import LabelingTask
from engines.base import file_sha256
from resources.detector import Detector
from resources.exports import default_negatives, export_version
from resources.image_store import ImageStore
from resources.store import DuckDBStore
from resources.tasks import LabelingTasks, detector_for
from resources.training import DetectorTraining
from resources.versions import VersionStore

DECIDED_BY_RULE = "promote_when"
DEFAULT_TARGET_PRECISION = 0.95  # the precision autoannotate's own measure calibrates to when a task sets none


def train_task(context: dg.AssetExecutionContext, task: LabelingTask, day: str, store: DuckDBStore,
               images: ImageStore, versions: VersionStore, detector: Detector, training: DetectorTraining,
               tasks: LabelingTasks) -> dict:
    """Train, evaluate and maybe promote one task's detector on its version of `day`; what happened."""
    version_key = f"{task.name}@{day}"
    parent_detector = detector_for(task, detector)
    parent = parent_detector.weights_path()
    parent_model = parent_detector.load()
    # A concept no class of the detector stands for can only be learned in the task's concept space: a new head of
    # nc = the task's concepts (Ultralytics builds it when the dataset's nc differs, transferring every weight whose
    # shape fits), whose classes are the concepts themselves.
    new_concepts = concepts_without_class(task, parent_model.class_names)
    with tempfile.TemporaryDirectory() as scratch:
        exported = export_version(store, images, versions, version_key, "yolo", Path(scratch) / "data",
                                  negatives=default_negatives(store, task)[0],
                                  model_classes=None if new_concepts else (
                                      parent_model.class_names, training_classes(task, parent_model.class_names)))
        data = Path(exported["out"])
        train_labels = training.labelled_boxes(data, "train")
        if not exported["train"] or not exported["val"] or not train_labels:
            return {"trained": False, "why": f"{version_key} has {exported['train']} train images holding "
                                             f"{train_labels} labels the detector can learn, and {exported['val']} "
                                             "val images: both splits need images and the train split labels"}
        space = (f"in the task's concept space (new head for {', '.join(new_concepts)})" if new_concepts
                 else "in its own class space")
        context.log.info(f"{task.name}: fine-tuning {parent.name} {space} on {version_key} ({exported['train']} "
                         f"train images, {train_labels} labels; {exported['val']} val images) ...")
        trained = training.train(parent, data, lambda line: context.log.info(f"{task.name}: {line}"))
        target = task.target_precision or DEFAULT_TARGET_PRECISION

        def measured(weights: Path) -> dict:
            predicted, labels = training.val_predictions(weights, data, parent_detector.conf_floor)
            # Class ids of the two detectors differ from each other there: measured on the concepts both map to.
            figures = (average_precision(predicted.assign(concept=predicted["class_name"].map(task.concept_for)),
                                         labels.assign(concept=labels["class_name"]), task.concepts)
                       if new_concepts else training.evaluate(weights, data))
            return {**figures, "auto_accepted": share_auto_accepted(task, predicted, labels, target)}

        figures = {which: measured(weights) for which, weights in (("candidate", trained), ("current", parent))}
        class_names = training.class_names(trained)
    model_id, parent_id = file_sha256(trained), parent_model.model_id
    now = datetime.now(UTC).replace(tzinfo=None)
    settings = {"epochs": training.epochs, "imgsz": training.imgsz, "batch": training.batch,
                "device": training.device, "from": training.architecture or "parent weights",
                "classes": "task concepts" if new_concepts else "parent classes", "train_labels": train_labels}

    def record(s) -> None:
        s.predictions.register_model(parent_id, parent_model.name, parent_model.path, parent_model.task_type,
                                     parent_model.class_names, now)
        s.predictions.register_model(model_id, trained.name, str(trained), parent_model.task_type,
                                     class_names, now, details={
                                         "kind": "trained", "task": task.name, "version_key": version_key,
                                         "parent_id": parent_id, "training": settings})
        for which, evaluated in (("candidate", model_id), ("current", parent_id)):
            s.models.record_evaluation(evaluated, task.name, version_key,
                                       {**figures[which], "images": exported["val"]}, now)

    store.write(record)
    promote, reason = promotion_decision(task.promote_when, figures["candidate"], figures["current"])
    if promote:
        tasks.change_model(store, task, model_id, trained, "promote", DECIDED_BY_RULE, reason)
    context.log.info(f"{task.name}: model {model_id[:12]} {reason}")
    return {"trained": True, "model_id": model_id, "parent_id": parent_id, "version": version_key,
            "promoted": promote, "reason": reason, "training": settings,
            **{f"{which} {metric}": round(figures[which][metric], 4) for which in figures for metric in METRICS},
            **{f"{which} auto-accepted at precision {target}": figures[which]["auto_accepted"]["share"]
               for which in figures},
            "per_class": figures["candidate"]["per_class"]}


@dg.asset(
    partitions_def=daily_partitions,
    deps=[dataset_versions],
    group_name="model_loop",
    kinds={"pytorch", "duckdb"},
    # Not in the `duckdb` pool: training runs without a connection (minutes), the short writes wait for the lock.
    description="Per day and task: a detector fine-tuned from the task's current one on that day's dataset version "
                "(its train split), both measured on the version's val split with Ultralytics' validator (tables "
                "`models`, `model_evaluations`), and promoted by the task's `promote_when` rule "
                "(`model_promotions`).",
)
def detector_models(context: dg.AssetExecutionContext, store: DuckDBStore, images: ImageStore,
                    versions: VersionStore, detector: Detector, training: DetectorTraining,
                    tasks: LabelingTasks) -> dg.MaterializeResult:
    day = context.partition_key
    outcomes = {task.name: train_task(context, task, day, store, images, versions, detector, training, tasks)
                for task in tasks.load() if task.detects}
    for name, outcome in outcomes.items():
        if not outcome["trained"]:
            context.log.info(f"{name}: not trained: {outcome['why']}")
    metadata: dict = {"tasks": dg.MetadataValue.json(outcomes)}
    compared = {name: o for name, o in outcomes.items() if o["trained"]}
    if compared:
        metadata["candidates against current models"] = dg.MarkdownMetadataValue(
            markdown_image(model_comparison(compared), "candidate and current detectors"))
    metadata["promoted"] = sorted(name for name, o in compared.items() if o["promoted"])
    curves = {name: curve for name in outcomes
              if len(curve := store.read(lambda s, n=name: s.models.learning_curve(n)))}
    if curves:  # a backfill over many days trains one detector per version: the curve shows what labels bought
        metadata["learning curves"] = dg.MarkdownMetadataValue(
            markdown_image(learning_curves(curves), "mAP against labelled images"))
    return dg.MaterializeResult(metadata=metadata)
