"""Keep Ultralytics off the network: no update checks, no auto-installs, no telemetry.

Must run before the first `import ultralytics`, because Ultralytics reads these
variables at import time (its online check resolves DNS names otherwise).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

OFFLINE_ENVIRONMENT = {
    "YOLO_OFFLINE": "1",  # is_online() answers False without touching DNS
    "YOLO_AUTOINSTALL": "false",  # a missing extra fails instead of running pip
    "YOLO_VERBOSE": "false",
}


class UnsafeLoading(RuntimeError):
    """This Ultralytics and torch cannot load weights without unpickling arbitrary objects."""


def make_ultralytics_offline(config_dir: Path | None = None) -> None:
    """Set the variables (without overriding a user's own) and switch settings sync off; and load weights safely,
    whatever the environment says: torch's `weights_only` unpickler with Ultralytics' allow-list of model classes,
    so a checkpoint whose pickle names anything else (`os.system`, ...) is refused before any of it runs."""
    for name, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"
    if config_dir is not None:
        config_dir.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir))
    from ultralytics.nn import tasks
    from ultralytics.utils import LOGGER, SETTINGS

    # Ultralytics reads these variables once, at its import: one imported earlier in this process (before they were
    # set) is switched here as it would have switched itself, so a --json answer never gets its training log.
    tasks.SAFE_LOAD = True
    if os.environ["YOLO_VERBOSE"].strip().lower() not in ("1", "true", "yes", "on", "y", "t"):
        LOGGER.setLevel(logging.ERROR)
    if not tasks._SafeLoad.SUPPORTED:
        raise UnsafeLoading("This torch cannot load weights without running code from them (torch 2.6 or newer "
                            "can): install the torch the project names.")
    if SETTINGS.get("sync"):
        SETTINGS.update(sync=False)  # type: ignore[no-untyped-call]
