"""What every asset shares: its table's columns for the UI, and a blocking schema check per table."""

import dagster as dg
import pandera.polars as pa
import polars as pl

from resources.store import DuckDBStore
from store.tables import TABLES


def column_schema(table: str) -> dg.TableSchema:
    """The table's declared columns, types and descriptions, for the asset's Columns tab."""
    return dg.TableSchema(columns=[
        dg.TableColumn(c.name, c.sql_type, description=c.description,
                       constraints=dg.TableColumnConstraints(nullable=c.nullable, unique=c.unique))
        for c in TABLES[table].columns])


def table_metadata(table: str) -> dict:
    return {"dagster/column_schema": column_schema(table), "table": table}


def table_schema_check(asset: dg.AssetKey | str, table: str) -> dg.AssetChecksDefinition:
    """A blocking asset check that validates every stored row of `table` against its pandera model."""

    @dg.asset_check(asset=asset, name=f"{table}_matches_schema", blocking=True,
                    description=f"Every row of the DuckDB table `{table}` passes its pandera model.")
    def _check(store: DuckDBStore) -> dg.AssetCheckResult:
        frame = store.read(lambda s: s.table_rows(table))
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
