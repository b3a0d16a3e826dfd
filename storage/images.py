"""Content-addressed image store: every distinct byte string is stored once, by sha256."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

_INPUT_ID = re.compile(r"^[0-9a-f]{64}$")


class ImageStoreError(RuntimeError):
    """The image store cannot be written; the message names it and says why."""


@dataclass(frozen=True)
class ContentStore:
    """Images under `root/<first two hex digits>/<sha256>`; never addressed by a client path."""

    root: Path

    def path_for(self, input_id: str) -> Path:
        if not _INPUT_ID.match(input_id):
            raise KeyError(f"{input_id!r} is not an input id (64 lowercase hex digits).")
        return self.root / input_id[:2] / input_id

    def put(self, input_id: str, data: bytes) -> Path:
        """Store bytes under their id; atomic (a failed write leaves no partial file), and a no-op when they
        are already there. A full or read-only store raises `ImageStoreError` naming it."""
        target = self.path_for(input_id)
        if target.exists():
            return target
        tmp = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except OSError as error:
            if tmp:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            raise ImageStoreError(
                f"The image store {self.root} cannot take another image ({error.strerror or error}); free space or "
                "make it writable, then run again: nothing of this batch was written to the database.") from None
        return target

    def put_file(self, content_id: str, source: Path) -> Path:
        """Store a file (a video) under its content id without holding it in memory; a no-op when it is there."""
        target = self.path_for(content_id)
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as handle, source.open("rb") as incoming:
                shutil.copyfileobj(incoming, handle, 1 << 20)
            os.replace(tmp, target)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise ImageStoreError(f"The image store {self.root} cannot take {source.name} ({error.strerror or error})"
                                  "; free space or make it writable, then run again.") from None
        return target

    def read(self, input_id: str) -> bytes:
        path = self.path_for(input_id)
        if not path.exists():
            raise KeyError(f"No stored image has the id {input_id}.")
        return path.read_bytes()

    def crop_path(self, input_id: str, key: str) -> Path:
        """Where a cut-out of the image is cached (`key` names the region and size)."""
        return self.root / "crops" / self.path_for(input_id).relative_to(self.root) / f"{key}.jpg"

    def cached_crop(self, input_id: str, key: str, cut: Callable[[bytes], bytes]) -> bytes:
        """The cut-out `key` of the image: cut from the stored bytes the first time, then read from the cache."""
        path = self.crop_path(input_id, key)
        if path.exists():
            return path.read_bytes()
        data = cut(self.read(input_id))
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
        return data

    def remove(self, input_id: str) -> dict[str, int]:
        """Remove the image's bytes and every cached cut-out of it; returns how many files of each went."""
        crops = self.crop_path(input_id, "x").parent
        removed = {"image_files": 0, "crop_files": 0}
        if crops.is_dir():
            for path in crops.iterdir():
                path.unlink()
                removed["crop_files"] += 1
            crops.rmdir()
        with contextlib.suppress(FileNotFoundError):
            self.path_for(input_id).unlink()
            removed["image_files"] = 1
        return removed
