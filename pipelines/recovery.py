"""Runs whose process died: found, marked failed, their concurrency slots freed; and waiting for a slot
without spinning.

A run killed with `kill -9` never reports its end, so Dagster keeps it STARTED and keeps the slot of
the `duckdb` pool it held: every later run would wait for it forever. Every Dagster event records the
PID of the process that wrote it, so a run in progress whose last writer is gone is a dead run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg
import psutil

IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
DUCKDB_POOL = "duckdb"


class SlotWaitTimeout(RuntimeError):
    """A live run kept the database slot longer than we were willing to wait."""


@dataclass(frozen=True)
class RunProcess:
    run_id: str
    pid: int | None  # of the process that wrote the run's latest event; None when it wrote none yet
    alive: bool


def process_alive(pid: int, not_after: float) -> bool:
    """Whether `pid` is a running process that already existed at `not_after` (a POSIX timestamp): a PID the
    system reused for a newer process is not the run's."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= not_after + 1
    except psutil.Error:
        return False


def run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunProcess:
    # Dagster's own events (not log lines) carry the writer's PID.
    records = instance.get_records_for_run(run.run_id, of_type=set(dg.DagsterEventType), limit=1,
                                           ascending=False).records
    event = records[0].event_log_entry if records else None
    pid = event.dagster_event.pid if event and event.dagster_event else None
    if pid is None:
        return RunProcess(run.run_id, None, True)  # nothing written yet: a run being launched, not a dead one
    return RunProcess(run.run_id, pid, process_alive(pid, event.timestamp))


def release_abandoned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark every in-progress run whose process is gone as failed and free every slot held by a run that is
    not in progress; one sentence per run released."""
    released = []
    for run in instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS)):
        process = run_process(instance, run)
        if not process.alive:
            message = (f"Run {run.run_id} stopped without reporting its end (its process {process.pid} is gone): "
                       "marked failed and its database slot freed.")
            instance.report_run_failed(run, message=message)
            released.append(message)
    storage = instance.event_log_storage
    in_progress = {run.run_id for run in instance.get_runs(dg.RunsFilter(statuses=IN_PROGRESS))}
    holding = storage.get_concurrency_run_ids() | {
        slot.run_id for slot in storage.get_concurrency_info(DUCKDB_POOL).claimed_slots}
    for run_id in holding - in_progress:
        storage.free_concurrency_slots_for_run(run_id)
    return released


def slot_holders(instance: dg.DagsterInstance, pool: str = DUCKDB_POOL) -> list[RunProcess] | None:
    """The runs holding every slot of `pool`, or None when a slot is free."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    if info.limit is None or len(info.claimed_slots) < info.limit:
        return None
    return [run_process(instance, run) for slot in info.claimed_slots
            if (run := instance.get_run_by_id(slot.run_id)) is not None]


def wait_for_database_slot(instance: dg.DagsterInstance, timeout_s: float, say: Callable[[str], object],
                           poll_s: float = 1.0) -> None:
    """Return once a slot of the `duckdb` pool is free, releasing dead runs' slots on the way. Sleeps between
    looks (Dagster's own wait inside a run polls without sleeping); says once whom it waits for, and raises
    `SlotWaitTimeout` with a sentence after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    said = False
    while True:
        release_abandoned_runs(instance)
        holders = slot_holders(instance)
        if holders is None:
            return
        who = ", ".join(f"run {h.run_id}" + (f" (PID {h.pid})" if h.pid else "") for h in holders)
        if time.monotonic() >= deadline:
            raise SlotWaitTimeout(f"The database slot is still held by {who} after {timeout_s:g} s; wait for it "
                                  "to finish, or stop it (the next run frees the slot of a stopped run).")
        if not said:
            say(f"waiting for the database slot held by {who} ...")
            said = True
        time.sleep(poll_s)
