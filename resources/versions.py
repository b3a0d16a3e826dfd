"""The version manifests as a Dagster resource (`storage.versions.ManifestFolder`)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from storage.versions import ManifestFolder


class VersionStore(dg.ConfigurableResource):
    """Manifests under `root/<task>/<day>/manifest.tsv`; exports put `val_ratio` of the inputs (by hash) in val,
    `test_ratio` in test and the rest in train."""

    root: str
    val_ratio: float = 0.2
    test_ratio: float = 0.1

    @property
    def files(self) -> ManifestFolder:
        return ManifestFolder(Path(self.root), self.val_ratio, self.test_ratio)

    def manifest_path(self, task: str, day: str) -> Path:
        return self.files.manifest_path(task, day)

    def write_manifest(self, task: str, day: str, text: str) -> Path:
        return self.files.write_manifest(task, day, text)
