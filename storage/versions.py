"""Where dataset-version manifests live, and how versions are split for training."""

from __future__ import annotations

from dataclasses import dataclass

from storage.blobs import BlobStore


@dataclass(frozen=True)
class ManifestStore:
    """Manifests at `<task>/<day>/manifest.tsv` (a named version: `<task>/<name>/`) in `blobs`: a folder, or the
    team's bucket (any machine exports a version); exports put `val_ratio` of the inputs (by hash) in val,
    `test_ratio` in test and the rest in train."""

    blobs: BlobStore
    val_ratio: float = 0.2
    test_ratio: float = 0.1

    @staticmethod
    def key(task: str, day: str) -> str:
        return f"{task}/{day}/manifest.tsv"

    def manifest_location(self, task: str, day: str) -> str:
        return self.blobs.url(self.key(task, day))

    def read_manifest(self, task: str, day: str) -> str:
        return self.blobs.read(self.key(task, day)).decode()

    def write_manifest(self, task: str, day: str, text: str) -> str:
        """Written whole or not at all; always rewritten, so a rebuild restores a manifest whatever happened to it.
        Returns where it is (a path, or an s3:// URL)."""
        self.blobs.put(self.key(task, day), text.encode())
        return self.manifest_location(task, day)
