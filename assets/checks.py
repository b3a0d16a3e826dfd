"""What every asset shares: its table's columns for the UI, and a blocking schema check per table."""

import warnings

import dagster as dg
import pandera.polars as pa
import polars as pl

from resources.store import DuckDBStore
from store.tables import TABLES

# Partitioned asset checks are a Dagster preview; they are what lets a check cost what its batch costs,
# so say it once here instead of on every command's start.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec",
                        category=dg.PreviewWarning)


def column_schema(table: str) -> dg.TableSchema:
    """The table's declared columns, types and descriptions, for the asset's Columns tab."""
    return dg.TableSchema(columns=[
        dg.TableColumn(c.name, c.sql_type, description=c.description,
                       constraints=dg.TableColumnConstraints(nullable=c.nullable, unique=c.unique))
        for c in TABLES[table].columns])


def table_metadata(table: str) -> dict:
    return {"dagster/column_schema": column_schema(table), "table": table}


def table_schema_check(asset: dg.AssetsDefinition, table: str, rows: str = "TRUE") -> dg.AssetChecksDefinition:
    """A blocking asset check that validates the rows of `table` that one partition of `asset` wrote (`rows`: an
    SQL condition on `$partition`) against the table's pandera model: its cost follows the batch, not the
    history."""

    @dg.asset_check(asset=asset, name=f"{table}_matches_schema", blocking=True, partitions_def=asset.partitions_def,
                    description=f"Every row of the DuckDB table `{table}` this partition wrote passes its pandera "
                                f"model (rows where {rows}).")
    def _check(context: dg.AssetCheckExecutionContext, store: DuckDBStore) -> dg.AssetCheckResult:
        params = {"partition": context.partition_key} if "$partition" in rows else {}
        frame = store.read(lambda s: s.table_rows(table, rows, params))
        try:
            TABLES[table].schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as errors:
            cases = pl.DataFrame(errors.failure_cases).head(20).cast(pl.Utf8)
            return dg.AssetCheckResult(
                passed=False, severity=dg.AssetCheckSeverity.ERROR,
                metadata={"rows": len(frame), "failure_cases": dg.MetadataValue.md(str(cases))},
            )
        return dg.AssetCheckResult(passed=True, metadata={"rows": len(frame)})

    return _check
