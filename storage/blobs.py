"""Blobs: bytes under keys, in a local folder or an S3-compatible bucket, behind one interface.

A location names the store: a folder path (the default, under the home) or `s3://bucket/prefix`. Every write is
whole or not at all (a folder: a temporary file renamed into place; a bucket: an object appears only when its
upload completes), reads stream, and a store that cannot be used raises `BlobStoreError` with one sentence that
names it. A new backend is one module declaring a `BlobBackend` and one line in `backends` below."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from core.locations import is_remote


class BlobStoreError(OSError):
    """A store that cannot be read or written: the message names it and says why; `advice` what to do."""

    def __init__(self, message: str, advice: str = "free space or make it writable") -> None:
        super().__init__(message)
        self.advice = advice

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob as a listing shows it: its key (relative to the store), size and entity tag (a bucket's
    ETag; a folder's modification time and size), which change whenever the bytes do."""

    key: str
    size: int
    etag: str
    modified: float  # when it was last written (epoch seconds)


class BlobStore(Protocol):
    @property
    def location(self) -> str:
        """What the store is called in messages: a folder path or s3://bucket/prefix."""

    def url(self, key: str) -> str:
        """Where `key` is, as a path or an s3:// URL (recorded beside the rows that refer to it)."""

    def exists(self, key: str) -> bool: ...

    def local_path(self, key: str) -> Path | None:
        """The file holding `key` when the store is a folder on this machine; None for a remote store."""

    def put(self, key: str, data: bytes) -> None:
        """Store `data` at `key`, replacing what was there, whole or not at all."""

    def put_file(self, key: str, source: Path) -> None:
        """Store a file's bytes at `key` without holding them in memory, whole or not at all."""

    def read(self, key: str) -> bytes:
        """The bytes at `key`; KeyError when there are none."""

    def open(self, key: str) -> BinaryIO:
        """The bytes at `key` as a stream (closed by the caller); KeyError when there are none."""

    def delete(self, key: str) -> bool:
        """Remove `key`; False when it was not there."""

    def listing(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Every blob whose key starts with `prefix`, in key order."""


def checked_key(key: str, location: str) -> str:
    """`key` when it names a blob inside the store: relative, and never climbing out of it."""
    if not key or key.startswith("/") or ".." in key.split("/"):
        raise KeyError(f"{key!r} is not a key of the store {location}.")
    return key


@dataclass(frozen=True)
class BlobBackend:
    scheme: str  # the location's URL scheme ("" for a plain path)
    description: str
    open_store: Callable[[str, float], BlobStore]  # (location, seconds to wait for a store that does not answer)


def backends() -> dict[str, BlobBackend]:
    """The registry, by scheme (imported when first used: the backends import this module's interface)."""
    from storage.local_blobs import LOCAL
    from storage.s3_blobs import S3

    return {backend.scheme: backend for backend in (LOCAL, S3)}


def local_copy(store: BlobStore, key: str, cache: Path) -> Path:
    """A file on this machine holding the blob at `key`: the store's own in a folder; from a remote store, a copy
    fetched once into `cache` (keys are content hashes or never rewritten, so a copy never goes stale).
    KeyError when the store holds no such blob."""
    local = store.local_path(key)
    if local is not None:
        if not local.is_file():
            raise KeyError(f"The store {store.location} holds no {key}.")
        return local
    from storage.local_blobs import LocalBlobs

    cached = LocalBlobs(cache)
    if not cached.exists(key):
        with store.open(key) as body:
            cached.put_stream(key, body)
    return cached.path(key)


def local_file(location: str, cache: Path, wait_s: float = 60.0) -> Path:
    """The file `location` names on this machine: a path as it is; an s3://bucket/key URL fetched once into
    `cache/<bucket>/<key>` (what a model that lives in a team's bucket is loaded from)."""
    if not is_remote(location):
        return Path(location).expanduser()
    scheme, rest = location.split("://", 1)
    bucket, _, key = rest.partition("/")
    return local_copy(blob_store(f"{scheme}://{bucket}", wait_s), key, cache / bucket)


def blob_store(location: str | Path, wait_s: float = 60.0) -> BlobStore:
    """The store at `location`: a folder path, or scheme://... for a backend in the registry; one that stops
    answering (a server restarting) is waited for up to `wait_s`."""
    text = str(location)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    known_backends = backends()
    if scheme not in known_backends:
        known = ", ".join(f"{name}://" for name in known_backends if name)
        raise BlobStoreError(f"{text} is not a store autoannotate can use: give a folder path or one of {known}.")
    return known_backends[scheme].open_store(text, wait_s)
