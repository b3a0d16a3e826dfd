"""Stage 6: `detector_models`, the model loop. For each day's dataset version, every task that detects objects
fine-tunes its current detector on the version's YOLO export (the train split), measures the candidate and the
current detector on the same val split, and promotes the candidate when the task's `promote_when` rule says so.
A promoted detector is the one the next batches (and the catch-up of earlier ones) predict with."""


import dagster as dg

from assets import metadata_keys
from assets.partitions import daily_partitions
from assets.versions import dataset_versions
from core.plots import learning_curves, markdown_image, model_comparison
from resources.detector import Detector
from resources.image_store import ImageStore
from resources.store import DuckDBStore
from resources.tasks import LabelingTasks, detector_for
from resources.training import DetectorTraining
from resources.versions import VersionStore
from services.model_loop import train_task


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
    outcomes = {task.name: train_task(task, day, store, images, versions, detector_for(task, detector), training,
                                      tasks, context.log.info)
                for task in tasks.load() if task.detects}
    for name, outcome in outcomes.items():
        if not outcome.trained:
            context.log.info(f"{name}: not trained: {outcome.why}")
    metadata: dict = {metadata_keys.TRAINING: dg.MetadataValue.json({n: o.as_dict() for n, o in outcomes.items()})}
    compared = {name: o.as_dict() for name, o in outcomes.items() if o.trained}
    if compared:
        metadata["candidates against current models"] = dg.MarkdownMetadataValue(
            markdown_image(model_comparison(compared), "candidate and current detectors"))
    metadata["promoted"] = sorted(name for name, o in outcomes.items() if o.promoted)
    curves = {name: curve for name in outcomes
              if len(curve := store.read(lambda s, n=name: s.models.learning_curve(n)))}
    if curves:  # a backfill over many days trains one detector per version: the curve shows what labels bought
        metadata["learning curves"] = dg.MarkdownMetadataValue(
            markdown_image(learning_curves(curves), "mAP against labelled images"))
    return dg.MaterializeResult(metadata=metadata)
