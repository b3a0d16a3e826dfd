"""The DuckDB store under contention from a second, real process."""

import time
from pathlib import Path

import pytest
from helpers import hold_lock, query

from resources.store import DuckDBStore
from store.database import DatabaseLockedError, describe_lock_holder


def test_store_waits_for_a_lock_that_is_released(tmp_path: Path) -> None:
    store = DuckDBStore(path=str(tmp_path / "db.duckdb"), lock_timeout_s=30)
    holder = hold_lock(Path(store.path), seconds=2.5)
    try:
        started = time.monotonic()
        store.write(lambda s: s.conn.execute("CREATE TABLE written (x INTEGER)"))
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
    assert waited > 1.0  # it really had to wait for the other process
    assert query(store, "SELECT count(*) AS n FROM written")["n"].iloc[0] == 0


def test_store_fails_with_a_message_naming_the_holder(tmp_path: Path) -> None:
    store = DuckDBStore(path=str(tmp_path / "db.duckdb"), lock_timeout_s=1.0)
    holder = hold_lock(Path(store.path), seconds=20)
    try:
        with pytest.raises(DatabaseLockedError) as raised:
            store.write(lambda s: None)
    finally:
        holder.kill()
        holder.wait()
    message = str(raised.value)
    assert f"(PID {holder.pid})" in message
    assert "stayed locked for 1 s" in message
    assert store.path in message


def test_failed_work_is_rolled_back(tmp_path: Path) -> None:
    store = DuckDBStore(path=str(tmp_path / "db.duckdb"))
    store.write(lambda s: s.conn.execute("CREATE TABLE t (x INTEGER)"))

    def half_then_fail(s):
        s.conn.execute("INSERT INTO t VALUES (1)")
        raise ValueError("bad row")

    with pytest.raises(ValueError):
        store.write(half_then_fail)
    assert query(store, "SELECT count(*) AS n FROM t")["n"].iloc[0] == 0


def test_lock_holder_is_parsed_from_duckdbs_message() -> None:
    message = ('IO Error: Could not set lock on file "/x.duckdb": Conflicting lock is held in '
               "/usr/bin/python3.11 (PID 4242) by user root.")
    assert describe_lock_holder(message) == "python3.11 (PID 4242)"
    assert describe_lock_holder("something else") == "another process"
