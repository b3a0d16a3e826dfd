"""Stage 4: `dataset_versions`, one reproducible snapshot per task and day.

The version of day D holds every annotation whose latest event before the end of D
(UTC) is SUCCESS: auto-accepted, accepted in review, or imported. Its manifest is a
sorted, canonical text with a sha256, so rebuilding a day whose history did not change
gives the same bytes and the same hash.
"""

from datetime import UTC, date, datetime

import dagster as dg

from assets import metadata_keys
from assets.checks import column_schema, table_metadata, table_schema_check
from assets.partitions import daily_partitions
from assets.triage import annotations
from core.results import BuiltVersion
from resources.image_store import ImageStore
from resources.store import DuckDBStore, write_or_retry
from resources.versions import VersionStore
from services.datasets import build_day_version
from store import Session


@dg.asset(
    partitions_def=daily_partitions,
    deps=[dg.AssetDep(annotations, partition_mapping=dg.AllPartitionMapping())],
    group_name="versions",
    kinds={"duckdb", "python"},
    pool="duckdb",
    # A backfill of many days is one run: one process, one database writer.
    backfill_policy=dg.BackfillPolicy.single_run(),
    metadata=table_metadata("dataset_versions"),
    description="Per task and day, the accepted annotations as of the end of the day (UTC), with a manifest "
                "and its sha256 (DuckDB table `dataset_versions`).",
)
def dataset_versions(context: dg.AssetExecutionContext, store: DuckDBStore, versions: VersionStore,
                     images: ImageStore) -> dg.MaterializeResult:
    now = datetime.now(UTC).replace(tzinfo=None)

    def build(s: Session) -> dict[str, dict[str, BuiltVersion]]:
        checked: set[str] = set()  # an attempt hashes each image once, however many days hold it
        return {day: dict(build_day_version(s, versions, images, task, date.fromisoformat(day), now, checked)
                          for task in s.history.tasks())
                for day in context.partition_keys}

    for day, built in write_or_retry(store, build).items():
        # Each day's partition describes that day's versions (a backfill of many days is one run).
        context.add_asset_metadata(partition_key=day, metadata={
            "dagster/row_count": len(built),
            "annotations": sum(v.annotations for v in built.values()),
            metadata_keys.VERSIONS: {key: v.as_dict() for key, v in built.items()},
        })
    return dg.MaterializeResult(metadata={"days": len(context.partition_keys),
                                          "dagster/column_schema": column_schema("dataset_versions")})


dataset_versions_schema_check = table_schema_check(dataset_versions, "dataset_versions",
                                                   "day = CAST($partition AS DATE)")
