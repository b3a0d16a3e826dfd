"""The persistent Dagster instance under AUTOANNOTATE_HOME, shared by the CLI and `make ui`."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

import dagster as dg

from core.private_files import write_private

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
# A step on a Celery worker gets the run's instance from the message (its settings as written here): the folders
# it writes compute logs and scratch files to are read from the worker's own DAGSTER_HOME, not the launching
# machine's paths (a worker shares no folder with it).
TEAM_LOCAL_FILES = """\
local_artifact_storage:
  module: dagster._core.storage.root
  class: LocalArtifactStorage
  config:
    base_dir:
      env: DAGSTER_HOME
compute_logs:
  module: dagster._core.storage.local_compute_log_manager
  class: LocalComputeLogManager
  config:
    base_dir:
      env: DAGSTER_HOME
"""
GENERATED = "# Written by autoannotate (sha256 {digest}); once edited, it is left alone.\n"
LIBPQ_TO_DAGSTER = {"host": "hostname", "port": "port", "user": "username", "password": "password",
                    "dbname": "db_name"}


def instance_yaml(writers: int = 1, storage: str = "") -> str:
    """Our dagster.yaml: with `storage` = "postgres:CONNINFO", runs, events and schedules live in PostgreSQL
    (so the daemon, the webserver and workers on other machines share one instance); else SQLite in the home."""
    text = INSTANCE_YAML.format(writers=writers)
    if storage:
        if not storage.startswith("postgres:"):
            raise ValueError(f"AUTOANNOTATE_DAGSTER_STORAGE={storage!r} is not a storage: leave it unset (SQLite "
                             "in the home) or use postgres:CONNINFO (e.g. postgres:dbname=dagster host=db user=u).")
        fields = dict(part.split("=", 1) for part in storage.removeprefix("postgres:").split())
        database = "\n".join(f"      {LIBPQ_TO_DAGSTER[k]}: {v}" for k, v in fields.items() if k in LIBPQ_TO_DAGSTER)
        # psycopg2, which dagster-postgres installs (SQLAlchemy 2.1's default PostgreSQL driver is psycopg 3).
        text += f"storage:\n  postgres:\n    postgres_db:\n{database}\n      scheme: postgresql+psycopg2\n"
        text += TEAM_LOCAL_FILES
    return GENERATED.format(digest=hashlib.sha256(text.encode()).hexdigest()[:16]) + text


def prepare_dagster_home(path: Path, writers: int = 1, storage: str = "") -> Path:
    """Create DAGSTER_HOME at `path` with our dagster.yaml and export it; `writers` steps may write the database at
    once. A file we wrote is rewritten when the settings change; one a user edited is kept."""
    path.mkdir(parents=True, exist_ok=True)
    config = path / "dagster.yaml"
    if not config.exists() or _unedited(config.read_text()):
        wanted = instance_yaml(writers, storage)
        if not config.exists() or config.read_text() != wanted:
            write_private(config, wanted)  # a team's holds the catalog server's password
    os.environ["DAGSTER_HOME"] = str(path)
    return path


def _unedited(text: str) -> bool:
    """Whether `text` is a dagster.yaml we wrote (this version's, with its digest, or the earlier plain one)."""
    first, _, body = text.partition("\n")
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return first == GENERATED.format(digest=digest).rstrip("\n") or text == INSTANCE_YAML.format(writers=1)


def persistent_instance(path: Path, writers: int = 1, storage: str = "") -> dg.DagsterInstance:
    """The instance at `path`. Processes starting at once on a new home take turns creating its storage
    (SQLite: two creating it together fail on its schema version)."""
    prepare_dagster_home(path, writers, storage)
    with (path / ".create.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        instance.get_runs(limit=1)  # creates (or migrates) every storage now, under the lock
        return instance
