"""Keep Ultralytics off the network: no update checks, no auto-installs, no telemetry.

Must run before the first `import ultralytics`, because Ultralytics reads these
variables at import time (its online check resolves DNS names otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_ENVIRONMENT = {
    "YOLO_OFFLINE": "1",  # is_online() answers False without touching DNS
    "YOLO_AUTOINSTALL": "false",  # a missing extra fails instead of running pip
    "YOLO_VERBOSE": "false",
}


def make_ultralytics_offline(config_dir: Path | None = None) -> None:
    """Set the variables (without overriding a user's own) and switch settings sync off."""
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    if config_dir is not None:
        config_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    from ultralytics.utils import SETTINGS

    if SETTINGS.get("sync"):
        SETTINGS.update(sync=False)  # type: ignore[no-untyped-call]
