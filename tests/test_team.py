"""Team mode: the same tables and SQL in a DuckLake whose catalog is a real PostgreSQL, beside the embedded file."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import autoannotate, exactly_once, in_home, table_counts

from apps.demo_scenes import write_demo_images

pytestmark = pytest.mark.team


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
    from apps.team_services import ensure_database, server_conninfo

    server = server_conninfo(*postgres_server)
    ensure_database(server, "dagster_shared")
    storage = f"postgres:dbname=dagster_shared {server}"
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
    from apps.team_services import ensure_database, server_conninfo, start_postgres, stop_postgres
    from core.faults import PAUSE_VARIABLE, RESUME_VARIABLE

    folder, port = postgres_server
    write_demo_images(tmp_path / "inbox", 8, seed=97)
    ensure_database(server_conninfo(folder, port), "t_outage")
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
                f"failed: The DuckLake catalog {catalog.split(' password=')[0]} stopped answering and did not answer "
                "again within 8 s; nothing of that unit of work was stored. Start the catalog's server and run again."
            ), stderr[case]
            assert "password=" not in stderr[case]  # the sentence never shows the catalog's password
            partial = table_counts(home, env)
            assert partial["annotations"] == partial["review_assignments"] == 0  # the interrupted write: absent
            assert partial["inputs"] == 8 and partial["predictions"] > 0  # the steps before it: kept
            autoannotate("run", "--inbox", str(tmp_path / "inbox"), home=home, env=env)  # completes the batch
        counts[case] = table_counts(home, env)
        assert exactly_once(home, env) == 0
    assert counts["restart"] == counts["outage"]
    assert counts["restart"]["inputs"] == 8 and counts["restart"]["annotations"] > 0


def test_a_team_address_that_is_not_this_machines_is_refused_with_a_sentence() -> None:
    from apps.team_services import ServiceError, checked_address

    assert checked_address("127.0.0.1") == "127.0.0.1"
    for wrong, why in (("db.example", "does not appear to be an IPv4 or IPv6 address"),
                       ("192.0.2.77", "Cannot assign requested address")):  # TEST-NET-1: on no interface here
        with pytest.raises(ServiceError) as refused:
            checked_address(wrong)
        assert str(refused.value).startswith(f"AUTOANNOTATE_TEAM_ADDRESS={wrong!r} is not an IP address of this "
                                             f"machine (")
        assert why in str(refused.value) and "leave it unset for loopback" in str(refused.value)
