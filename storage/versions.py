"""Where dataset-version manifests live, and how versions are split for training."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ManifestFolder:
    """Manifests under `root/<task>/<day>/manifest.tsv` (a named version: `root/<task>/<name>/`); exports put
    `val_ratio` of the inputs (by hash) in val, `test_ratio` in test and the rest in train."""

    root: Path
    val_ratio: float = 0.2
    test_ratio: float = 0.1

    def manifest_path(self, task: str, day: str) -> Path:
        return self.root / task / day / "manifest.tsv"

    def write_manifest(self, task: str, day: str, text: str) -> Path:
        """Written whole or not at all (a temporary file renamed into place); always rewritten, so a rebuild
        restores a manifest whatever happened to the file."""
        path = self.manifest_path(task, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text)
        os.replace(partial, path)
        return path
