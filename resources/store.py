"""The store as a Dagster resource: the project's DuckDB file, opened for one unit of work at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg

from store import Database, DatabaseLockedError, Session

T = TypeVar("T")


class DuckDBStore(dg.ConfigurableResource):
    """Where the tables live, and how long an open waits for another process's lock."""

    path: str
    lock_timeout_s: float = 60.0
    first_backoff_s: float = 0.05
    catalog: str = ""  # a DuckLake catalog (team mode); "" for the DuckDB file at `path`
    data_path: str = ""
    snapshot_days: int = 7  # a DuckLake keeps snapshots (time travel) this many days (AUTOANNOTATE_SNAPSHOT_DAYS)

    @property
    def database(self) -> Database:
        return Database(self.path, self.lock_timeout_s, self.first_backoff_s, self.catalog, self.data_path)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self.database.transaction() as session:
            yield session

    def read(self, work: Callable[[Session], T]) -> T:
        return self.database.read(work)

    def maintain(self, keep_days: float) -> dict[str, int]:
        return self.database.maintain(keep_days)

    def write(self, work: Callable[[Session], T]) -> T:
        return self.database.write(work)


def write_or_retry(store: DuckDBStore, work: Callable[[Session], T]) -> T:
    """`store.write` for assets: a lock that outlasts the store's own wait asks Dagster to retry the step
    later instead of failing it; any other error fails the step at once."""
    try:
        return store.write(work)
    except DatabaseLockedError as error:
        raise dg.RetryRequested(max_retries=3, seconds_to_wait=30) from error


@dataclass(frozen=True)
class RetryingStore:
    """The store as assets hand it to a use case: its writes are `write_or_retry`'s."""

    store: DuckDBStore

    def read(self, work: Callable[[Session], T]) -> T:
        return self.store.read(work)

    def write(self, work: Callable[[Session], T]) -> T:
        return write_or_retry(self.store, work)
