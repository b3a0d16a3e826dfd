"""The image store as a Dagster resource: where `storage.images.ContentStore` keeps the images."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from storage.images import ContentStore


class ImageStore(dg.ConfigurableResource):
    """Images under `root/<first two hex digits>/<sha256>` (`storage.images.ContentStore`)."""

    root: str

    @property
    def files(self) -> ContentStore:
        return ContentStore(Path(self.root))

    def path_for(self, input_id: str) -> Path:
        return self.files.path_for(input_id)

    def put(self, input_id: str, data: bytes) -> Path:
        return self.files.put(input_id, data)

    def read(self, input_id: str) -> bytes:
        return self.files.read(input_id)
