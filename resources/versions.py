"""Where dataset-version manifests live, and how versions are split for training."""

from pathlib import Path

import dagster as dg


class VersionStore(dg.ConfigurableResource):
    """Manifests under `root/<task>/<day>/manifest.tsv`; `val_ratio` of inputs (by hash) go to val."""

    root: str
    val_ratio: float = 0.2

    def manifest_path(self, task: str, day: str) -> Path:
        return Path(self.root) / task / day / "manifest.tsv"

    def write_manifest(self, task: str, day: str, text: str) -> Path:
        path = self.manifest_path(task, day)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path
