"""Partitions: one dynamic partition per ingestion batch, one daily partition per dataset version."""

import dagster as dg

from core.settings import Settings

batch_partitions = dg.DynamicPartitionsDefinition(name="batches")
daily_partitions = dg.DailyPartitionsDefinition(start_date=Settings.current().versions_start, end_offset=1)
