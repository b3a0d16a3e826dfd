"""Dagster wiring: the one Definitions, jobs, sensors, schedules and the persistent instance."""
