"""The image store as a Dagster resource: where `storage.images.ContentStore` keeps the images (a folder, or
s3://bucket/prefix: `storage.blobs`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from storage.blobs import blob_store
from storage.images import ContentStore


class ImageStore(dg.ConfigurableResource):
    """Images at `<root>/<first two hex digits>/<sha256>` (`storage.images.ContentStore`); `root` a folder or an
    s3:// URL."""

    root: str
    cache_root: str = ""  # images of a remote store fetched for a file (an export): "" none
    wait_s: float = 60.0  # a bucket whose server stops answering is waited for this long

    @property
    def files(self) -> ContentStore:
        return ContentStore(blob_store(self.root, self.wait_s), Path(self.cache_root) if self.cache_root else None)

    def path_for(self, input_id: str) -> Path:
        return self.files.path_for(input_id)

    def location_of(self, input_id: str) -> str:
        return self.files.location_of(input_id)

    def put(self, input_id: str, data: bytes) -> str:
        return self.files.put(input_id, data)

    @contextmanager
    def storing_ahead(self) -> Iterator[Callable[[str, bytes], None]]:
        with self.files.storing_ahead() as put:
            yield put

    def put_file(self, content_id: str, source: Path) -> str:
        return self.files.put_file(content_id, source)

    def read(self, input_id: str) -> bytes:
        return self.files.read(input_id)

    def cached_crop(self, input_id: str, key: str, cut: Callable[[bytes], bytes]) -> bytes:
        return self.files.cached_crop(input_id, key, cut)

    def remove(self, input_id: str) -> dict[str, int]:
        return self.files.remove(input_id)
