"""Shared fixtures: every test gets its own AUTOANNOTATE_HOME, DuckDB file and Dagster instance."""

from __future__ import annotations

import os
import sys
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
