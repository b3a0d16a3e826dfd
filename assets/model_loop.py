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
from core.model_loop import METRICS, promotion_decision, share_auto_accepted, training_classes
from core.plots import learning_curves, markdown_image, model_comparison
from core.task_config import LabelingTask
from resources.detector import Detector, file_sha256
from resources.exports import export_version
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
    with tempfile.TemporaryDirectory() as scratch:
        exported = export_version(store, images, versions, version_key, "yolo", Path(scratch) / "data",
                                  model_classes=(parent_model.class_names,
                                                 training_classes(task, parent_model.class_names)))
        if not exported["train"] or not exported["val"]:
            return {"trained": False, "why": f"{version_key} has {exported['train']} train and {exported['val']} val "
                                             "images: both splits need at least one"}
        data = Path(exported["out"])
        context.log.info(f"{task.name}: fine-tuning {parent.name} on {version_key} ({exported['train']} train, "
                         f"{exported['val']} val images) ...")
        trained = training.train(parent, data, lambda line: context.log.info(f"{task.name}: {line}"))
        target = task.target_precision or DEFAULT_TARGET_PRECISION
        figures = {which: {**training.evaluate(weights, data), "auto_accepted": share_auto_accepted(
                       task, *training.val_predictions(weights, data, parent_detector.conf_floor), target)}
                   for which, weights in (("candidate", trained), ("current", parent))}
    model_id, parent_id = file_sha256(trained), parent_model.model_id
    now = datetime.now(UTC).replace(tzinfo=None)
    settings = {"epochs": training.epochs, "imgsz": training.imgsz, "batch": training.batch,
                "device": training.device, "from": training.architecture or "parent weights"}

    def record(s) -> None:
        s.predictions.register_model(parent_id, parent_model.name, parent_model.path, parent_model.task_type,
                                     parent_model.class_names, now)
        s.predictions.register_model(model_id, trained.name, str(trained), parent_model.task_type,
                                     parent_model.class_names, now, details={
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
