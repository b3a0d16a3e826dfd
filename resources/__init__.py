"""Resources, configured in one place from AUTOANNOTATE_HOME and environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.settings import DEMO_TASK, DEMO_WEIGHTS, database_path, default_inbox
from resources.detector import Detector
from resources.image_store import ImageStore
from resources.inbox import Inbox
from resources.store import DuckDBStore
from resources.tasks import LabelingTasks
from resources.versions import VersionStore


def build_resources(home: Path, inbox: Path | None = None, task_files: list[str] | None = None) -> dict:
    """The resources every job, sensor and CLI command of one AUTOANNOTATE_HOME shares."""
    inbox_path = inbox or Path(os.environ.get("AUTOANNOTATE_INBOX", default_inbox(home)))
    tasks = task_files or os.environ.get("AUTOANNOTATE_TASKS", str(DEMO_TASK)).split(os.pathsep)
    return {
        "tasks": LabelingTasks(task_files=[str(Path(t).resolve()) for t in tasks]),
        "store": DuckDBStore(path=str(database_path(home))),
        "images": ImageStore(root=str(home / "images")),
        "versions": VersionStore(root=str(home / "versions"),
                                 val_ratio=float(os.environ.get("AUTOANNOTATE_VAL_RATIO", "0.2"))),
        "detector": Detector(
            weights=os.environ.get("AUTOANNOTATE_WEIGHTS", str(DEMO_WEIGHTS)),
            imgsz=int(os.environ.get("AUTOANNOTATE_IMGSZ", "0")),
            batch_size=int(os.environ.get("AUTOANNOTATE_BATCH_SIZE", "16")),
            device=os.environ.get("AUTOANNOTATE_DEVICE", "cpu"),
            runtime=os.environ.get("AUTOANNOTATE_RUNTIME", "torch"),
        ),
        "inbox": Inbox(
            path=str(inbox_path.resolve()),
            batches_dir=str(home / "batches"),
            settle_seconds=float(os.environ.get("AUTOANNOTATE_SETTLE_SECONDS", "10")),
            max_pixels=int(os.environ.get("AUTOANNOTATE_MAX_PIXELS", "50000000")),
        ),
    }
