"""The DuckDB store: one file, one short transaction per unit of work.

DuckDB lets a single process hold a database file read-write, and a writer also
blocks read-only opens from other processes. Every component therefore opens a
connection, does its work in one transaction and closes it; an open that finds the
file locked is retried with exponential backoff and jitter for a bounded time and
then fails with a message naming the process that holds the lock.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pandera.polars as pa
import polars as pl

# Idempotent DDL: safe to run on every open. New columns are added with
# ALTER TABLE ... ADD COLUMN IF NOT EXISTS so older files migrate in place.
TABLE_DDL: dict[str, str] = {
    "inputs": """
        CREATE TABLE IF NOT EXISTS inputs (
            input_id VARCHAR PRIMARY KEY, uri VARCHAR NOT NULL, batch VARCHAR NOT NULL,
            width INTEGER NOT NULL, height INTEGER NOT NULL, format VARCHAR NOT NULL,
            byte_size BIGINT NOT NULL, stored_path VARCHAR NOT NULL, ingested_at TIMESTAMP NOT NULL)""",
    "input_sources": """
        CREATE TABLE IF NOT EXISTS input_sources (
            uri VARCHAR NOT NULL, batch VARCHAR NOT NULL, input_id VARCHAR NOT NULL,
            duplicate_of_earlier BOOLEAN NOT NULL, seen_at TIMESTAMP NOT NULL,
            PRIMARY KEY (batch, uri))""",
    "rejected_inputs": """
        CREATE TABLE IF NOT EXISTS rejected_inputs (
            uri VARCHAR NOT NULL, batch VARCHAR NOT NULL, reason_code VARCHAR NOT NULL,
            reason VARCHAR NOT NULL, detected_at TIMESTAMP NOT NULL, PRIMARY KEY (batch, uri))""",
    "models": """
        CREATE TABLE IF NOT EXISTS models (
            model_id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, path VARCHAR NOT NULL,
            task_type VARCHAR NOT NULL, class_names VARCHAR[] NOT NULL, registered_at TIMESTAMP NOT NULL)""",
    "predictions": """
        CREATE TABLE IF NOT EXISTS predictions (
            prediction_id VARCHAR PRIMARY KEY, batch VARCHAR NOT NULL, input_id VARCHAR NOT NULL,
            model_id VARCHAR NOT NULL, class_name VARCHAR NOT NULL, confidence DOUBLE NOT NULL,
            x1 DOUBLE NOT NULL, y1 DOUBLE NOT NULL, x2 DOUBLE NOT NULL, y2 DOUBLE NOT NULL,
            polygon DOUBLE[], predicted_at TIMESTAMP NOT NULL)""",
    "event_seq": "CREATE SEQUENCE IF NOT EXISTS event_seq",
    "annotations": """
        CREATE TABLE IF NOT EXISTS annotations (
            event_id VARCHAR PRIMARY KEY, seq BIGINT NOT NULL DEFAULT nextval('event_seq'),
            annotation_id VARCHAR NOT NULL, task VARCHAR NOT NULL, input_id VARCHAR NOT NULL,
            prediction_id VARCHAR, model_id VARCHAR, batch VARCHAR, concept VARCHAR NOT NULL,
            x1 DOUBLE NOT NULL, y1 DOUBLE NOT NULL, x2 DOUBLE NOT NULL, y2 DOUBLE NOT NULL, polygon DOUBLE[],
            confidence DOUBLE, status VARCHAR NOT NULL, annotator VARCHAR NOT NULL, source VARCHAR NOT NULL,
            event_at TIMESTAMP NOT NULL)""",
    "task_inputs": """
        CREATE TABLE IF NOT EXISTS task_inputs (
            task VARCHAR NOT NULL, input_id VARCHAR NOT NULL, batch VARCHAR NOT NULL, model_id VARCHAR NOT NULL,
            annotation_count INTEGER NOT NULL, processed_at TIMESTAMP NOT NULL, PRIMARY KEY (task, input_id))""",
    "review_assignments": """
        CREATE TABLE IF NOT EXISTS review_assignments (
            task VARCHAR NOT NULL, input_id VARCHAR NOT NULL, reviewer VARCHAR NOT NULL,
            assigned_at TIMESTAMP NOT NULL, PRIMARY KEY (task, input_id))""",
    "dataset_versions": """
        CREATE TABLE IF NOT EXISTS dataset_versions (
            version_key VARCHAR PRIMARY KEY, task VARCHAR NOT NULL, day DATE NOT NULL, cutoff TIMESTAMP NOT NULL,
            manifest_sha256 VARCHAR NOT NULL, annotations INTEGER NOT NULL, inputs INTEGER NOT NULL,
            per_concept VARCHAR NOT NULL, manifest_path VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL,
            changed_at TIMESTAMP NOT NULL)""",
    "processed_inputs": """
        CREATE TABLE IF NOT EXISTS processed_inputs (
            input_id VARCHAR NOT NULL, model_id VARCHAR NOT NULL, batch VARCHAR NOT NULL,
            prediction_count INTEGER NOT NULL, processed_at TIMESTAMP NOT NULL,
            PRIMARY KEY (input_id, model_id))""",
}


class DatabaseLockedError(RuntimeError):
    """Another process held the DuckDB file for longer than the store waits."""


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
_migrated: set[str] = set()
_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _process_write_lock(path: str) -> threading.Lock:
    with _write_locks_guard:
        return _write_locks.setdefault(path, threading.Lock())


def describe_lock_holder(message: str) -> str:
    """Turn DuckDB's lock error text into 'PROGRAM (PID N)', or a neutral phrase."""
    match = _LOCK_HOLDER.search(message)
    if not match:
        return "another process"
    return f"{Path(match['program']).name} (PID {match['pid']})"


def _is_lock_error(error: duckdb.Error) -> bool:
    return "lock" in str(error).lower()


def to_polars(frame: pd.DataFrame | pl.DataFrame) -> pl.DataFrame:
    return frame if isinstance(frame, pl.DataFrame) else pl.from_pandas(frame)


def validate_frame(frame: pl.DataFrame, schema: type[pa.DataFrameModel], table: str) -> pl.DataFrame:
    """Validate rows against their pandera model; the error names table, column and value."""
    try:
        return schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = pl.DataFrame(errors.failure_cases) if not isinstance(errors.failure_cases, pl.DataFrame) \
            else errors.failure_cases
        first = cases.row(0, named=True)
        column = first.get("column") or first.get("schema_context")
        raise ValueError(
            f"Refusing to write {table}: column {column!r} failed {first['check']!r} "
            f"with value {first['failure_case']!r} ({len(cases)} failure(s) in all)."
        ) from None


def scalar(conn: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> object:
    """The single value of a one-row query (read fully, so the connection stays usable)."""
    return conn.execute(sql, params or []).fetchall()[0][0]


def fetch_pl(conn: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> pl.DataFrame:
    """A query's rows as a polars frame, through Arrow."""
    return pl.from_arrow(conn.sql(sql, params=params or None).to_arrow_table())


def insert_frame(conn: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame | pl.DataFrame,
                 schema: type[pa.DataFrameModel]) -> int:
    """Validate and append rows to `table`, matching columns by name."""
    if len(frame) == 0:
        return 0
    validated = validate_frame(to_polars(frame), schema, table)
    conn.register("incoming_rows", validated)
    try:
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_rows")
    finally:
        conn.unregister("incoming_rows")
    return len(validated)


class DuckDBStore(dg.ConfigurableResource):
    """Opens the project's DuckDB file for one unit of work at a time."""

    path: str
    lock_timeout_s: float = 60.0
    first_backoff_s: float = 0.05

    def _open(self) -> duckdb.DuckDBPyConnection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = self.first_backoff_s
        while True:
            try:
                # Always read-write: DuckDB refuses two connections to one file with different
                # configurations in one process (the review server reads and writes from threads),
                # and a writer in another process blocks read-only opens anyway.
                return duckdb.connect(self.path)
            except duckdb.IOException as error:
                if not _is_lock_error(error):
                    raise
                if time.monotonic() + delay > deadline:
                    raise DatabaseLockedError(
                        f"The database {self.path} is locked by {describe_lock_holder(str(error))} and stayed "
                        f"locked for {self.lock_timeout_s:g} s; wait for that process to finish or stop it."
                    ) from None
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 2.0)

    def _migrate(self, conn: duckdb.DuckDBPyConnection) -> None:
        for ddl in TABLE_DDL.values():
            conn.execute(ddl)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One connection, one transaction: committed on success, rolled back on any error.

        Tables are created on the first use in a process, and again when the file was removed since."""
        new_file = not Path(self.path).exists()
        conn = self._open()
        try:
            if new_file or self.path not in _migrated:
                self._migrate(conn)
                _migrated.add(self.path)
            conn.begin()
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        finally:
            conn.close()

    def query_df(self, sql: str, params: list | dict | None = None) -> pd.DataFrame:
        """Run one read query and return its rows; an empty new database answers with no rows."""
        with self.transaction() as conn:
            return conn.execute(sql, params or []).df()

    def query_pl(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """Like `query_df`, as a polars frame."""
        with self.transaction() as conn:
            return fetch_pl(conn, sql, params)

    def write(self, work: Callable[[duckdb.DuckDBPyConnection], object]) -> object:
        """Run `work(conn)` inside one write transaction and return what it returns.

        Writers of one process take turns (threads of the review server): DuckDB would otherwise
        abort one of two overlapping transactions on a write-write conflict."""
        with _process_write_lock(self.path), self.transaction() as conn:
            return work(conn)


def write_or_retry(store: DuckDBStore, work: Callable[[duckdb.DuckDBPyConnection], object]) -> object:
    """`store.write` for assets: a lock that outlasts the store's own wait asks Dagster to retry the step
    later instead of failing it; any other error fails the step at once."""
    try:
        return store.write(work)
    except DatabaseLockedError as error:
        raise dg.RetryRequested(max_retries=3, seconds_to_wait=30) from error
