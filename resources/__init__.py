"""Resources, configured in one place from AUTOANNOTATE_HOME and environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.settings import database_path, default_inbox
from resources.image_store import ImageStore
from resources.inbox import Inbox
from resources.store import DuckDBStore


def build_resources(home: Path, inbox: Path | None = None) -> dict:
    """The resources every job, sensor and CLI command of one AUTOANNOTATE_HOME shares."""
    inbox_path = inbox or Path(os.environ.get("AUTOANNOTATE_INBOX", default_inbox(home)))
    return {
        "store": DuckDBStore(path=str(database_path(home))),
        "images": ImageStore(root=str(home / "images")),
        "inbox": Inbox(
            path=str(inbox_path.resolve()),
            batches_dir=str(home / "batches"),
            settle_seconds=float(os.environ.get("AUTOANNOTATE_SETTLE_SECONDS", "10")),
            max_pixels=int(os.environ.get("AUTOANNOTATE_MAX_PIXELS", "50000000")),
        ),
    }
