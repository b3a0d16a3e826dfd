"""Partitions: one dynamic partition per ingestion batch, one daily partition per version."""

import dagster as dg

batch_partitions = dg.DynamicPartitionsDefinition(name="batches")
