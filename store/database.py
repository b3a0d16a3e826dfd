"""The DuckDB file: one connection and one short transaction per unit of work.

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
from typing import TypeVar

import duckdb
import pandas as pd
import pandera.polars as pa
import polars as pl

from store.batches import BatchesSQL
from store.history import AnnotationHistory
from store.inputs import InputsSQL
from store.predictions import PredictionsSQL
from store.reviews import ReviewSQL
from store.tables import TABLES
from store.versions import VersionsSQL

T = TypeVar("T")


class DatabaseLockedError(RuntimeError):
    """Another process held the DuckDB file for longer than the store waits."""


class DatabaseUnavailableError(RuntimeError):
    """The DuckDB file cannot be opened for writing (read-only, no space, no permission)."""


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
_migrated: set[str] = set()
_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()
# DuckDB shares one database instance between a process's connections to a file and tears it down
# when the last one closes; a connect racing that teardown fails ("Unique file handle conflict").
# Opening and closing therefore take turns within the process (each is quick; transactions still overlap).
_instance_turns = threading.Lock()


def _process_write_lock(path: str) -> threading.Lock:
    with _write_locks_guard:
        return _write_locks.setdefault(path, threading.Lock())


def describe_lock_holder(message: str) -> str:
    """Turn DuckDB's lock error text into 'PROGRAM (PID N)', or a neutral phrase."""
    match = _LOCK_HOLDER.search(message)
    if not match:
        return "another process"
    return f"{Path(match['program']).name} (PID {match['pid']})"


def validate_frame(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Validate rows against the table's pandera model; the error names table, column and value."""
    try:
        return TABLES[table].schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases if isinstance(errors.failure_cases, pl.DataFrame) \
            else pl.DataFrame(errors.failure_cases)
        first = cases.row(0, named=True)
        column = first.get("column") or first.get("schema_context")
        raise ValueError(
            f"Refusing to write {table}: column {column!r} failed {first['check']!r} "
            f"with value {first['failure_case']!r} ({len(cases)} failure(s) in all)."
        ) from None


class Session:
    """One open transaction and the query families of the store bound to it.

    Nothing outside the `store` package writes SQL against the tables: callers use these families."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self.inputs = InputsSQL(self)
        self.batches = BatchesSQL(self)
        self.predictions = PredictionsSQL(self)
        self.history = AnnotationHistory(self)
        self.reviews = ReviewSQL(self)
        self.versions = VersionsSQL(self)

    def scalar(self, sql: str, params: list | dict | None = None) -> object:
        """The single value of a one-row query (read fully, so the connection stays usable)."""
        return self.conn.execute(sql, params or []).fetchall()[0][0]

    def df(self, sql: str, params: list | dict | None = None) -> pd.DataFrame:
        return self.conn.execute(sql, params or []).df()

    def pl(self, sql: str, params: list | dict | None = None) -> pl.DataFrame:
        """A query's rows as a polars frame, through Arrow."""
        return pl.from_arrow(self.conn.sql(sql, params=params or None).to_arrow_table())

    def insert(self, table: str, frame: pd.DataFrame | pl.DataFrame | list[dict]) -> int:
        """Validate and append rows to `table`, matching columns by name."""
        if len(frame) == 0:
            return 0
        if isinstance(frame, list):
            frame = pd.DataFrame(frame)
        polars_frame = frame if isinstance(frame, pl.DataFrame) else pl.from_pandas(frame)
        validated = validate_frame(polars_frame, table)
        with self.registered("incoming_rows", validated):
            self.conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_rows")
        return len(validated)

    def table_rows(self, table: str, where: str = "TRUE", params: dict | None = None) -> pl.DataFrame:
        """The stored rows of `table` matching `where`, in the columns its writes carry (for schema checks)."""
        columns = ", ".join(c.name for c in TABLES[table].written_columns)
        return self.pl(f"SELECT {columns} FROM {table} WHERE {where}", params)

    @contextmanager
    def registered(self, name: str, frame: pd.DataFrame | pl.DataFrame) -> Iterator[str]:
        """`frame` visible to SQL as the view `name` for the duration of the block."""
        self.conn.register(name, frame)
        try:
            yield name
        finally:
            self.conn.unregister(name)


def create_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the tables a file lacks; a table derived from others (the annotation state) is filled from
    them when a file written before it existed first meets it."""
    existing = {name for (name,) in conn.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    for table in TABLES.values():
        for statement in table.ddl():
            conn.execute(statement)
        if table.backfill and existing and table.name not in existing:
            conn.execute(table.backfill)


class Database:
    """Opens the project's DuckDB file for one unit of work at a time."""

    def __init__(self, path: str, lock_timeout_s: float = 60.0, first_backoff_s: float = 0.05) -> None:
        self.path, self.lock_timeout_s, self.first_backoff_s = path, lock_timeout_s, first_backoff_s

    def _open(self) -> duckdb.DuckDBPyConnection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = self.first_backoff_s
        while True:
            try:
                # Always read-write: DuckDB refuses two connections to one file with different
                # configurations in one process (the review server reads and writes from threads),
                # and a writer in another process blocks read-only opens anyway.
                with _instance_turns:
                    return duckdb.connect(self.path)
            except duckdb.IOException as error:
                if "lock" not in str(error).lower():
                    reason = str(error).strip().splitlines()[0].split(": ", 1)[-1]
                    raise DatabaseUnavailableError(
                        f"The database {self.path} cannot be opened for writing ({reason}); make its folder "
                        "writable and give it space, then run again.") from None
                if time.monotonic() + delay > deadline:
                    raise DatabaseLockedError(
                        f"The database {self.path} is locked by {describe_lock_holder(str(error))} and stayed "
                        f"locked for {self.lock_timeout_s:g} s; wait for that process to finish or stop it."
                    ) from None
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 2.0)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One connection, one transaction: committed on success, rolled back on any error.

        Tables are created on the first use in a process, and again when the file was removed since."""
        new_file = not Path(self.path).exists()
        conn = self._open()
        try:
            if new_file or self.path not in _migrated:
                create_tables(conn)
                _migrated.add(self.path)
            conn.begin()
            try:
                yield Session(conn)
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        finally:
            with _instance_turns:
                conn.close()

    def read(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` in one transaction and return what it returns."""
        with self.transaction() as session:
            return work(session)

    def write(self, work: Callable[[Session], T]) -> T:
        """Like `read`, for writes. Writers of one process take turns (threads of the review server):
        DuckDB would otherwise abort one of two overlapping transactions on a write-write conflict."""
        with _process_write_lock(self.path), self.transaction() as session:
            return work(session)
