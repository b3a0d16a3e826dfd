"""Content digests: what names a stored file (an image, a video, a model's weights)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO


def file_sha256(path: Path) -> str:
    """The sha256 of a file (an image, a video, weights)."""
    with path.open("rb") as handle:
        return stream_sha256(handle)


def stream_sha256(handle: BinaryIO) -> str:
    """The sha256 of what a binary stream holds (a file, or an object a bucket sends), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()
