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


class InputsSchema(pa.DataFrameModel):
    input_id: Series[str] = pa.Field(str_matches=SHA256, unique=True)
    uri: Series[str] = pa.Field(str_length={"min_value": 1})
    batch: Series[str] = pa.Field(str_length={"min_value": 1})
    width: Series[int] = pa.Field(gt=0)
    height: Series[int] = pa.Field(gt=0)
    format: Series[str] = pa.Field(isin=IMAGE_FORMATS)
    byte_size: Series[int] = pa.Field(gt=0)
    stored_path: Series[str] = pa.Field(str_length={"min_value": 1})
    ingested_at: Series[pd.Timestamp]

    class Config:
        strict = True
        coerce = True


class InputSourcesSchema(pa.DataFrameModel):
    uri: Series[str] = pa.Field(str_length={"min_value": 1})
    batch: Series[str] = pa.Field(str_length={"min_value": 1})
    input_id: Series[str] = pa.Field(str_matches=SHA256)
    duplicate_of_earlier: Series[bool]
    seen_at: Series[pd.Timestamp]

    class Config:
        strict = True
        coerce = True
        unique = ("batch", "uri")


class RejectedInputsSchema(pa.DataFrameModel):
    uri: Series[str] = pa.Field(str_length={"min_value": 1})
    batch: Series[str] = pa.Field(str_length={"min_value": 1})
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
    model_id: Series[str] = pa.Field(str_matches=SHA256, unique=True)
    name: Series[str] = pa.Field(str_length={"min_value": 1})
    path: Series[str] = pa.Field(str_length={"min_value": 1})
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


class PredictionsSchema(pa.DataFrameModel):
    prediction_id: Series[str] = pa.Field(str_length=32, unique=True)
    batch: Series[str] = pa.Field(str_length={"min_value": 1})
    input_id: Series[str] = pa.Field(str_matches=SHA256)
    model_id: Series[str] = pa.Field(str_matches=SHA256)
    class_name: Series[str] = pa.Field(str_length={"min_value": 1})
    confidence: Series[float] = pa.Field(ge=0.0, le=1.0)
    x1: Series[float] = pa.Field(ge=0.0, le=1.0)
    y1: Series[float] = pa.Field(ge=0.0, le=1.0)
    x2: Series[float] = pa.Field(ge=0.0, le=1.0)
    y2: Series[float] = pa.Field(ge=0.0, le=1.0)
    polygon: Series[object] = pa.Field(nullable=True)
    predicted_at: Series[pd.Timestamp]

    @pa.dataframe_check(error="box must have x1 < x2 and y1 < y2")
    def box_is_ordered(cls, frame: pd.DataFrame) -> pd.Series:
        return (frame["x1"] < frame["x2"]) & (frame["y1"] < frame["y2"])

    @pa.check("polygon", element_wise=True, error="polygon must be >= 3 points (x, y pairs) inside [0, 1]")
    def polygon_points(cls, polygon: object) -> bool:
        return _polygon_is_valid(polygon)

    class Config:
        strict = True
        coerce = True


class ProcessedInputsSchema(pa.DataFrameModel):
    input_id: Series[str] = pa.Field(str_matches=SHA256)
    model_id: Series[str] = pa.Field(str_matches=SHA256)
    batch: Series[str] = pa.Field(str_length={"min_value": 1})
    prediction_count: Series[int] = pa.Field(ge=0)
    processed_at: Series[pd.Timestamp]

    class Config:
        strict = True
        coerce = True
        unique = ("input_id", "model_id")
