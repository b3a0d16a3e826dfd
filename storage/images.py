"""Content-addressed image store: every distinct byte string is stored once, by sha256, in a blob store (a folder,
or a bucket: `storage.blobs`)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from storage.blobs import BlobStore, BlobStoreError, local_copy

_INPUT_ID = re.compile(r"^[0-9a-f]{64}$")


class ImageStoreError(RuntimeError):
    """The image store cannot be written; the message names it and says why."""


@dataclass(frozen=True)
class ContentStore:
    """Images at `<first two hex digits>/<sha256>` and their cut-outs at `crops/<same>/<key>.jpg` in `blobs`;
    never addressed by a client path."""

    blobs: BlobStore
    cache: Path | None = None  # where images of a remote store are kept when a file is needed (an export)

    @staticmethod
    def key_for(input_id: str) -> str:
        if not _INPUT_ID.match(input_id):
            raise KeyError(f"{input_id!r} is not an input id (64 lowercase hex digits).")
        return f"{input_id[:2]}/{input_id}"

    def location_of(self, input_id: str) -> str:
        """Where the image's bytes are: a path, or an s3:// URL."""
        return self.blobs.url(self.key_for(input_id))

    def path_for(self, input_id: str) -> Path:
        """A file on this machine holding the image: the store's own in a folder; from a bucket, a copy fetched
        once into `cache` (what an export links its images from)."""
        key = self.key_for(input_id)
        if self.cache is None and self.blobs.local_path(key) is None:
            raise ImageStoreError(f"The image store {self.blobs.location} is remote and has no cache folder.")
        try:
            return local_copy(self.blobs, key, self.cache or Path("."))  # a folder store's own file needs no cache
        except KeyError:
            raise KeyError(f"No stored image has the id {input_id}.") from None

    def put(self, input_id: str, data: bytes) -> str:
        """Store bytes under their id; whole or not at all, and a no-op when they are already there. A full,
        read-only or unreachable store raises `ImageStoreError` naming it."""
        key = self.key_for(input_id)
        try:
            if not self.blobs.exists(key):
                self.blobs.put(key, data)
        except BlobStoreError as error:
            raise ImageStoreError(
                f"The image store {self.blobs.location} cannot take another image ({error}); {error.advice}, then "
                "run again: nothing of this batch was written to the database.") from None
        return self.blobs.url(key)

    @contextmanager
    def storing_ahead(self, workers: int = 8, max_bytes: int = 64 << 20) -> Iterator[Callable[[str, bytes], None]]:
        """`put` for many images: in a bucket on worker threads, at most `max_bytes` in flight (a bucket takes
        each put in ~15 ms, so one after another they would take as long as inference); in a folder inline.
        Every put is done when the block ends, or the first failure is raised then (no row refers to an image
        before its block has ended, so none can refer to one that is not stored)."""
        if self.blobs.local_path(self.key_for("0" * 64)) is not None:
            def put_here(input_id: str, data: bytes) -> None:
                self.put(input_id, data)

            yield put_here
            return
        turns = threading.Condition()
        pending = [0]  # bytes handed to the pool and not stored yet
        futures: list[Future[str]] = []

        def finished(size: int) -> None:
            with turns:
                pending[0] -= size
                turns.notify_all()

        with ThreadPoolExecutor(workers, thread_name_prefix="image-store") as pool:
            def put_ahead(input_id: str, data: bytes) -> None:
                size = len(data)
                with turns:
                    turns.wait_for(lambda: pending[0] == 0 or pending[0] + size <= max_bytes)
                    pending[0] += size
                future = pool.submit(self.put, input_id, data)
                future.add_done_callback(lambda _: finished(size))
                futures.append(future)

            try:
                yield put_ahead
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            for future in futures:
                future.result()

    def put_file(self, content_id: str, source: Path) -> str:
        """Store a file (a video) under its content id without holding it in memory; a no-op when it is there."""
        key = self.key_for(content_id)
        try:
            if not self.blobs.exists(key):
                self.blobs.put_file(key, source)
        except BlobStoreError as error:
            raise ImageStoreError(f"The image store {self.blobs.location} cannot take {source.name} ({error}); "
                                  f"{error.advice}, then run again.") from None
        return self.blobs.url(key)

    def read(self, input_id: str) -> bytes:
        try:
            return self.blobs.read(self.key_for(input_id))
        except KeyError:
            raise KeyError(f"No stored image has the id {input_id}.") from None

    def crop_key(self, input_id: str, key: str) -> str:
        """Where a cut-out of the image is cached (`key` names the region and size)."""
        return f"crops/{self.key_for(input_id)}/{key}.jpg"

    def cached_crop(self, input_id: str, key: str, cut: Callable[[bytes], bytes]) -> bytes:
        """The cut-out `key` of the image: cut from the stored bytes the first time, then read from the cache."""
        crop = self.crop_key(input_id, key)
        try:
            return self.blobs.read(crop)
        except KeyError:
            pass
        data = cut(self.read(input_id))
        self.blobs.put(crop, data)
        return data

    def remove(self, input_id: str) -> dict[str, int]:
        """Remove the image's bytes and every cached cut-out of it; returns how many blobs of each went."""
        crops = [info.key for info in self.blobs.listing(f"crops/{self.key_for(input_id)}/")]
        for crop in crops:
            self.blobs.delete(crop)
        return {"image_files": int(self.blobs.delete(self.key_for(input_id))), "crop_files": len(crops)}
