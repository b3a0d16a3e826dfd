"""Pandera models for every table the assets write; each write is validated against them.

The models use pandera's polars backend: writes of a million rows validate in well
under a second (the pandas backend loops over strings in Python), and DuckDB reads
polars frames through Arrow without a copy.
"""

import warnings

import dagster as dg
import pandera.polars as pa
import polars as pl
from dagster_pandera import pandera_schema_to_dagster_type
from pandera.api.polars.types import PolarsData

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
    input_id: str = sha256(unique=True)
    uri: str = non_empty()
    batch: str = non_empty()
    width: int = pa.Field(gt=0)
    height: int = pa.Field(gt=0)
    format: str = pa.Field(isin=IMAGE_FORMATS)
    byte_size: int = pa.Field(gt=0)
    stored_path: str = non_empty()
    ingested_at: pl.Datetime

    class Config:
        strict = True
        coerce = True


class InputSourcesSchema(pa.DataFrameModel):
    uri: str = non_empty()
    batch: str = non_empty()
    input_id: str = sha256()
    duplicate_of_earlier: bool
    seen_at: pl.Datetime

    class Config:
        strict = True
        coerce = True
        unique = ["batch", "uri"]  # noqa: RUF012 - pandera reads it as a list


class RejectedInputsSchema(pa.DataFrameModel):
    uri: str = non_empty()
    batch: str = non_empty()
    reason_code: str = pa.Field(isin=REJECTION_CODES)
    reason: str = pa.Field(str_length={"min_value": 10})
    detected_at: pl.Datetime

    class Config:
        strict = True
        coerce = True
        unique = ["batch", "uri"]  # noqa: RUF012 - pandera reads it as a list


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
        frame = store.query_pl(f"SELECT * FROM {table}")
        try:
            model.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as errors:
            cases = pl.DataFrame(errors.failure_cases).head(20).cast(pl.Utf8)
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.ERROR,
                metadata={"rows": len(frame), "failure_cases": dg.MetadataValue.md(str(cases))},
            )
        return dg.AssetCheckResult(passed=True, metadata={"rows": len(frame)})

    return _check


class ModelsSchema(pa.DataFrameModel):
    model_id: str = sha256(unique=True)
    name: str = non_empty()
    path: str = non_empty()
    task_type: str = pa.Field(isin=["detect", "segment"])
    class_names: pl.List(pl.Utf8)
    registered_at: pl.Datetime

    class Config:
        strict = True
        coerce = True



class GeometrySchema(pa.DataFrameModel):
    """A box normalised to [0, 1] (x1 < x2, y1 < y2) and an optional polygon; shared by predictions and
    annotations."""

    x1: float = unit()
    y1: float = unit()
    x2: float = unit()
    y2: float = unit()
    polygon: pl.List(pl.Float64) = pa.Field(nullable=True)

    @pa.dataframe_check(error="box must have x1 < x2 and y1 < y2")
    def box_is_ordered(cls, data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select((pl.col("x1") < pl.col("x2")) & (pl.col("y1") < pl.col("y2")))

    @pa.check("polygon", error="polygon must be >= 3 points (x, y pairs) inside [0, 1]")
    def polygon_points(cls, data: PolarsData) -> pl.LazyFrame:
        points = pl.col(data.key)
        return data.lazyframe.select(points.is_null() | (
            (points.list.len() >= 6) & (points.list.len() % 2 == 0) & (points.list.min() >= 0)
            & (points.list.max() <= 1)))

    class Config:
        coerce = True


class PredictionsSchema(GeometrySchema):
    prediction_id: str = pa.Field(str_length=32, unique=True)
    batch: str = non_empty()
    input_id: str = sha256()
    model_id: str = sha256()
    class_name: str = non_empty()
    confidence: float = unit()
    predicted_at: pl.Datetime

    class Config:
        strict = True
        coerce = True


class ProcessedInputsSchema(pa.DataFrameModel):
    input_id: str = sha256()
    model_id: str = sha256()
    batch: str = non_empty()
    prediction_count: int = pa.Field(ge=0)
    processed_at: pl.Datetime

    class Config:
        strict = True
        coerce = True
        unique = ["input_id", "model_id"]  # noqa: RUF012


ANNOTATION_STATUSES = ["SUCCESS", "AWAITING_REVIEW", "REJECTED", "RETIRED"]
ANNOTATION_SOURCES = ["auto", "review", "import"]


class AnnotationsSchema(GeometrySchema):
    """One status event of one annotation; the current state is the latest event per annotation_id."""

    event_id: str = pa.Field(str_length=32, unique=True)
    annotation_id: str = pa.Field(str_length=32)
    task: str = non_empty()
    input_id: str = sha256()
    prediction_id: str = pa.Field(nullable=True)
    model_id: str = pa.Field(nullable=True)
    batch: str = pa.Field(nullable=True)
    concept: str = non_empty()
    confidence: float = unit(nullable=True)
    status: str = pa.Field(isin=ANNOTATION_STATUSES)
    annotator: str = non_empty()
    source: str = pa.Field(isin=ANNOTATION_SOURCES)
    event_at: pl.Datetime

    class Config:
        coerce = True


class TaskInputsSchema(pa.DataFrameModel):
    task: str = non_empty()
    input_id: str = sha256()
    batch: str = non_empty()
    model_id: str = sha256()
    annotation_count: int = pa.Field(ge=0)
    processed_at: pl.Datetime

    class Config:
        strict = True
        coerce = True
        unique = ["task", "input_id"]  # noqa: RUF012


class ReviewAssignmentsSchema(pa.DataFrameModel):
    task: str = non_empty()
    input_id: str = sha256()
    reviewer: str = non_empty()
    assigned_at: pl.Datetime

    class Config:
        strict = True
        coerce = True
        unique = ["task", "input_id"]  # noqa: RUF012


class DatasetVersionsSchema(pa.DataFrameModel):
    """The latest version of each (task, day); its earlier contents live in Dagster's materializations."""

    version_key: str = pa.Field(str_matches=r"^.+@\d{4}-\d{2}-\d{2}$", unique=True)
    task: str = non_empty()
    day: pl.Date
    cutoff: pl.Datetime
    manifest_sha256: str = sha256()
    annotations: int = pa.Field(ge=0)
    inputs: int = pa.Field(ge=0)
    per_concept: str = non_empty()
    manifest_path: str = non_empty()
    created_at: pl.Datetime
    changed_at: pl.Datetime

    class Config:
        strict = True
        coerce = True
