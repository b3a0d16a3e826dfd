"""The inbox folder and the batch manifests that pin which files make up a batch."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.locations import is_remote
from storage.blobs import BlobStore
from storage.s3_blobs import BucketObject

IGNORED_SUFFIXES = (".part", ".tmp", "~", ".crdownload")


def is_ignored_name(name: str) -> bool:
    """Hidden and partial-download files are never ingested."""
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES)


def list_inbox_files(inbox: Path) -> list[Path]:
    """Every candidate file under `inbox`, recursively, sorted; hidden folders are skipped."""
    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(inbox):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(folder) / name for name in filenames if not is_ignored_name(name))
    return sorted(found)


def file_signature(path: Path) -> list[int]:
    """Size and modification time (ns): what tells a file still being written, or changed since it was taken."""
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def is_taken(pinned: dict[Path, list[int] | None], path: Path, signature: list[int]) -> bool:
    """Whether a batch already took the file as it is now (a manifest from before signatures were recorded takes
    the path for good); a file changed since is new again (a file a camera finished after a run rejected it)."""
    return path in pinned and pinned[path] in (None, signature)


def place_in_inbox(inbox: Path, name: str, data: bytes) -> Path:
    """`data` as the inbox file `name`, settled (the next run takes it now): written beside and renamed over, so
    a name planted there (a symlink) is replaced, never written through."""
    inbox.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=inbox, prefix=".placing-", delete=False) as staged:
        staged.write(data)
    os.utime(staged.name, (0, 0))
    os.replace(staged.name, inbox / name)
    return inbox / name


def batch_key_for(files: list[str], now: datetime) -> str:
    """A readable, unique partition key: time of creation plus a digest of the file list."""
    digest = hashlib.sha256("\n".join(sorted(files)).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{now.strftime('%Y%m%dT%H%M%S')}-{digest}"


class InboxGoneError(RuntimeError):
    """The inbox folder vanished while a batch was read from it."""


@dataclass(frozen=True)
class BatchManifests:
    """Which files make up each batch: a manifest per batch (`<batch>.json`) in `blobs`, a folder or a bucket that
    every machine running batches reads (a worker of a team has no shared folder). `inbox` is where the files
    are: a folder (names relative to it), or a bucket prefix (keys relative to it, each with the ETag it was
    taken at: `key#etag=...`)."""

    inbox: str
    blobs: BlobStore

    @staticmethod
    def key(batch: str) -> str:
        return f"{batch}.json"

    def has_batch(self, batch: str) -> bool:
        return self.blobs.exists(self.key(batch))

    def write_batch(self, files: list[str], key: str | None = None, root: Path | None = None) -> str:
        """Pin `files` (relative to `root`: the inbox, or the folder of an imported dataset) as a batch and
        return its key."""
        key = key or batch_key_for(files, datetime.now(UTC))
        where = str(root or self.inbox)
        signatures = {}
        if not is_remote(where):
            for name in sorted(files):
                with contextlib.suppress(OSError):  # gone already: the batch keeps the name, ingestion says so
                    signatures[name] = file_signature(Path(where) / name)
        self.blobs.put(self.key(key), json.dumps({"batch": key, "inbox": where, "files": sorted(files),
                                                  "signatures": signatures}, indent=1).encode())
        return key

    def batches(self) -> list[str]:
        """Every batch pinned so far, oldest first (keys start with their UTC time)."""
        return [info.key.removesuffix(".json") for info in self.blobs.listing()
                if "/" not in info.key and info.key.endswith(".json")]

    def manifest(self, batch: str) -> dict[str, Any]:
        try:
            return json.loads(self.blobs.read(self.key(batch)))
        except KeyError:
            raise FileNotFoundError(f"Batch {batch} has no manifest in {self.blobs.location}; it was not created by "
                                    "the sensor or the CLI.") from None

    def pinned_signatures(self, except_batch: str | None = None) -> dict[Path, list[int] | None]:
        """Every file of a folder inbox any batch (but `except_batch`) has pinned, by the CLI or the sensor, with
        its size and mtime then (None in manifests older than signatures): the inbox's one record of what was
        taken."""
        pinned: dict[Path, list[int] | None] = {}
        for batch in self.batches():
            if batch == except_batch:
                continue
            manifest = self.manifest(batch)
            if not is_remote(manifest["inbox"]):
                signatures = manifest.get("signatures", {})
                pinned.update({Path(manifest["inbox"]) / name: signatures.get(name) for name in manifest["files"]})
        return pinned

    def batch_files(self, batch: str) -> tuple[list[Path], list[BucketObject]]:
        """What `batch` pinned: the absolute paths of a folder inbox's files, or a bucket inbox's objects (each
        as it was taken: its ETag)."""
        manifest = self.manifest(batch)
        if is_remote(manifest["inbox"]):
            return [], [BucketObject.pinned(manifest["inbox"], name) for name in manifest["files"]]
        return [Path(manifest["inbox"]) / name for name in manifest["files"]], []
