"""Stage 2: the `predictions` asset runs the batch's new inputs through the detector."""

import time
from collections import Counter
from datetime import UTC, datetime

import dagster as dg

from assets import metadata_keys
from assets.checks import column_schema, table_metadata, table_schema_check
from assets.ingestion import inputs
from assets.partitions import batch_partitions
from engines.int8 import CALIBRATION_IMAGES
from resources.detector import Detector, oriented_bgr
from resources.image_store import ImageStore
from resources.store import DuckDBStore, write_or_retry
from resources.tasks import LabelingTasks, check_class_maps, detectors_for


@dg.asset(
    partitions_def=batch_partitions,
    # No edge from `detector_models`: the loop (versions -> models -> predictions -> versions) would be a cycle,
    # which an asset graph cannot hold. The model a batch used is in the metadata (`models`), and its `models` row
    # names the version and parent it was trained from.
    deps=[inputs],
    group_name="inference",
    kinds={"duckdb", "python", "pytorch"},
    # Not in the `duckdb` pool: the model runs without a connection; the short write at
    # the end goes through the store's lock retry, and the step is retried if that times out.
    metadata=table_metadata("predictions"),
    description="Every detection of the detector on the batch's new inputs (DuckDB table `predictions`).",
)
def predictions(context: dg.AssetExecutionContext, store: DuckDBStore, images: ImageStore,
                detector: Detector, tasks: LabelingTasks) -> dg.MaterializeResult:
    batch = context.partition_key
    task_list = tasks.load()
    # Every model is loaded first: unusable weights or a class_map naming classes a model lacks fail here,
    # before any image is read.
    def calibration() -> list:  # at precision int8, the first load quantizes on the store's first images
        return [oriented_bgr(images, i) for i in store.read(lambda s: s.inputs.earliest(CALIBRATION_IMAGES))]

    models = [(d, d.load(calibration)) for d in detectors_for(task_list, detector)]
    check_class_maps(task_list, detector, models)
    for chosen, model in models:
        context.log.info(chosen.runtime_sentence(model))
    input_ids = store.read(lambda s: s.inputs.batch_input_ids(batch))
    per_model, total_rows = {}, 0
    for chosen, model in models:
        started = time.perf_counter()
        rows, processed = chosen.predict_stored(model, images, input_ids, batch, log=context.log.info)
        seconds = time.perf_counter() - started
        now = datetime.now(UTC).replace(tzinfo=None)

        def write(s, m=model, r=rows, p=processed, now=now) -> None:
            s.predictions.register_model(m.model_id, m.name, m.path, m.task_type, m.class_names, now)
            s.predictions.replace_batch(batch, m.model_id, r, p)

        write_or_retry(store, write)
        total_rows += len(rows)
        per_model[model.name] = {
            "model_id": model.model_id, "runtime": model.runtime,
            "images_per_second": round(len(input_ids) / seconds, 2) if seconds > 0 and input_ids else 0.0,
            "predictions_per_class": dict(sorted(Counter(rows["class_name"]).items())),
        }
    return dg.MaterializeResult(metadata={
        "dagster/column_schema": column_schema("predictions"),  # the Columns tab reads the latest event
        "dagster/row_count": total_rows,
        "images": len(input_ids),
        metadata_keys.INFERENCE: per_model,
        metadata_keys.MODEL_IDS: dg.MetadataValue.json(sorted({m.model_id for _, m in models})),
    })


predictions_schema_check = table_schema_check(predictions, "predictions", "batch = $partition")
models_schema_check = table_schema_check(predictions, "models")
