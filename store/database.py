"""The database: one connection and one short transaction per unit of work.

Embedded (the default), the tables live in one DuckDB file. DuckDB lets a single process
hold it read-write, and a writer also blocks read-only opens from other processes. Every
component therefore opens a connection, does its work in one transaction and closes it; an
open that finds the file locked is retried with exponential backoff and jitter for a bounded
time and then fails with a message naming the process that holds the lock.

In team mode the same tables and the same SQL live in a DuckLake: Parquet files under a data
path, with the catalog in a local DuckDB file or in PostgreSQL (which many processes on many
machines share). Its extensions load from the `duckdb-ext-*` wheels, never from the network.
A process keeps one DuckDB instance with the lake attached while any of its threads works,
and each unit of work gets its own cursor and transaction.
"""

from __future__ import annotations

import os
import random
import re
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pandas as pd
import pandera.polars as pa
import polars as pl

from core.private_files import PRIVATE_FILE, private_folder
from core.s3 import S3Connection
from store.audits import AuditsSQL
from store.batches import BatchesSQL
from store.concepts import ConceptsSQL
from store.consensus import ConsensusSQL
from store.history import AnnotationHistory, literal
from store.inputs import InputsSQL
from store.integrity import IntegritySQL
from store.models import ModelsSQL
from store.objects import ObjectsSQL
from store.predictions import PredictionsSQL
from store.quality import QualitySQL
from store.reviews import ReviewSQL
from store.tables import SCHEMA_VERSION, SCHEMA_VERSIONS, TABLES, Table
from store.tracks import TracksSQL
from store.versions import VersionsSQL

T = TypeVar("T")


class DatabaseLockedError(RuntimeError):
    """Another process held the DuckDB file for longer than the store waits."""


class DatabaseUnavailableError(RuntimeError):
    """The DuckDB file cannot be opened for writing (read-only, no space, no permission)."""


class NewerSchemaError(DatabaseUnavailableError):
    """The database was brought to a schema version this release does not know: a newer release wrote it."""


_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")
_migrated: set[str] = set()
_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()
# DuckDB shares one database instance between a process's connections to a file and tears it down
# when the last one closes; a connect racing that teardown fails ("Unique file handle conflict").
# Opening and closing therefore take turns within the process (each is quick; transactions still overlap).
_instance_turns = threading.Lock()
_lakes: dict[tuple[str, str], _SharedLake] = {}  # (catalog, data path) -> the process's attached instance
_reached: set[str] = set()  # catalogs this process has had: losing one later is waited for, not reported at once
# What DuckDB's postgres extension says when the catalog's server went away (restart, failover, network).
_CONNECTION_LOST = re.compile(r"server closed the connection|Unable to connect to Postgres|connection to server|"
                              r"terminating connection|no connection to the server|could not (?:send|receive) data|"
                              r'Failed to execute query "ROLLBACK"')
# The DuckLake and postgres extensions as the `duckdb-ext-*` wheels install them; nothing is fetched.
LAKE_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "extension_directory": str(Path(sysconfig.get_paths()["purelib"]) / "duckdb_ext" / "extensions"),
    "autoinstall_known_extensions": False, "autoload_known_extensions": False}


class _SharedLake:
    """One in-memory DuckDB with the lake attached, shared by a process's units of work (each its cursor)."""

    def __init__(self, instance: duckdb.DuckDBPyConnection) -> None:
        self.instance, self.users, self.retired = instance, 0, False


def _process_write_lock(path: str) -> threading.Lock:
    with _write_locks_guard:
        return _write_locks.setdefault(path, threading.Lock())


def back_off(delay: float) -> float:
    """Sleep about `delay` seconds (with jitter, so waiting processes do not retry in step); the next delay."""
    time.sleep(delay * random.uniform(0.5, 1.5))
    return min(delay * 2, 2.0)


def describe_lock_holder(message: str) -> str:
    """Turn DuckDB's lock error text into 'PROGRAM (PID N)', or a neutral phrase."""
    match = _LOCK_HOLDER.search(message)
    if not match:
        return "another process"
    return f"{Path(match['program']).name} (PID {match['pid']})"


# A query's parameters, positional or named.
Params = list[Any] | dict[str, Any] | None
# Inside `Session`, whose method `pl` hides the module there.
PolarsFrame = pl.DataFrame


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

    def __init__(self, conn: duckdb.DuckDBPyConnection, lake: bool = False) -> None:
        self.conn, self.lake = conn, lake
        self.inputs = InputsSQL(self)
        self.batches = BatchesSQL(self)
        self.predictions = PredictionsSQL(self)
        self.history = AnnotationHistory(self)
        self.reviews = ReviewSQL(self)
        self.objects = ObjectsSQL(self)
        self.consensus = ConsensusSQL(self)
        self.tracks = TracksSQL(self)
        self.concepts = ConceptsSQL(self)
        self.quality = QualitySQL(self)
        self.audits = AuditsSQL(self)
        self.versions = VersionsSQL(self)
        self.models = ModelsSQL(self)
        self.integrity = IntegritySQL(self)

    def scalar(self, sql: str, params: Params = None) -> Any:
        """The single value of a one-row query (read fully, so the connection stays usable); its type is the
        query's."""
        return self.conn.execute(sql, params or []).fetchall()[0][0]

    def df(self, sql: str, params: Params = None) -> pd.DataFrame:
        return self.conn.execute(sql, params or []).df()

    def pl(self, sql: str, params: Params = None) -> PolarsFrame:
        """A query's rows as a polars frame, through Arrow. (A prepared `execute`: `conn.sql` with parameters
        measured 25 times slower on a list column, 5.7 s against 0.22 s for 20 000 vectors of 1024 floats.)"""
        frame = pl.from_arrow(self.conn.execute(sql, params or []).fetch_arrow_table())
        assert isinstance(frame, pl.DataFrame)  # a table, never a single column
        return frame

    def insert(self, table: str, frame: pd.DataFrame | PolarsFrame | list[dict[str, Any]]) -> int:
        """Validate and append rows to `table`, matching columns by name."""
        if len(frame) == 0:
            return 0
        if isinstance(frame, list):
            frame = pd.DataFrame(frame)
        polars_frame = frame if isinstance(frame, pl.DataFrame) else pl.from_pandas(frame)
        validated = validate_frame(polars_frame, table)
        if self.lake and TABLES[table].primary_key and TABLES[table].takes_turns:
            # The optimistic stand-in for a unique key: a concurrent writer of this table conflicts at commit.
            self.conn.execute("UPDATE write_turns SET taken_at = now() WHERE table_name = ?", [table])
        with self.registered("incoming_rows", validated):
            self.conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM incoming_rows")
        return len(validated)

    def table_rows(self, table: str, where: str = "TRUE", params: dict[str, Any] | None = None) -> PolarsFrame:
        """The stored rows of `table` matching `where`, in the columns its writes carry (for schema checks)."""
        columns = ", ".join(c.name for c in TABLES[table].columns)
        return self.pl(f"SELECT {columns} FROM {table} WHERE {where}", params)

    @contextmanager
    def registered(self, name: str, frame: pd.DataFrame | PolarsFrame) -> Iterator[str]:
        """`frame` visible to SQL as the view `name` for the duration of the block."""
        self.conn.register(name, frame)
        try:
            yield name
        finally:
            self.conn.unregister(name)


def create_tables(conn: duckdb.DuckDBPyConnection, lake: bool = False, location: str = "The database") -> None:
    """Create the tables a file lacks; a table derived from others (the annotation state) is filled from
    them when a file written before it existed first meets it. A database a newer release brought to a schema
    version this one does not know is refused before anything in it changes."""
    existing = {name for (name,) in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = current_database() "
        "AND table_type = 'BASE TABLE'").fetchall()}
    found = stored_schema_version(conn, existing)
    if found > SCHEMA_VERSION:
        raise NewerSchemaError(
            f"{location} has schema version {found}, written by a newer autoannotate; this one knows version "
            f"{SCHEMA_VERSION} and leaves it unopened: install the release that wrote it (nothing was changed).")
    for (name,) in conn.execute("SELECT DISTINCT table_name FROM duckdb_constraints() WHERE database_name = "
                                "current_database() AND constraint_type = 'PRIMARY KEY'").fetchall():
        if name in TABLES:
            drop_key_index(conn, TABLES[name])
    for table in TABLES.values():
        for statement in table.ddl():
            conn.execute(statement)
        if table.backfill and existing and table.name not in existing:
            conn.execute(table.backfill)
    if lake:
        keyed = [name for name, table in TABLES.items() if table.primary_key and table.takes_turns]
        conn.execute("INSERT INTO write_turns SELECT name, now() FROM (SELECT unnest(?::VARCHAR[]) AS name) "
                     "WHERE name NOT IN (SELECT table_name FROM write_turns)", [keyed])
    if found < SCHEMA_VERSION:
        record_schema_version(conn, lake)


def stored_schema_version(conn: duckdb.DuckDBPyConnection, existing: set[str]) -> int:
    """The newest schema version the database records; 0 for one written before versions were recorded (or new)."""
    if SCHEMA_VERSIONS.name not in existing:
        return 0
    return int(conn.execute("SELECT coalesce(max(version), 0) FROM schema_versions").fetchall()[0][0])


def record_schema_version(conn: duckdb.DuckDBPyConnection, lake: bool) -> None:
    """Record that the tables now have this release's shape (once: two processes upgrading at once write it once,
    the loser of a DuckLake's race on `write_turns` running again)."""
    try:
        release = package_version("autoannotate")
    except PackageNotFoundError:  # run from a source tree that was never installed
        release = "unknown"
    conn.begin()
    try:
        if lake:
            conn.execute("UPDATE write_turns SET taken_at = now() WHERE table_name = 'schema_versions'")
        conn.execute("INSERT INTO schema_versions SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM schema_versions "
                     "WHERE version = ?)", [SCHEMA_VERSION, release, datetime.now(UTC).replace(tzinfo=None),
                                             SCHEMA_VERSION])
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def s3_secret_sql(connection: S3Connection) -> str:
    """DuckDB's S3 secret for the endpoint and credentials the AWS_* variables name (as boto3 reads them)."""
    options = {"KEY_ID": connection.access_key_id, "SECRET": connection.secret_access_key,
               "REGION": connection.region, "SESSION_TOKEN": connection.session_token}
    parts = [f"{name} {literal(value)}" for name, value in options.items() if value]
    if connection.endpoint:  # another S3 server: its host and port, path-style addressing
        scheme, _, host = connection.endpoint.partition("://")
        parts += [f"ENDPOINT {literal(host.rstrip('/'))}", "URL_STYLE 'path'",
                  f"USE_SSL {'true' if scheme == 'https' else 'false'}"]
    return f"CREATE OR REPLACE SECRET autoannotate_s3 (TYPE s3, {', '.join(parts)})"


def drop_key_index(conn: duckdb.DuckDBPyConnection, table: Table) -> None:
    """A table of a file written before keys were left unindexed (`Table.ddl`), rebuilt without its primary
    key's index, rows unchanged, in one transaction: once per file, a few seconds for millions of rows."""
    rebuilt = f"{table.name}__unindexed"
    conn.begin()
    try:
        conn.execute(f"DROP TABLE IF EXISTS {rebuilt}")
        conn.execute(f"CREATE TABLE {rebuilt} ({table.column_definitions()})")
        old_columns = [name for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_catalog = current_database() "
            "AND table_name = ? ORDER BY ordinal_position", [table.name]).fetchall()]
        kept = [c.name for c in table.columns if c.name in old_columns]
        conn.execute(f"INSERT INTO {rebuilt} ({', '.join(kept)}) SELECT {', '.join(kept)} FROM {table.name}")
        conn.execute(f"DROP TABLE {table.name}")
        conn.execute(f"ALTER TABLE {rebuilt} RENAME TO {table.name}")
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


def attach_lake(catalog: str, data_path: str) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the DuckLake attached as `autoannotate` and in use."""
    conn = duckdb.connect(config=LAKE_CONFIG)
    try:
        conn.execute("LOAD ducklake")
        if catalog.startswith("postgres:"):
            conn.execute("LOAD postgres")
        if data_path.startswith("s3://"):  # the Parquet files in a bucket: httpfs, from its wheel
            conn.execute("LOAD httpfs")
            conn.execute(s3_secret_sql(S3Connection.from_env()))
        conn.execute(f"ATTACH {literal('ducklake:' + catalog)} AS autoannotate "
                     f"(DATA_PATH {literal(data_path.rstrip('/') + '/')})")
        conn.execute("USE autoannotate")
    except BaseException:
        conn.close()
        raise
    return conn


class Database:
    """Opens the project's database for one unit of work at a time: the DuckDB file at `path`, or, with a
    `catalog` (a DuckLake catalog: a DuckDB file's path or `postgres:CONNINFO`), the DuckLake whose data
    files live under `data_path`."""

    def __init__(self, path: str, lock_timeout_s: float = 60.0, first_backoff_s: float = 0.05, catalog: str = "",
                 data_path: str = "") -> None:
        self.path, self.lock_timeout_s, self.first_backoff_s = path, lock_timeout_s, first_backoff_s
        self.catalog, self.data_path = catalog, data_path

    @property
    def location(self) -> str:
        """What a sentence about this database names."""
        return f"DuckLake catalog {self.catalog.split(' password=')[0]}" if self.catalog else self.path

    def _connect(self) -> tuple[duckdb.DuckDBPyConnection, _SharedLake | None]:
        with _instance_turns:
            if not self.catalog:
                # Always read-write: DuckDB refuses two connections to one file with different
                # configurations in one process (the review server reads and writes from threads),
                # and a writer in another process blocks read-only opens anyway.
                new = not os.path.exists(self.path)
                conn = duckdb.connect(self.path)
                if new:  # DuckDB creates it as the umask says; it holds every row (an existing one keeps its mode)
                    os.chmod(self.path, PRIVATE_FILE)
                return conn, None
            shared = _lakes.get((self.catalog, self.data_path))
            if shared is None:
                shared = _lakes[(self.catalog, self.data_path)] = _SharedLake(attach_lake(self.catalog,
                                                                                        self.data_path))
            cursor = shared.instance.cursor()
            try:
                cursor.execute("USE autoannotate")  # a cursor starts in the in-memory catalog
            except BaseException:
                cursor.close()
                raise
            shared.users += 1
            _reached.add(self.catalog)
            return cursor, shared

    def _close(self, conn: duckdb.DuckDBPyConnection, shared: _SharedLake | None) -> None:
        with _instance_turns:
            conn.close()
            if shared is None:
                return
            shared.users -= 1
            # A catalog in a DuckDB file is locked while attached: let other processes have it.
            if shared.users == 0 and (shared.retired or not self.catalog.startswith("postgres:")):
                shared.instance.close()
                if _lakes.get((self.catalog, self.data_path)) is shared:
                    del _lakes[(self.catalog, self.data_path)]

    def _retire_lake(self) -> None:
        """The catalog's server went away: later units of work attach afresh (DuckDB's postgres connections of
        the old instance are dead); the old one closes when its last unit of work ends."""
        with _instance_turns:
            shared = _lakes.pop((self.catalog, self.data_path), None)
            if shared is not None:
                shared.retired = True
                if shared.users == 0:
                    shared.instance.close()

    def _connection_lost(self, error: BaseException) -> bool:
        return (self.catalog.startswith("postgres:") and self.catalog in _reached
                and bool(_CONNECTION_LOST.search(str(error))))

    def _open(self) -> tuple[duckdb.DuckDBPyConnection, _SharedLake | None]:
        local_data = self.catalog and "://" not in self.data_path  # a bucket's "folders" need no making
        private_folder(Path(self.path).parent)  # the home, made 0700 when this creates it
        if local_data:
            Path(self.data_path).mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = self.first_backoff_s
        while True:
            try:
                return self._connect()
            except duckdb.Error as error:
                if self._connection_lost(error):
                    raise  # the unit of work waits for the server (see `_run_unit`)
                text = str(error)
                # Two processes creating one new DuckLake catalog at once: the loser retries.
                racing = "Failed to initialize DuckLake" in text
                if "lock" not in text.lower() and not racing:
                    reason = text.strip().splitlines()[0].split(": ", 1)[-1]
                    raise DatabaseUnavailableError(
                        f"The database {self.location} cannot be opened for writing ({reason}); make its folder "
                        "writable and give it space (or start the catalog's server), then run again.") from None
                if time.monotonic() + delay > deadline:
                    raise DatabaseLockedError(
                        f"The database {self.location} is locked by {describe_lock_holder(str(error))} and stayed "
                        f"locked for {self.lock_timeout_s:g} s; wait for that process to finish or stop it."
                    ) from None
                delay = back_off(delay)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One connection, one transaction: committed on success, rolled back on any error.

        Tables are created on the first use in a process, and again when the file was removed since."""
        new_file = not self.catalog and not Path(self.path).exists()
        conn, shared = self._open()
        key = self.catalog or self.path
        try:
            if new_file or key not in _migrated:
                self._create_tables(conn)
                _migrated.add(key)
            conn.begin()
            try:
                yield Session(conn, lake=bool(self.catalog))
            except BaseException:
                conn.rollback()
                raise
            conn.commit()
        finally:
            self._close(conn, shared)

    def _create_tables(self, conn: duckdb.DuckDBPyConnection, attempts: int = 6) -> None:
        """Create what is missing; two processes meeting a new DuckLake at once conflict, and the loser looks
        again (the winner's tables are then there)."""
        delay = self.first_backoff_s
        for attempt in range(1, attempts + 1):
            try:
                create_tables(conn, lake=bool(self.catalog), location=f"The database {self.location}")
                return
            except duckdb.TransactionException:
                if not self.catalog or attempt == attempts:
                    raise
                delay = back_off(delay)

    def maintain(self, keep_days: float) -> dict[str, int]:
        """Housekeeping. A DuckLake: merge adjacent small Parquet files, expire snapshots older than `keep_days`
        (time travel reaches back that far) and delete the files no snapshot needs. A DuckDB file: a checkpoint.
        Outside a transaction: these calls manage their own."""
        conn, shared = self._open()
        try:
            if not self.catalog:
                conn.execute("CHECKPOINT")
                return {"checkpoints": 1}
            merged = len(conn.execute("CALL ducklake_merge_adjacent_files('autoannotate')").fetchall())
            expired = len(conn.execute("CALL ducklake_expire_snapshots('autoannotate', older_than => now() - "
                                       "to_days(CAST(? AS INTEGER)))", [int(keep_days)]).fetchall())
            removed = len(conn.execute("CALL ducklake_cleanup_old_files('autoannotate', cleanup_all => true)")
                          .fetchall())
            return {"files_merged": merged, "snapshots_expired": expired, "files_removed": removed}
        finally:
            self._close(conn, shared)

    def read(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` in one transaction and return what it returns."""
        return self._run_unit(work, writes=False)

    def write(self, work: Callable[[Session], T], attempts: int = 6) -> T:
        """Like `read`, for writes. Writers of one process take turns (threads of the review server):
        DuckDB would otherwise abort one of two overlapping transactions on a write-write conflict. Writers of
        other processes on a DuckLake commit optimistically: a commit that conflicts with another's is rolled
        back and the whole unit of work runs again (every write is idempotent), a bounded number of times."""
        return self._run_unit(work, writes=True, attempts=attempts)

    def _run_unit(self, work: Callable[[Session], T], writes: bool, attempts: int = 6) -> T:
        """One unit of work in one transaction, run again after a DuckLake write conflict (up to `attempts`
        times) or after losing the catalog's server (until it answers again, for up to `lock_timeout_s`): a
        transaction cut off before its commit stored nothing, and the work is idempotent."""
        delay, attempt, lost_until = self.first_backoff_s, 1, None
        while True:
            try:
                with _process_write_lock(self.path) if writes else nullcontext(), \
                        self.transaction() as session:
                    return work(session)
            except duckdb.Error as error:
                if self._connection_lost(error):
                    self._retire_lake()
                    lost_until = lost_until or time.monotonic() + self.lock_timeout_s
                    if time.monotonic() + delay > lost_until:
                        raise DatabaseUnavailableError(
                            f"The {self.location} stopped answering and did not answer again within "
                            f"{self.lock_timeout_s:g} s; nothing of that unit of work was stored. Start the "
                            "catalog's server and run again.") from None
                elif not (writes and self.catalog and isinstance(error, duckdb.TransactionException)):
                    raise
                elif attempt == attempts:
                    raise DatabaseLockedError(
                        f"Writing to {self.location} conflicted with other writers {attempts} times "
                        f"({str(error).splitlines()[0]}); run again.") from None
                else:
                    attempt += 1
            delay = back_off(delay)
