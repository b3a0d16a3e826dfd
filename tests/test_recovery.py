"""A run killed with a real SIGKILL at each stage, then one more `autoannotate run`: it finishes the batch,
never hangs, and leaves every table exactly as a clean run on the same files does."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from helpers import autoannotate

from apps.demo_scenes import write_demo_images
from core.faults import PAUSE_VARIABLE
from store.tables import TABLES

# Columns whose values depend on when or where a run happened, not on what it produced.
BATCH_DEPENDENT = {"batch", "event_id", "uri", "stored_path", "manifest_path"}


def table_snapshot(home: Path) -> dict[str, pd.DataFrame]:
    """Every table's rows without times and batch keys (which differ between two homes), sorted."""
    with duckdb.connect(str(home / "autoannotate.duckdb"), read_only=True) as conn:
        snapshot = {}
        for name in TABLES:
            frame = conn.execute(f"SELECT * FROM {name}").df()
            keep = [c for c in frame.columns if c not in BATCH_DEPENDENT
                    and not pd.api.types.is_datetime64_any_dtype(frame[c])]
            frame = frame[keep].astype(str)
            snapshot[name] = frame.sort_values(keep).reset_index(drop=True)
    return snapshot


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def killed_at(point: str, inbox: Path, home: Path) -> None:
    """Start `autoannotate run --version`, wait until it reaches `point`, and SIGKILL it there."""
    script = Path(sys.executable).parent / "autoannotate"
    process = subprocess.Popen([str(script), "run", "--inbox", str(inbox), "--version", "--json"],
                               env={**os.environ, "AUTOANNOTATE_HOME": str(home), PAUSE_VARIABLE: point},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:
            if line.strip() == f"paused at {point}":
                process.send_signal(signal.SIGKILL)
                break
        assert process.wait(timeout=300) == -signal.SIGKILL, f"the run never reached {point}"
    finally:
        process.kill()


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("clean")
    inbox = folder / "inbox"
    write_demo_images(inbox, 12, seed=21)
    autoannotate("run", "--inbox", str(inbox), "--version", "--json", home=folder / "home")
    return inbox, folder / "home"


@pytest.mark.parametrize(("point", "stage"), [("inputs.write", "not ingested"), ("inference", "not predicted"),
                                              ("annotations.write", "not routed"), ("versions.write", None)])
def test_a_run_killed_at_any_stage_is_finished_by_the_next_run(clean_run: tuple[Path, Path], tmp_path: Path,
                                                               point: str, stage: str | None) -> None:
    inbox, clean_home = clean_run
    home = tmp_path / "home"
    killed_at(point, inbox, home)
    if stage:
        status = json.loads(autoannotate("status", "--json", home=home).stdout)
        assert list(status["unfinished_batches"].values()) == [stage]

    summary = json.loads(autoannotate("run", "--inbox", str(inbox), "--version", "--json", home=home).stdout)

    assert [item["stage"] for item in summary["resumed"]] == ([stage] if stage else [])
    assert summary["batch"] is None  # every file was in the batch the killed run pinned
    assert json.loads(autoannotate("status", "--json", home=home).stdout)["unfinished_batches"] == {}
    clean, recovered = table_snapshot(clean_home), table_snapshot(home)
    for name in TABLES:
        pd.testing.assert_frame_equal(recovered[name], clean[name], obj=name)
    assert files_under(home / "images") == files_under(clean_home / "images")
    assert files_under(home / "versions") == files_under(clean_home / "versions")


HOLDER = """
import sys, time
from pathlib import Path
import dagster as dg
from pipelines.instance import persistent_instance

@dg.asset(pool="duckdb")
def holds_the_database_slot() -> None:
    print("holding", flush=True)
    time.sleep(600)

dg.materialize([holds_the_database_slot], instance=persistent_instance(Path(sys.argv[1])))
"""


def test_a_run_waits_for_a_live_slot_holder_without_spinning_and_frees_a_dead_ones_slot(tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    write_demo_images(inbox, 3, seed=5)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home / "dagster")], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert holder.stdout.readline().strip() == "holding"
        script = Path(sys.executable).parent / "autoannotate"
        waiting = subprocess.Popen([str(script), "run", "--inbox", str(inbox), "--json"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "AUTOANNOTATE_HOME": str(home), "AUTOANNOTATE_SLOT_WAIT_S": "20"})
        _, status, usage = os.wait4(waiting.pid, 0)
        stderr = waiting.stderr.read()
        assert os.waitstatus_to_exitcode(status) == 1
        assert "waiting for the database slot held by run " in stderr and f"(PID {holder.pid})" in stderr
        assert stderr.strip().endswith("after 20 s; wait for it to finish, or stop it (the next run frees the slot "
                                       "of a stopped run).")
        # Sleeping between looks: the 20 s of waiting cost far less than 20 CPU seconds (start-up is ~5).
        assert usage.ru_utime + usage.ru_stime < 12
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    summary = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=home).stdout)
    assert summary["ingestion"]["inputs"] == 3
    assert summary["resumed"] == []  # the run that gave up pinned no batch

