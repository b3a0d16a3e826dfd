"""A run killed with a real SIGKILL at each stage, then one more `autoannotate run`: it finishes the batch,
never hangs, and leaves every table exactly as a clean run on the same files does."""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from helpers import autoannotate

from apps.demo_scenes import write_demo_images
from core.faults import PAUSE_VARIABLE, RESUME_VARIABLE
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



@contextmanager
def mounted(target: Path, *options: str, source: str | None = None) -> Iterator[None]:
    """A tmpfs (`size=...`) or a read-only bind mount of `source` on `target`, for as long as the block runs;
    skips where this machine does not allow mounting."""
    if source is not None and not Path(source).is_dir():
        target.touch()  # a bind mount over a file
    else:
        target.mkdir(parents=True, exist_ok=True)
    if source is None:
        command = ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(target)]
    else:
        command = ["mount", "--bind", source, str(target)]
    if subprocess.run(command, capture_output=True).returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs or a bind mount")
    try:
        if source is not None:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(target)], check=True, capture_output=True)
        yield
    finally:
        subprocess.run(["umount", str(target)], check=True)


def noisy_pngs(folder: Path, count: int, side: int = 512) -> None:
    """Images that do not compress: `count` x ~side*side*3 bytes."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(count)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / f"noise{index}.png")


def counts(home: Path) -> dict[str, int]:
    with duckdb.connect(str(home / "autoannotate.duckdb"), read_only=True) as conn:
        return {name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in TABLES}


def one_line_failure(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("autoannotate: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_full_image_store_fails_with_a_sentence_and_the_next_run_finishes_the_batch(tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    noisy_pngs(inbox, 3)  # ~2.4 MB
    with mounted(home / "images", "size=1m"):
        line = one_line_failure(autoannotate("run", "--inbox", str(inbox), "--json", home=home, check=False))
        assert f"The image store {home / 'images'} cannot take another image (No space left on device)" in line
        assert counts(home)["inputs"] == 0 and counts(home)["input_sources"] == 0
        assert not [p for p in (home / "images").rglob(".incoming-*")]  # no partial file
    summary = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=home).stdout)
    assert [r["stage"] for r in summary["resumed"]] == ["not ingested"]
    assert counts(home)["inputs"] == 3


def test_a_read_only_database_or_image_store_fails_with_a_sentence_and_loses_nothing(tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    write_demo_images(inbox, 3, seed=41)
    autoannotate("run", "--inbox", str(inbox), "--json", home=home)
    before = counts(home)
    write_demo_images(inbox, 2, seed=42)
    database = home / "autoannotate.duckdb"
    with mounted(database, source=str(database)):
        line = one_line_failure(autoannotate("run", "--inbox", str(inbox), "--json", home=home, check=False))
        assert line.startswith(f"autoannotate: The database {database} cannot be opened for writing (")
    assert counts(home) == before
    with mounted(home / "images", source=str(home / "images")):
        line = one_line_failure(autoannotate("run", "--inbox", str(inbox), "--json", home=home, check=False))
        assert f"The image store {home / 'images'} cannot take another image (Read-only file system)" in line
    assert counts(home) == before
    summary = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=home).stdout)
    assert summary["resumed"][0]["stage"] == "not ingested" and counts(home)["inputs"] == 5


def test_an_inbox_that_vanishes_mid_run_fails_with_a_sentence_and_writes_nothing(tmp_path: Path) -> None:
    home, inbox, resume = tmp_path / "home", tmp_path / "inbox", tmp_path / "resume"
    write_demo_images(inbox, 4, seed=43)
    script = Path(sys.executable).parent / "autoannotate"
    process = subprocess.Popen([str(script), "run", "--inbox", str(inbox), "--json"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "AUTOANNOTATE_HOME": str(home), PAUSE_VARIABLE: "inputs.read",
                                    RESUME_VARIABLE: str(resume)})
    for line in process.stderr:
        if line.strip() == "paused at inputs.read":
            break
    kept = tmp_path / "kept"
    inbox.rename(kept)  # unmounted, or removed, while the batch is read
    resume.touch()
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 1
    assert f"The inbox folder {inbox} disappeared while batch " in stderr
    assert counts(home)["inputs"] == 0 and counts(home)["rejected_inputs"] == 0
    kept.rename(inbox)
    summary = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=home).stdout)
    assert summary["resumed"][0]["stage"] == "not ingested" and counts(home)["inputs"] == 4
