"""The inbox folder and the batch manifests that pin which files make up a batch."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

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


def batch_key_for(files: list[str], now: datetime) -> str:
    """A readable, unique partition key: time of creation plus a digest of the file list."""
    digest = hashlib.sha256("\n".join(sorted(files)).encode()).hexdigest()[:8]
    return f"{now.strftime('%Y%m%dT%H%M%S')}-{digest}"


class InboxGoneError(RuntimeError):
    """The inbox folder vanished while a batch was read from it."""


@dataclass(frozen=True)
class InboxFolder:
    """Where images arrive (`path`) and the batch manifests pinning which of them make up each batch."""

    path: Path
    batches_dir: Path

    def manifest_path(self, batch: str) -> Path:
        return self.batches_dir / f"{batch}.json"

    def write_batch(self, files: list[str], key: str | None = None, root: Path | None = None) -> str:
        """Pin `files` (paths relative to `root`: the inbox, or the folder of an imported dataset) as a batch and
        return its key."""
        key = key or batch_key_for(files, datetime.now(UTC))
        root = root or self.path
        target = self.manifest_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".json.tmp")
        signatures = {}
        for name in sorted(files):
            with contextlib.suppress(OSError):  # gone already: the batch keeps the name, ingestion says so
                signatures[name] = file_signature(root / name)
        tmp.write_text(json.dumps({"batch": key, "inbox": str(root), "files": sorted(files),
                                   "signatures": signatures}, indent=1))
        os.replace(tmp, target)
        return key

    def batches(self) -> list[str]:
        """Every batch pinned so far, oldest first (keys start with their UTC time)."""
        folder = self.batches_dir
        return sorted(path.stem for path in folder.glob("*.json")) if folder.is_dir() else []

    def pinned_signatures(self, except_batch: str | None = None) -> dict[Path, list[int] | None]:
        """Every file any batch (but `except_batch`) has pinned, by the CLI or the sensor, with its size and
        mtime then (None in manifests older than signatures): the inbox's one record of what was taken."""
        pinned: dict[Path, list[int] | None] = {}
        for batch in self.batches():
            if batch != except_batch:
                manifest = json.loads(self.manifest_path(batch).read_text())
                signatures = manifest.get("signatures", {})
                pinned.update({Path(manifest["inbox"]) / name: signatures.get(name) for name in manifest["files"]})
        return pinned

    def batch_files(self, batch: str) -> list[Path]:
        """The absolute paths pinned for `batch`."""
        target = self.manifest_path(batch)
        if not target.exists():
            raise FileNotFoundError(
                f"Batch {batch} has no manifest at {target}; it was not created by the sensor or the CLI."
            )
        manifest = json.loads(target.read_text())
        return [Path(manifest["inbox"]) / name for name in manifest["files"]]
