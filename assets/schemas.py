"""Pandera models for every table the assets write; each write is validated against them."""


import warnings

import dagster as dg
import pandas as pd
import pandera.pandas as pa
from dagster_pandera import pandera_schema_to_dagster_type
from pandera.typing import Series

from resources.store import DuckDBStore

SHA256 = r"^[0-9a-f]{64}$"
REJECTION_CODES = ["empty", "not_an_image", "corrupt", "unsupported_format", "too_many_pixels", "unreadable"]
IMAGE_FORMATS = ["JPEG", "PNG", "BMP", "WEBP", "TIFF"]


def non_empty(**kwargs: object) -> object:
    return pa.Field(str_length={"min_value": 1}, **kwargs)


def sha256(**kwargs: object) -> object:
    return pa.Field(str_matches=SHA256, **kwargs)


def unit(**kwargs: object) -> object:
    """A value in [0, 1]: normalised coordinates, confidences."""
    return pa.Field(ge=0.0, le=1.0, **kwargs)


class InputsSchema(pa.DataFrameModel):
    input_id: Series[str] = sha256(unique=True)
    uri: Series[str] = non_empty()
    batch: Series[str] = non_empty()
    width: Series[int] = pa.Field(gt=0)
    height: Series[int] = pa.Field(gt=0)
    format: Series[str] = pa.Field(isin=IMAGE_FORMATS)
    byte_size: Series[int] = pa.Field(gt=0)
    stored_path: Series[str] = non_empty()
    ingested_at: Series[pd.Timestamp]

    class Config:
        strict = True
        coerce = True


class InputSourcesSchema(pa.DataFrameModel):
    uri: Series[str] = non_empty()
    batch: Series[str] = non_empty()
    input_id: Series[str] = sha256()
    duplicate_of_earlier: Series[bool]
    seen_at: Series[pd.Timestamp]

    class Config:
        strict = True
        coerce = True
        unique = ("batch", "uri")


class RejectedInputsSchema(pa.DataFrameModel):
    uri: Series[str] = non_empty()
    batch: Series[str] = non_empty()
    reason_code: Series[str] = pa.Field(isin=REJECTION_CODES)
    reason: Series[str] = pa.Field(str_length={"min_value": 10})
    detected_at: Series[pd.Timestamp]

    class Config:
        strict = True
        coerce = True
        unique = ("batch", "uri")


def column_schema(model: type[pa.DataFrameModel]) -> dg.TableSchema:
    """The model as a Dagster table schema, for the asset's Columns tab."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        dagster_type = pandera_schema_to_dagster_type(model)
    return dagster_type.metadata["schema"].schema


def table_schema_check(
    asset: dg.AssetKey | str, table: str, model: type[pa.DataFrameModel]
) -> dg.AssetChecksDefinition:
    """A blocking asset check that validates every stored row of `table` against `model`."""

    @dg.asset_check(asset=asset, name=f"{table}_matches_schema", blocking=True,
                    description=f"Every row of the DuckDB table `{table}` passes the pandera model {model.__name__}.")
    def _check(store: DuckDBStore) -> dg.AssetCheckResult:
        frame = store.query_df(f"SELECT * FROM {table}")
        try:
            model.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as errors:
            cases = errors.failure_cases.head(20).astype(str)
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.ERROR,
                metadata={"rows": len(frame), "failure_cases": dg.MetadataValue.md(cases.to_markdown(index=False))},
            )
        return dg.AssetCheckResult(passed=True, metadata={"rows": len(frame)})

    return _check


class ModelsSchema(pa.DataFrameModel):
    model_id: Series[str] = sha256(unique=True)
    name: Series[str] = non_empty()
    path: Series[str] = non_empty()
    task_type: Series[str] = pa.Field(isin=["detect", "segment"])
    class_names: Series[object]
    registered_at: Series[pd.Timestamp]

    class Config:
        strict = True
        coerce = True


def _polygon_is_valid(polygon: object) -> bool:
    if polygon is None or (isinstance(polygon, float) and pd.isna(polygon)):
        return True
    values = list(polygon)
    return len(values) >= 6 and len(values) % 2 == 0 and all(0.0 <= v <= 1.0 for v in values)


class GeometrySchema(pa.DataFrameModel):
    """A box normalised to [0, 1] (x1 < x2, y1 < y2) and an optional polygon; shared by predictions and
    annotations."""

    x1: Series[float] = unit()
    y1: Series[float] = unit()
    x2: Series[float] = unit()
    y2: Series[float] = unit()
    polygon: Series[object] = pa.Field(nullable=True)

    @pa.dataframe_check(error="box must have x1 < x2 and y1 < y2")
    def box_is_ordered(cls, frame: pd.DataFrame) -> pd.Series:
        return (frame["x1"] < frame["x2"]) & (frame["y1"] < frame["y2"])

    @pa.check("polygon", element_wise=True, error="polygon must be >= 3 points (x, y pairs) inside [0, 1]")
    def polygon_points(cls, polygon: object) -> bool:
        return _polygon_is_valid(polygon)

    class Config:
        coerce = True


class PredictionsSchema(GeometrySchema):
    prediction_id: Series[str] = pa.Field(str_length=32, unique=True)
    batch: Series[str] = non_empty()
    input_id: Series[str] = sha256()
    model_id: Series[str] = sha256()
    class_name: Series[str] = non_empty()
    confidence: Series[float] = unit()
    predicted_at: Series[pd.Timestamp]

    class Config:
        strict = True
        coerce = True


class ProcessedInputsSchema(pa.DataFrameModel):
    input_id: Series[str] = sha256()
    model_id: Series[str] = sha256()
    batch: Series[str] = non_empty()
    prediction_count: Series[int] = pa.Field(ge=0)
    processed_at: Series[pd.Timestamp]

    class Config:
        strict = True
        coerce = True
        unique = ("input_id", "model_id")


ANNOTATION_STATUSES = ["SUCCESS", "AWAITING_REVIEW", "REJECTED", "RETIRED"]
ANNOTATION_SOURCES = ["auto", "review", "import"]


class AnnotationsSchema(GeometrySchema):
    """One status event of one annotation; the current state is the latest event per annotation_id."""

    event_id: Series[str] = pa.Field(str_length=32, unique=True)
    annotation_id: Series[str] = pa.Field(str_length=32)
    task: Series[str] = non_empty()
    input_id: Series[str] = sha256()
    prediction_id: Series[str] = pa.Field(nullable=True)
    model_id: Series[str] = pa.Field(nullable=True)
    batch: Series[str] = pa.Field(nullable=True)
    concept: Series[str] = non_empty()
    confidence: Series[float] = unit(nullable=True)
    status: Series[str] = pa.Field(isin=ANNOTATION_STATUSES)
    annotator: Series[str] = non_empty()
    source: Series[str] = pa.Field(isin=ANNOTATION_SOURCES)
    event_at: Series[pd.Timestamp]

    class Config:
        coerce = True


class TaskInputsSchema(pa.DataFrameModel):
    task: Series[str] = non_empty()
    input_id: Series[str] = sha256()
    batch: Series[str] = non_empty()
    model_id: Series[str] = sha256()
    annotation_count: Series[int] = pa.Field(ge=0)
    processed_at: Series[pd.Timestamp]

    class Config:
        strict = True
        coerce = True
        unique = ("task", "input_id")


class ReviewAssignmentsSchema(pa.DataFrameModel):
    task: Series[str] = non_empty()
    input_id: Series[str] = sha256()
    reviewer: Series[str] = non_empty()
    assigned_at: Series[pd.Timestamp]

    class Config:
        strict = True
        coerce = True
        unique = ("task", "input_id")
