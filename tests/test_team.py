"""Team mode: the same tables and SQL in a DuckLake whose catalog is a real PostgreSQL, beside the embedded file."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import autoannotate

from apps.demo_scenes import write_demo_images

pytestmark = pytest.mark.team

TABLES = ("inputs", "input_sources", "rejected_inputs", "models", "predictions", "processed_inputs", "annotations",
          "annotation_state", "task_inputs", "task_classes", "routing_rules", "review_assignments", "dataset_versions")


def in_home(home: Path, env: dict, expression: str) -> object:
    """The JSON value of `expression` (over `store`) computed by a fresh process in that home and mode."""
    code = ("import json; from core.settings import Settings; from resources import build_resources; "
            "from apps.runner import instance_of; "
            f"store = build_resources(Settings.from_env())['store']; print(json.dumps({expression}))")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "AUTOANNOTATE_HOME": str(home), **env},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def table_counts(home: Path, env: dict) -> dict[str, int]:
    return in_home(home, env, f"store.read(lambda s: {{t: s.scalar('SELECT count(*) FROM ' + t) for t in {TABLES}}})")


def test_the_same_inbox_gives_the_same_tables_and_manifests_in_every_mode(tmp_path: Path, team_catalog: str) -> None:
    inbox = tmp_path / "inbox"
    write_demo_images(inbox, 12, seed=61)
    modes = {"embedded": {}, "ducklake": {"AUTOANNOTATE_CATALOG": "ducklake"},
             "postgres": {"AUTOANNOTATE_CATALOG": team_catalog}}
    today = datetime.now(UTC).date().isoformat()
    hashes, counts = {}, {}
    for mode, env in modes.items():
        home = tmp_path / mode
        summary = json.loads(autoannotate("run", "--inbox", str(inbox), "--version", "--json", home=home,
                                          env=env).stdout)
        hashes[mode] = summary["versions"][f"demo-shapes@{today}"]["manifest_sha256"]
        counts[mode] = table_counts(home, env)
        again = json.loads(autoannotate("run", "--inbox", str(inbox), "--version", "--json", home=home,
                                        env=env).stdout)
        assert again["batch"] is None and table_counts(home, env) == counts[mode]  # a re-run duplicates nothing
    assert hashes["ducklake"] == hashes["postgres"] == hashes["embedded"]
    assert counts["ducklake"] == counts["postgres"] == counts["embedded"]
    assert counts["embedded"]["inputs"] == 12 and counts["embedded"]["annotations"] > 0
    assert (tmp_path / "ducklake" / "lake" / "main" / "inputs").is_dir()  # Parquet files under the home
    assert not (tmp_path / "postgres" / "autoannotate.duckdb").exists()


def test_two_runs_write_one_lake_at_once(tmp_path: Path, team_catalog: str) -> None:
    home, env = tmp_path / "home", {"AUTOANNOTATE_CATALOG": team_catalog}
    for name, seed in (("a", 71), ("b", 72)):
        write_demo_images(tmp_path / name, 10, seed=seed, prefix=name)
    script = str(Path(sys.executable).parent / "autoannotate")
    runs = [subprocess.Popen([script, "run", "--inbox", str(tmp_path / name), "--json"],
                             env={**os.environ, "AUTOANNOTATE_HOME": str(home), **env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    summaries = [json.loads(out) for out, _ in outputs]
    assert [s["ingestion"]["inputs"] for s in summaries] == [10, 10]
    counts = table_counts(home, env)
    assert counts["inputs"] == counts["input_sources"] == counts["task_inputs"] == 20
    assert exactly_once(home, env) == 0


def test_a_catalog_server_that_is_down_is_one_sentence(tmp_path: Path, postgres_server: tuple[Path, int]) -> None:
    from helpers import free_port

    catalog = f"postgres:dbname=autoannotate host=127.0.0.1 port={free_port()} user=postgres"  # nothing listens
    result = autoannotate("status", home=tmp_path / "home", env={"AUTOANNOTATE_CATALOG": catalog}, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith(f"autoannotate: The database DuckLake catalog {catalog} cannot be opened")
    assert len(result.stderr.strip().splitlines()) == 1


def test_dagster_on_postgresql_is_one_instance_for_every_machine(tmp_path: Path, team_catalog: str,
                                                                  postgres_server: tuple[Path, int]) -> None:
    """With AUTOANNOTATE_DAGSTER_STORAGE, a run made from one home is in the instance every other home (another
    machine's daemon, webserver or CLI) opens."""
    from apps.team_services import ensure_database

    ensure_database(postgres_server[1], "dagster_shared")
    storage = f"postgres:dbname=dagster_shared host=127.0.0.1 port={postgres_server[1]} user=postgres"
    env = {"AUTOANNOTATE_CATALOG": team_catalog, "AUTOANNOTATE_DAGSTER_STORAGE": storage,
           "AUTOANNOTATE_DATA_PATH": str(tmp_path / "shared-lake")}
    write_demo_images(tmp_path / "inbox", 4, seed=81)
    autoannotate("run", "--inbox", str(tmp_path / "inbox"), home=tmp_path / "machine-a", env=env)
    config = (tmp_path / "machine-a" / "dagster" / "dagster.yaml").read_text()
    assert "postgres_db:" in config and "db_name: dagster_shared" in config
    assert not list((tmp_path / "machine-a" / "dagster").glob("**/*.db"))  # no SQLite storage
    runs = in_home(tmp_path / "machine-b", env,
                   "[(r.job_name, r.status.value) for r in instance_of(Settings.from_env()).get_runs()]")
    assert runs == [["annotate_batch", "SUCCESS"]]
    assert in_home(tmp_path / "machine-b", env, "store.read(lambda s: s.scalar('SELECT count(*) FROM inputs'))") == 4


@contextlib.contextmanager
def team_services(home: Path, **extra: str) -> Iterator[dict]:
    """`make team-up` for `home` on free ports (with `extra` variables in every service's environment); yields
    the ports, the variables of `team.env`, the webserver's URL and, after `make team-down`, its exit status."""
    from helpers import free_port

    from apps.team_services import ServiceError, cluster_folder, read_team_env, wait_for_webserver
    from core.settings import Settings

    if shutil.which("redis-server") is None:
        pytest.skip("Debian's redis-server package is not installed (.ci/run installs it)")
    ports = {"AUTOANNOTATE_TEAM_POSTGRES_PORT": str(free_port()), "AUTOANNOTATE_TEAM_WEB_PORT": str(free_port()),
             "AUTOANNOTATE_TEAM_REDIS_PORT": str(free_port())}
    environment = {**os.environ, "AUTOANNOTATE_HOME": str(home), **ports, **extra}
    team = {"ports": ports, "url": f"http://127.0.0.1:{ports['AUTOANNOTATE_TEAM_WEB_PORT']}"}
    up = subprocess.run([sys.executable, "-m", "apps.team_services", "up"], env=environment, capture_output=True,
                        text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        try:
            wait_for_webserver(team["url"])
        except ServiceError as error:
            pytest.fail(f"{error}\n{(home / 'team' / 'webserver.log').read_text()[-3000:]}")
        wait_for_workers(home)
        team["variables"] = read_team_env(home)
        yield team
    finally:
        down = subprocess.run([sys.executable, "-m", "apps.team_services", "down"], env=environment,
                              capture_output=True, text=True, timeout=120)
        shutil.rmtree(cluster_folder(Settings(home=home)), ignore_errors=True)
        team["down"] = (down.returncode, down.stderr)


def worker_logs(home: Path) -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted((home / "team").glob("worker-*.log"))}


def wait_for_workers(home: Path, timeout_s: float = 240) -> None:
    """Until every Celery worker has said it is ready (on a loaded 2-core machine a worker can take a minute to
    import torch: steps sent before then all go to the other one)."""
    deadline = time.monotonic() + timeout_s
    while not all(" ready." in text for text in worker_logs(home).values()):
        if time.monotonic() > deadline:
            pytest.fail("\n".join(f"{name}: {text[-2000:]}" for name, text in worker_logs(home).items()))
        time.sleep(1)


def exactly_once(home: Path, variables: dict) -> int:
    """How many events and inputs are stored more than once (0 when every one is there exactly once)."""
    return in_home(home, variables, "store.read(lambda s: s.scalar('SELECT count(*) - count(DISTINCT event_id) + "
                   "(SELECT count(*) - count(DISTINCT input_id) FROM inputs) FROM annotations'))")


def new_batches(home: Path, team: dict, sizes: list[int], seed: int) -> list[str]:
    """Batches of new demo images in the home's inbox, pinned as the sensor pins them."""
    from apps.runner import create_batch, instance_of, pending_files
    from core.settings import Settings
    from resources import build_resources

    settings = Settings.from_env({"AUTOANNOTATE_HOME": str(home), **team["ports"], **team["variables"]})
    inbox, instance = build_resources(settings)["inbox"], instance_of(settings)
    batches = []
    for index, size in enumerate(sizes):
        write_demo_images(settings.inbox_path, size, seed=seed + index, prefix=f"wave{seed + index}-")
        batches.append(create_batch(inbox, pending_files(inbox).ready, instance))
    return batches


def backfill_and_wait(url: str, batches: list[str], runs_in_all: int, timeout_s: float = 400) -> list[str]:
    """Launch the batches as one backfill through the webserver (the daemon runs them: their steps go to the
    Celery workers) and wait until `runs_in_all` runs have ended; their statuses."""
    from apps.team_services import launch_backfill, run_statuses

    launch_backfill(url, batches)
    deadline = time.monotonic() + timeout_s
    while True:
        ended = [r["status"] for r in run_statuses(url) if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
        if len(ended) == runs_in_all:
            return sorted(ended)
        assert time.monotonic() < deadline, run_statuses(url)
        time.sleep(3)


def test_team_up_runs_batches_on_two_celery_workers_and_team_down_stops_everything(tmp_path: Path) -> None:
    """`make team-up` on this machine: PostgreSQL, Redis, two Celery workers, the daemon and the webserver. A CLI
    run with `team.env` (in its own process) shows in the webserver; four batches launched as a backfill run
    through the daemon, their steps spread over both workers, and every input is stored exactly once;
    `make team-down` leaves nothing."""
    from apps.team_services import run_statuses

    home = tmp_path / "home"
    with team_services(home) as team:
        write_demo_images(tmp_path / "inbox", 3, seed=91)
        autoannotate("run", "--inbox", str(tmp_path / "inbox"), home=home, env={**team["ports"], **team["variables"]})
        assert [(r["jobName"], r["status"]) for r in run_statuses(team["url"])] == [("annotate_batch", "SUCCESS")]
        batches = new_batches(home, team, [4, 4, 4, 4], seed=200)
        assert backfill_and_wait(team["url"], batches, runs_in_all=5) == ["SUCCESS"] * 5
        logs = worker_logs(home)
        assert sorted(logs) == ["worker-1", "worker-2"]
        assert all("Task execute_plan" in text for text in logs.values()), {  # both workers ran steps
            name: text[-2000:] for name, text in logs.items()}
        counts = table_counts(home, team["variables"])
        assert counts["inputs"] == counts["input_sources"] == counts["task_inputs"] == 3 + 4 * 4
        assert exactly_once(home, team["variables"]) == 0
    assert team["down"][0] == 0, team["down"][1]
    assert not list((home / "team").glob("*.pid"))
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{team['url']}/server_info", timeout=5)


def test_a_worker_killed_mid_batch_leaves_its_step_to_the_other_worker(tmp_path: Path) -> None:
    """kill -9 of a whole Celery worker (its machine gone) while it runs a batch's inference: the step, never
    acknowledged, goes to the other worker after AUTOANNOTATE_CELERY_REDELIVER_S, and the run ends complete with
    every input, prediction and event exactly once."""
    from core.faults import PAUSE_VARIABLE, RESUME_VARIABLE

    home, resume = tmp_path / "home", tmp_path / "resume"
    with team_services(home, AUTOANNOTATE_CELERY_REDELIVER_S="60", **{PAUSE_VARIABLE: "inference",
                                                                      RESUME_VARIABLE: str(resume)}) as team:
        logs = {name: home / "team" / f"{name}.log" for name in ("worker-1", "worker-2")}
        batches = new_batches(home, team, [6], seed=93)
        killed: list[str] = []

        def kill_the_worker_at_inference() -> None:
            deadline = time.monotonic() + 300
            while not killed and time.monotonic() < deadline:
                killed.extend(name for name, log in logs.items() if "paused at inference" in log.read_text())
                time.sleep(0.5)
            os.killpg(int((home / "team" / f"{killed[0]}.pid").read_text()), signal.SIGKILL)
            resume.touch()

        killer = threading.Thread(target=kill_the_worker_at_inference)
        killer.start()
        assert backfill_and_wait(team["url"], batches, runs_in_all=1) == ["SUCCESS"]
        killer.join()
        survivor = ({"worker-1", "worker-2"} - {killed[0]}).pop()
        assert "paused at inference" in logs[survivor].read_text()  # it ran the step again
        counts = table_counts(home, team["variables"])
        assert counts["inputs"] == counts["processed_inputs"] == counts["task_inputs"] == 6
        stored = in_home(home, team["variables"], "store.read(lambda s: s.scalar('SELECT count(*) - count(DISTINCT "
                         "prediction_id) FROM predictions'))")
        assert counts["predictions"] > 0 and stored == 0
        assert exactly_once(home, team["variables"]) == 0


def test_maintenance_expires_a_lakes_old_snapshots_and_keeps_every_row(tmp_path: Path) -> None:
    import dagster as dg

    from assets.maintenance import store_maintenance
    from core.settings import Settings
    from resources import build_resources

    home, env = tmp_path / "home", {"AUTOANNOTATE_CATALOG": "ducklake"}
    write_demo_images(tmp_path / "inbox", 6, seed=95)
    autoannotate("run", "--inbox", str(tmp_path / "inbox"), "--version", home=home, env=env)
    before = table_counts(home, env)
    snapshots = "store.read(lambda s: s.scalar(\"SELECT count(*) FROM ducklake_snapshots('autoannotate')\"))"
    assert in_home(home, env, snapshots) > 5
    store = build_resources(Settings(home=home, catalog="ducklake"))["store"]
    result = dg.materialize([store_maintenance], resources={"store": store})
    metadata = result.asset_materializations_for_node("store_maintenance")[0].metadata
    assert metadata["snapshots_expired"].value == 0  # all younger than AUTOANNOTATE_SNAPSHOT_DAYS (7)
    assert store.maintain(keep_days=0)["snapshots_expired"] > 5
    assert in_home(home, env, snapshots) == 1 and table_counts(home, env) == before
    embedded = build_resources(Settings(home=tmp_path / "embedded"))["store"]
    assert embedded.maintain(keep_days=0) == {"checkpoints": 1}


def test_postgresql_restarted_mid_run_is_waited_for_and_a_longer_outage_stores_nothing_half(
        tmp_path: Path, team_catalog: str, postgres_server: tuple[Path, int]) -> None:
    """The catalog's server restarts while a run writes its annotations: the run reconnects and completes. When
    the server stays down longer than the store waits (AUTOANNOTATE_STORE_WAIT_S), the run fails with one
    sentence, the unit of work it was writing is absent (earlier steps' rows stay), and a re-run completes it:
    both ways end with the same rows, each exactly once."""
    from apps.team_services import ensure_database, start_postgres, stop_postgres
    from core.faults import PAUSE_VARIABLE, RESUME_VARIABLE

    folder, port = postgres_server
    write_demo_images(tmp_path / "inbox", 8, seed=97)
    ensure_database(port, "t_outage")
    outage = team_catalog.replace(team_catalog.split()[0], "postgres:dbname=t_outage")
    catalogs = {"restart": team_catalog, "outage": outage}
    script = str(Path(sys.executable).parent / "autoannotate")
    counts, stderr = {}, {}
    for case, catalog in catalogs.items():
        home, resume = tmp_path / case, tmp_path / f"{case}.resume"
        env = {"AUTOANNOTATE_CATALOG": catalog, "AUTOANNOTATE_STORE_WAIT_S": "8"}
        run = subprocess.Popen([script, "run", "--inbox", str(tmp_path / "inbox"), "--json"], text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "AUTOANNOTATE_HOME": str(home), **env,
                                    PAUSE_VARIABLE: "annotations.write", RESUME_VARIABLE: str(resume)})
        try:
            before = []
            for line in run.stderr:
                before.append(line)
                if line.strip() == "paused at annotations.write":
                    break
            assert before[-1:] == ["paused at annotations.write\n"], "".join(before)[-3000:]
            stop_postgres(folder, "immediate")  # the server goes away in the middle of the write
            if case == "restart":
                start_postgres(folder, port)
            resume.touch()
            stderr[case] = run.stderr.read()
            run.wait(timeout=300)
        finally:
            run.kill()
            start_postgres(folder, port)
        if case == "restart":
            assert run.returncode == 0, stderr[case][-3000:]
        else:
            assert run.returncode == 1, stderr[case][-3000:]
            sentences = [line for line in stderr[case].splitlines() if line.startswith("autoannotate: ")]
            assert len(sentences) == 1 and sentences[0].endswith(
                f"failed: The DuckLake catalog {catalog} stopped answering and did not answer again within 8 s; "
                "nothing of that unit of work was stored. Start the catalog's server and run again."), stderr[case]
            partial = table_counts(home, env)
            assert partial["annotations"] == partial["review_assignments"] == 0  # the interrupted write: absent
            assert partial["inputs"] == 8 and partial["predictions"] > 0  # the steps before it: kept
            autoannotate("run", "--inbox", str(tmp_path / "inbox"), home=home, env=env)  # completes the batch
        counts[case] = table_counts(home, env)
        assert exactly_once(home, env) == 0
    assert counts["restart"] == counts["outage"]
    assert counts["restart"]["inputs"] == 8 and counts["restart"]["annotations"] > 0
