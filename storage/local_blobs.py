"""Blobs in a local folder: `<root>/<key>`, each written to a temporary file beside it and renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from storage.blobs import BlobBackend, BlobInfo, BlobStoreError, checked_key


@dataclass(frozen=True)
class LocalBlobs:
    root: Path

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        return self.root / checked_key(key, self.location)

    def url(self, key: str) -> str:
        return str(self.path(key))

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def _write(self, key: str, write: Callable[[BinaryIO], object]) -> None:
        target = self.path(key)
        tmp = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            with os.fdopen(fd, "wb") as handle:
                write(handle)
            os.replace(tmp, target)
        except OSError as error:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise BlobStoreError(f"{error.strerror or error}") from None

    def put(self, key: str, data: bytes) -> None:
        self._write(key, lambda handle: handle.write(data))

    def put_file(self, key: str, source: Path) -> None:
        with source.open("rb") as incoming:
            self.put_stream(key, incoming)

    def put_stream(self, key: str, incoming: BinaryIO) -> None:
        self._write(key, lambda handle: shutil.copyfileobj(incoming, handle, 1 << 20))

    def read(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise KeyError(f"The store {self.root} holds no {key}.") from None

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise KeyError(f"The store {self.root} holds no {key}.") from None

    def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        parent = self.path(key).parent
        with contextlib.suppress(OSError):  # an emptied folder goes too (another may hold files: then it stays)
            while parent != self.root:
                parent.rmdir()
                parent = parent.parent
        return True

    def listing(self, prefix: str = "") -> Iterator[BlobInfo]:
        start = self.root / prefix.rpartition("/")[0]  # the deepest folder the prefix names whole
        if not start.is_dir():
            return
        for path in sorted(start.rglob("*")):
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix) and path.is_file() and not path.name.startswith(".incoming-"):
                stat = path.stat()
                yield BlobInfo(key, stat.st_size, f"{stat.st_mtime_ns:x}-{stat.st_size:x}", stat.st_mtime)


LOCAL = BlobBackend("", "a folder on this machine (the default: under the home)",
                    lambda location, _wait_s: LocalBlobs(Path(location).expanduser()))
