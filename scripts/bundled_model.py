"""What the training scripts of the bundled demo models share: keep the best weights and say how they were made."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def save_bundled_model(best: Path, out: Path, report: dict) -> None:
    """Copy the trained weights to `out` and write `report` (plus the file's size) beside them as JSON."""
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(best, out)
    report = {**report, "weights_bytes": out.stat().st_size}
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
