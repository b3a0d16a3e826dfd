"""What the use cases are handed, by what it must do: the Dagster resources satisfy these, and so would a plain
object in a script or a test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from store import Session

T = TypeVar("T")


class UnitsOfWork(Protocol):
    """The store: one unit of work per transaction (`store.Database`, the `DuckDBStore` resource)."""

    def read(self, work: Callable[[Session], T]) -> T: ...

    def write(self, work: Callable[[Session], T]) -> T: ...


class StoredImages(Protocol):
    """The content-addressed image store."""

    def path_for(self, input_id: str) -> Path: ...

    def location_of(self, input_id: str) -> str: ...

    def put(self, input_id: str, data: bytes) -> str: ...

    def read(self, input_id: str) -> bytes: ...

    def remove(self, input_id: str) -> dict[str, int]: ...


class VersionFiles(Protocol):
    """Where version manifests live, and how a version is split for training."""

    @property
    def val_ratio(self) -> float: ...

    @property
    def test_ratio(self) -> float: ...

    def write_manifest(self, task: str, day: str, text: str) -> str: ...


class BatchPins(Protocol):
    """The inbox's batch manifests: files pinned as a batch the next run predicts."""

    def write_batch(self, files: list[str], key: str | None = None, root: Path | None = None) -> str: ...
