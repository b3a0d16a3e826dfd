"""The persistent Dagster instance under AUTOANNOTATE_HOME, shared by the CLI and `make ui`."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import dagster as dg

# Telemetry off (offline machines); every DuckDB-writing step in one pool, of size 1 for a DuckDB file
# so two runs never hold it at once (runs queue instead of failing), larger for a DuckLake on PostgreSQL,
# which takes concurrent writers. Run monitoring frees the slots of runs that ended without freeing them.
INSTANCE_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: {writers}
  runs:
    max_concurrent_runs: 4
run_monitoring:
  enabled: true
  free_slots_after_run_end_seconds: 30
"""


def prepare_dagster_home(path: Path, writers: int = 1) -> Path:
    """Create DAGSTER_HOME at `path` with our dagster.yaml (kept if a user edited it) and export it; `writers`
    steps may write the database at once."""
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_YAML.format(writers=writers))
    os.environ["DAGSTER_HOME"] = str(path)
    return path


def persistent_instance(path: Path, writers: int = 1) -> dg.DagsterInstance:
    """The instance at `path`. Processes starting at once on a new home take turns creating its storage
    (SQLite: two creating it together fail on its schema version)."""
    prepare_dagster_home(path, writers)
    with (path / ".create.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # creates (or migrates) every storage now, under the lock
        return instance
