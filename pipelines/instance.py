"""The persistent Dagster instance under AUTOANNOTATE_HOME, shared by the CLI and `make ui`."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

# Telemetry off (offline machines); every DuckDB-writing step in one pool of size 1
# so two runs never hold the database at once; runs queue instead of failing. Run monitoring
# frees the slots of runs that ended without freeing them.
INSTANCE_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 4
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 30
"""


def prepare_dagster_home(path: Path) -> Path:
    """Create DAGSTER_HOME at `path` with our dagster.yaml (kept if a user edited it) and export it."""
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(path)
    return path


def persistent_instance(path: Path) -> dg.DagsterInstance:
    prepare_dagster_home(path)
    return dg.DagsterInstance.get()
