"""Shared fixtures: every test gets its own AUTOANNOTATE_HOME, DuckDB file and Dagster instance."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image

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
    from resources import build_resources

    return build_resources(home, inbox)


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


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", exif_orientation: int | None = None,
                colour: tuple = (200, 30, 30)) -> bytes:
    """Encode a small image in memory, optionally with an EXIF orientation tag."""
    fill = colour[0] if mode in ("L", "P", "I;16") else colour[: len(mode)]
    image = Image.new(mode, size, fill)
    buffer = io.BytesIO()
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(buffer, format=fmt, exif=exif)
    else:
        image.save(buffer, format=fmt)
    return buffer.getvalue()
