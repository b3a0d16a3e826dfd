"""Stage 2: the `predictions` asset runs the batch's new inputs through the detector."""

import hashlib
import queue
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import dagster as dg
import duckdb
import numpy as np
import pandas as pd

from assets.image_checks import load_oriented_rgb
from assets.ingestion import inputs
from assets.schemas import (
    ModelsSchema,
    PredictionsSchema,
    ProcessedInputsSchema,
    column_schema,
    table_schema_check,
)
from pipelines.partitions import batch_partitions
from resources.detector import Detection, Detector, LoadedModel
from resources.image_store import ImageStore
from resources.store import DuckDBStore, insert_frame, scalar, write_or_retry
from resources.tasks import LabelingTasks, detectors_for

T = TypeVar("T")
PREFETCH_IMAGES = 32


def prefetch(items: Iterable[T], depth: int = PREFETCH_IMAGES) -> Iterator[T]:
    """Produce `items` on a background thread, at most `depth` ahead, so decoding overlaps inference
    and memory stays bounded however long the stream is."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in items:
                buffer.put(item)
        except BaseException as error:
            buffer.put(error)
        buffer.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := buffer.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def prediction_id(model_id: str, input_id: str, detection: Detection) -> str:
    """Deterministic id from what the prediction is, so re-runs and threshold changes keep it."""
    key = (f"{model_id}|{input_id}|{detection.class_name}|{detection.x1:.5f}|{detection.y1:.5f}|"
           f"{detection.x2:.5f}|{detection.y2:.5f}")
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def detections_to_rows(batch: str, model_id: str, input_id: str, detections: list[Detection],
                       now: datetime) -> list[dict]:
    return [
        {"prediction_id": prediction_id(model_id, input_id, d), "batch": batch, "input_id": input_id,
         "model_id": model_id, "class_name": d.class_name, "confidence": d.confidence, "x1": d.x1, "y1": d.y1,
         "x2": d.x2, "y2": d.y2, "polygon": d.polygon, "predicted_at": now}
        for d in detections
    ]


def oriented_bgr(images: ImageStore, input_id: str, imgsz: int | None = None) -> np.ndarray:
    """The stored image in the orientation ingestion measured, as Ultralytics expects arrays (BGR);
    decoded no larger than the detector needs for `imgsz`."""
    rgb = load_oriented_rgb(images.read(input_id), longest_side_at_least=imgsz)
    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


def predict_inputs(detector: Detector, model: LoadedModel, images: ImageStore, input_ids: list[str], batch: str,
                   log=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions and processed-input rows for `input_ids`; no database connection is held here."""
    now = datetime.now(UTC).replace(tzinfo=None)
    stream = prefetch(oriented_bgr(images, input_id, model.imgsz) for input_id in input_ids)
    rows, processed = [], []
    for done, (input_id, detections) in enumerate(zip(input_ids, detector.predict_stream(stream, model)), 1):
        rows.extend(detections_to_rows(batch, model.model_id, input_id, detections, now))
        processed.append({"input_id": input_id, "model_id": model.model_id, "batch": batch,
                          "prediction_count": len(detections), "processed_at": now})
        if log and done % 100 == 0:
            log(f"predicted {done}/{len(input_ids)} images")
    frame = pd.DataFrame(rows, columns=list(PredictionsSchema.to_schema().columns))
    return frame.drop_duplicates("prediction_id"), pd.DataFrame(processed)


def register_model(conn: duckdb.DuckDBPyConnection, model: LoadedModel) -> None:
    if scalar(conn, "SELECT count(*) FROM models WHERE model_id = ?", [model.model_id]):
        return
    row = {"model_id": model.model_id, "name": model.name, "path": model.path, "task_type": model.task_type,
           "class_names": model.class_names, "registered_at": datetime.now(UTC).replace(tzinfo=None)}
    insert_frame(conn, "models", pd.DataFrame([row]), ModelsSchema)


def replace_predictions(conn: duckdb.DuckDBPyConnection, batch: str, model: LoadedModel, predictions: pd.DataFrame,
                        processed: pd.DataFrame) -> None:
    """Swap this batch's rows of this model for the new ones, in the caller's transaction."""
    register_model(conn, model)
    for table in ("predictions", "processed_inputs"):
        conn.execute(f"DELETE FROM {table} WHERE batch = ? AND model_id = ?", [batch, model.model_id])
    insert_frame(conn, "predictions", predictions, PredictionsSchema)
    insert_frame(conn, "processed_inputs", processed, ProcessedInputsSchema)


@dg.asset(
    partitions_def=batch_partitions,
    deps=[inputs],
    group_name="inference",
    kinds={"duckdb", "python", "pytorch"},
    # Not in the `duckdb` pool: the model runs without a connection; the short write at
    # the end goes through the store's lock retry, and the step is retried if that times out.
    metadata={"dagster/column_schema": column_schema(PredictionsSchema), "table": "predictions"},
    description="Every detection of the detector on the batch's new inputs (DuckDB table `predictions`).",
)
def predictions(context: dg.AssetExecutionContext, store: DuckDBStore, images: ImageStore,
                detector: Detector, tasks: LabelingTasks) -> dg.MaterializeResult:
    batch = context.partition_key
    detectors = detectors_for(tasks.load(), detector)
    # Every model is loaded first: unusable weights fail here, before any image is read.
    models = [(d, d.load()) for d in detectors]
    input_ids = store.query_df("SELECT input_id FROM inputs WHERE batch = ? ORDER BY input_id", [batch])["input_id"]
    per_model, total_rows = {}, 0
    for chosen, model in models:
        started = time.perf_counter()
        rows, processed = predict_inputs(chosen, model, images, list(input_ids), batch, log=context.log.info)
        seconds = time.perf_counter() - started
        write_or_retry(store, lambda conn, m=model, r=rows, p=processed: replace_predictions(conn, batch, m, r, p))
        total_rows += len(rows)
        per_model[model.name] = {
            "model_id": model.model_id, "runtime": model.runtime,
            "images_per_second": round(len(input_ids) / seconds, 2) if seconds > 0 and len(input_ids) else 0.0,
            "predictions_per_class": dict(sorted(Counter(rows["class_name"]).items())),
        }
    return dg.MaterializeResult(metadata={
        "dagster/row_count": total_rows,
        "images": len(input_ids),
        "models": per_model,
        "model_id": ", ".join(m.model_id for _, m in models),
    })


predictions_schema_check = table_schema_check(predictions.key, "predictions", PredictionsSchema)
models_schema_check = table_schema_check(predictions.key, "models", ModelsSchema)
