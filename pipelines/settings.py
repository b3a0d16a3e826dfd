"""Where things live: everything under AUTOANNOTATE_HOME (default ./data)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_WEIGHTS = REPO_ROOT / "models" / "demo_detector.pt"
DEMO_TASK = REPO_ROOT / "tasks" / "demo.yaml"


def autoannotate_home() -> Path:
    return Path(os.environ.get("AUTOANNOTATE_HOME", "data")).resolve()


def database_path(home: Path) -> Path:
    return home / "autoannotate.duckdb"


def default_inbox(home: Path) -> Path:
    return home / "inbox"


def dagster_home(home: Path) -> Path:
    return home / "dagster"
