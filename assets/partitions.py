"""Partitions: one dynamic partition per ingestion batch, one daily partition per dataset version."""

import dagster as dg

from core.settings import DEFAULT_VERSIONS_START

batch_partitions = dg.DynamicPartitionsDefinition(name="batches")


def daily_partitions_from(start: str) -> dg.DailyPartitionsDefinition:
    """One partition per day from `start` (AUTOANNOTATE_VERSIONS_START) to today."""
    return dg.DailyPartitionsDefinition(start_date=start, end_offset=1)


# What the daily assets declare; `build_definitions` dates them from the deployment's own start.
daily_partitions = daily_partitions_from(DEFAULT_VERSIONS_START)
