"""Team mode: the same tables and SQL in a DuckLake whose catalog is a real PostgreSQL, beside the embedded file."""

import json
import os
import shutil
import subprocess
import sys
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
    repeated = in_home(home, env, "store.read(lambda s: s.scalar('SELECT count(*) - count(DISTINCT event_id) + "
                       "(SELECT count(*) - count(DISTINCT input_id) FROM inputs) FROM annotations'))")
    assert repeated == 0  # every event and every input exactly once


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


def test_team_up_runs_batches_on_two_celery_workers_and_team_down_stops_everything(
        tmp_path: Path, postgres_server: tuple) -> None:
    """`make team-up` on this machine: PostgreSQL, Redis, two Celery workers, the daemon and the webserver. A CLI
    run with `team.env` shows in the webserver; four batches launched as a backfill run through the daemon, their
    steps spread over both workers, and every input is stored exactly once; `make team-down` leaves nothing."""
    import shlex
    import time
    import urllib.request

    from helpers import free_port

    from apps.runner import create_batch, instance_of, pending_files
    from apps.team_services import cluster_folder
    from core.settings import Settings
    from resources import build_resources

    if shutil.which("redis-server") is None:
        pytest.skip("Debian's redis-server package is not installed (.ci/run installs it)")
    home = tmp_path / "home"
    ports = {"AUTOANNOTATE_TEAM_POSTGRES_PORT": str(free_port()), "AUTOANNOTATE_TEAM_WEB_PORT": str(free_port()),
             "AUTOANNOTATE_TEAM_REDIS_PORT": str(free_port())}
    environment = {**os.environ, "AUTOANNOTATE_HOME": str(home), **ports}
    url = f"http://127.0.0.1:{ports['AUTOANNOTATE_TEAM_WEB_PORT']}"

    def graphql(query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables
                                                                            or {}}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["data"]

    def runs() -> list[dict]:
        return graphql("{ runsOrError { ... on Runs { results { jobName status tags { key value } } } } }")[
            "runsOrError"]["results"]

    up = subprocess.run([sys.executable, "-m", "apps.team_services", "up"], env=environment, capture_output=True,
                        text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (home / "team" / "webserver.log").read_text()[-3000:]
                time.sleep(1)
        variables = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1)
                         for line in (home / "team.env").read_text().splitlines())
        write_demo_images(tmp_path / "inbox", 3, seed=91)
        autoannotate("run", "--inbox", str(tmp_path / "inbox"), home=home, env={**ports, **variables})
        assert [(r["jobName"], r["status"]) for r in runs()] == [("annotate_batch", "SUCCESS")]

        os.environ.update({"AUTOANNOTATE_HOME": str(home), **ports, **variables})
        try:
            settings = Settings.from_env()
            inbox, instance = build_resources(settings)["inbox"], instance_of(settings)
            batches = []
            for index in range(4):
                write_demo_images(settings.inbox_path, 4, seed=200 + index, prefix=f"wave{index}")
                batches.append(create_batch(inbox, pending_files(inbox), instance))
        finally:
            for name in ("AUTOANNOTATE_HOME", *ports, *variables):
                os.environ.pop(name, None)
        launched = graphql("""mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
            __typename ... on PythonError { message } } }""", {"p": {"partitionNames": batches, "selector": {
            "partitionSetName": "annotate_batch_partition_set", "repositorySelector": {
                "repositoryLocationName": "pipelines.definitions:defs", "repositoryName": "__repository__"}}}})
        assert launched["launchPartitionBackfill"]["__typename"] == "LaunchBackfillSuccess", launched
        deadline = time.monotonic() + 400
        while True:
            done = [r for r in runs() if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            if len(done) == 5:
                break
            assert time.monotonic() < deadline, runs()
            time.sleep(3)
        assert sorted(r["status"] for r in done) == ["SUCCESS"] * 5
        logs = {name: (home / "team" / f"{name}.log").read_text() for name in ("worker-1", "worker-2")}
        assert all("Task execute_plan" in text for text in logs.values())  # both workers ran steps
        counts = table_counts(home, variables)
        assert counts["inputs"] == counts["input_sources"] == counts["task_inputs"] == 3 + 4 * 4
        repeated = in_home(home, variables, "store.read(lambda s: s.scalar('SELECT count(*) - count(DISTINCT "
                           "event_id) + (SELECT count(*) - count(DISTINCT input_id) FROM inputs) FROM annotations'))")
        assert repeated == 0
    finally:
        down = subprocess.run([sys.executable, "-m", "apps.team_services", "down"], env=environment,
                              capture_output=True, text=True, timeout=120)
        shutil.rmtree(cluster_folder(Settings(home=home)), ignore_errors=True)
    assert down.returncode == 0, down.stderr
    assert not list((home / "team").glob("*.pid"))
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/server_info", timeout=5)


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
