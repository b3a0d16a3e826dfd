"""The DuckDB store under contention from a second, real process."""

import threading
import time
from datetime import datetime
from pathlib import Path

import duckdb
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


def test_threads_of_one_process_open_and_close_the_file_without_conflict(tmp_path: Path) -> None:
    """The review server's threads each open and close the file; none may meet another's teardown."""
    store = DuckDBStore(path=str(tmp_path / "db.duckdb"))
    store.write(lambda s: s.insert("routing_rules", []))
    failures: list[str] = []

    def read_repeatedly() -> None:
        for _ in range(1500):
            try:
                store.read(lambda s: s.scalar("SELECT 1"))
            except duckdb.Error as error:
                failures.append(str(error).splitlines()[0])

    threads = [threading.Thread(target=read_repeatedly) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_lock_holder_is_parsed_from_duckdbs_message() -> None:
    message = ('IO Error: Could not set lock on file "/x.duckdb": Conflicting lock is held in '
               "/usr/bin/python3.11 (PID 4242) by user root.")
    assert describe_lock_holder(message) == "python3.11 (PID 4242)"
    assert describe_lock_holder("something else") == "another process"


def test_annotation_state_is_filled_from_the_history_of_a_file_written_before_it_existed(tmp_path: Path) -> None:
    """A home from before `annotation_state`: its current state is derived from the history on first open,
    and later appends keep the two equal (the later of two events of one instant wins)."""
    from datetime import datetime

    from core.annotations import AnnotationEvent, Source, Status
    from store import database

    store = DuckDBStore(path=str(tmp_path / "old.duckdb"))
    t0, t1 = datetime(2026, 11, 1, 9), datetime(2026, 11, 1, 10)

    def event(annotation: str, status: Status, at: datetime, annotator: str = "bot") -> AnnotationEvent:
        return AnnotationEvent(annotation_id=annotation * 32, task="t", input_id="a" * 64, prediction_id=None,
                               model_id=None, batch="b1", concept="ball", x1=0.1, y1=0.1, x2=0.5, y2=0.5,
                               polygon=None, confidence=0.7, status=status, annotator=annotator,
                               source=Source.AUTO if annotator == "bot" else Source.REVIEW, event_at=at)

    store.write(lambda s: s.history.append([event("1", Status.AWAITING_REVIEW, t0), event("2", Status.SUCCESS, t0),
                                            event("1", Status.SUCCESS, t1, "alice")]))
    store.write(lambda s: s.conn.execute("DROP TABLE annotation_state"))
    database._migrated.discard(store.path)  # a new process opening the old file
    state = query(store, "SELECT annotation_id, status FROM annotation_state ORDER BY 1")
    assert [(a[0], s) for a, s in zip(state.annotation_id, state.status)] == [("1", "SUCCESS"), ("2", "SUCCESS")]
    store.write(lambda s: s.history.append([event("2", Status.AWAITING_REVIEW, t1), event("2", Status.RETIRED, t1)]))
    state = query(store, "SELECT annotation_id, status FROM annotation_state ORDER BY 1")
    assert state.status.tolist() == ["SUCCESS", "RETIRED"]
    assert store.read(lambda s: s.history.state_differences("b1")) == 0


def test_a_file_written_before_routing_rules_gains_the_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    """Homes from before routing rules were recorded: opening one adds `rules` to the history, the state and
    task progress (empty for the old rows) and the `routing_rules` table; nothing stored is lost."""
    from store import database

    store = DuckDBStore(path=str(tmp_path / "old.duckdb"))
    store.write(lambda s: None)
    with duckdb.connect(store.path) as conn:
        for table in ("annotations", "annotation_state", "task_inputs"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN rules")
        conn.execute("DROP TABLE routing_rules")
        conn.execute("INSERT INTO task_inputs VALUES ('t', ?, 'b1', ?, 2, TIMESTAMP '2026-11-01 09:00:00')",
                     ["a" * 64, "b" * 64])
    database._migrated.discard(store.path)  # a new process opening the old file
    rows = query(store, "SELECT task, batch, annotation_count, rules FROM task_inputs")
    assert rows.to_dict("records") == [{"task": "t", "batch": "b1", "annotation_count": 2, "rules": None}]
    columns = {t: set(query(store, f"SELECT * FROM {t} LIMIT 0").columns) for t in ("annotations", "annotation_state")}
    assert all("rules" in c for c in columns.values())
    assert query(store, "SELECT count(*) AS n FROM routing_rules").n[0] == 0


def test_a_file_with_indexed_keys_is_rebuilt_without_them_and_keeps_every_row(tmp_path: Path) -> None:
    """Homes from before keys were left unindexed: each table with a PRIMARY KEY index (rewritten whole at every
    checkpoint, so a write cost more as the history grew) is rebuilt without it on first open, its rows, their
    values and its NOT NULL columns as they were; a key written twice afterwards is still refused by the write."""
    from store import database
    from store.tables import TABLES

    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as conn:
        for table in TABLES.values():
            create = table.ddl()[0]
            if table.primary_key:
                create = f"{create[:-1]}, PRIMARY KEY ({', '.join(table.primary_key)}))"
            conn.execute(create)
        conn.execute("INSERT INTO models (model_id, name, path, task_type, class_names, registered_at) VALUES "
                     "(?, 'old.pt', '/w/old.pt', 'detect', ['ball'], TIMESTAMP '2026-11-01 09:00:00'), "
                     "(?, 'new.pt', '/w/new.pt', 'detect', ['box'], TIMESTAMP '2026-11-02 09:00:00')",
                     ["a" * 64, "b" * 64])
        keyed = conn.execute("SELECT count(DISTINCT table_name) FROM duckdb_constraints() "
                             "WHERE constraint_type = 'PRIMARY KEY'").fetchone()[0]
    assert keyed == sum(1 for t in TABLES.values() if t.primary_key) > 20
    database._migrated.discard(str(path))  # a new process opening the old file
    store = DuckDBStore(path=str(path))
    rows = query(store, "SELECT model_id, name, class_names, registered_at::VARCHAR AS at FROM models ORDER BY 1")
    assert rows.to_dict("records") == [
        {"model_id": "a" * 64, "name": "old.pt", "class_names": ["ball"], "at": "2026-11-01 09:00:00"},
        {"model_id": "b" * 64, "name": "new.pt", "class_names": ["box"], "at": "2026-11-02 09:00:00"}]
    constraints = query(store, "SELECT constraint_type, count(*) AS n FROM duckdb_constraints() "
                               "WHERE table_name = 'models' GROUP BY 1")
    assert dict(zip(constraints.constraint_type, constraints.n)) == {"NOT NULL": 6}
    assert query(store, "SELECT count(*) AS n FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
                 ).n[0] == 0
    assert query(store, "SELECT count(*) AS n FROM information_schema.tables WHERE table_name LIKE '%unindexed'"
                 ).n[0] == 0
    store.write(lambda s: s.predictions.register_model("a" * 64, "again.pt", "/w/again.pt", "detect", ["ball"],
                                                       datetime(2026, 11, 3)))
    assert query(store, "SELECT count(*) AS n FROM models").n[0] == 2


# Each schema version's digest of the tables' shape. A change to a table fails the first test below until
# SCHEMA_VERSION is raised and its digest recorded here (and `create_tables` brings older files to it).
SCHEMA_DIGESTS = {1: "5dc79edc8e966054d3097ac6756a79375e0dff297570d5b0e40e6547df9c12fd"}


def test_the_tables_shape_is_the_one_recorded_for_this_schema_version() -> None:
    from store.tables import SCHEMA_VERSION, schema_digest

    assert SCHEMA_DIGESTS.get(SCHEMA_VERSION) == schema_digest(), (
        "The tables changed: raise SCHEMA_VERSION in store/tables.py and record its schema_digest() here.")


def test_a_database_records_its_schema_version_once_and_a_newer_one_is_refused_untouched(tmp_path: Path) -> None:
    """A new or older database is brought to this release's version, recorded once however often it is opened; one
    a newer release wrote is refused with a sentence naming both versions, and not one byte of it changes."""
    from store import database
    from store.database import NewerSchemaError
    from store.tables import SCHEMA_VERSION

    store = DuckDBStore(path=str(tmp_path / "db.duckdb"))
    for _ in range(2):
        database._migrated.discard(store.path)  # a new process opening it
        store.write(lambda s: None)
    rows = query(store, "SELECT version, release FROM schema_versions")
    assert rows.to_dict("records") == [{"version": SCHEMA_VERSION, "release": "0.1.0"}]

    with duckdb.connect(store.path) as conn:  # a later release upgraded it
        conn.execute("INSERT INTO schema_versions VALUES (?, '9.0.0', TIMESTAMP '2027-06-01 09:00:00')",
                     [SCHEMA_VERSION + 1])
        conn.execute("DROP TABLE routing_rules")  # ... and, say, dropped a table this release would create again
    before = Path(store.path).read_bytes()
    database._migrated.discard(store.path)
    with pytest.raises(NewerSchemaError) as raised:
        store.read(lambda s: None)
    assert str(raised.value) == (
        f"The database {store.path} has schema version {SCHEMA_VERSION + 1}, written by a newer autoannotate; this "
        f"one knows version {SCHEMA_VERSION} and leaves it unopened: install the release that wrote it (nothing was "
        "changed).")
    assert Path(store.path).read_bytes() == before
