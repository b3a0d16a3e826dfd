"""The image store as a Dagster resource: where `storage.images.ContentStore` keeps the images."""

from __future__ import annotations

from collections.abc import Callable
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

    def put_file(self, content_id: str, source: Path) -> Path:
        return self.files.put_file(content_id, source)

    def read(self, input_id: str) -> bytes:
        return self.files.read(input_id)

    def cached_crop(self, input_id: str, key: str, cut: Callable[[bytes], bytes]) -> bytes:
        return self.files.cached_crop(input_id, key, cut)

    def remove(self, input_id: str) -> dict[str, int]:
        return self.files.remove(input_id)
