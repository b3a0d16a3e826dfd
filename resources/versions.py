"""The version manifests as a Dagster resource (`storage.versions.ManifestStore`)."""

from __future__ import annotations

import dagster as dg

from storage.blobs import blob_store
from storage.versions import ManifestStore


class VersionStore(dg.ConfigurableResource):
    """Manifests under `root/<task>/<day>/manifest.tsv` (`root` a folder or s3://bucket/prefix); exports put
    `val_ratio` of the inputs (by hash) in val, `test_ratio` in test and the rest in train."""

    root: str
    val_ratio: float = 0.2
    test_ratio: float = 0.1

    @property
    def files(self) -> ManifestStore:
        return ManifestStore(blob_store(self.root), self.val_ratio, self.test_ratio)

    def manifest_location(self, task: str, day: str) -> str:
        return self.files.manifest_location(task, day)

    def read_manifest(self, task: str, day: str) -> str:
        return self.files.read_manifest(task, day)

    def write_manifest(self, task: str, day: str, text: str) -> str:
        return self.files.write_manifest(task, day, text)
