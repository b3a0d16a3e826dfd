"""Housekeeping of the store: a DuckLake's small files merged and old snapshots expired; a DuckDB file checkpointed."""

import dagster as dg

from resources.store import DuckDBStore


@dg.asset(
    group_name="maintenance",
    kinds={"duckdb"},
    pool="duckdb",
    description="Merges a DuckLake's small Parquet files, expires snapshots older than AUTOANNOTATE_SNAPSHOT_DAYS "
                "and deletes the files no snapshot needs (embedded: checkpoints the DuckDB file).",
)
def store_maintenance(store: DuckDBStore) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata=store.maintain(store.snapshot_days))
