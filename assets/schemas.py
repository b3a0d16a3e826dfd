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
