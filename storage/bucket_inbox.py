"""An inbox that is a bucket prefix (`autoannotate run --inbox s3://bucket/prefix`). New and changed objects are
found by listing, against a record of the keys and ETags already handed to a run (not modification times); an
object is settled when it was written longer ago than the settle time, or its ETag and size did not change while
the run watched it. What is settled is pinned as the run's batch, each object by its key and the ETag it was listed
with (`key#etag=...`, read back as a `BucketObject`: no URL list can name one); ingestion fetches each through
boto3, refusing one whose bytes changed since."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from storage.blobs import BlobInfo, blob_store
from storage.inbox import is_ignored_name
from storage.s3_blobs import unpinned


@dataclass(frozen=True)
class BucketInbox:
    url: str  # s3://bucket/prefix
    record: Path  # key -> ETag of every object handed to a run (the cursor)

    @classmethod
    def in_home(cls, url: str, home: Path) -> BucketInbox:
        return cls(url.rstrip("/"), home / "bucket-inboxes" / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}.json")

    def handed_over(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.record.read_text()))
        except (OSError, ValueError):
            return {}

    def new_objects(self, settle_seconds: float, probe_s: float = 1.0) -> tuple[list[BlobInfo], list[BlobInfo]]:
        """Objects not handed over as they are now, settled; and those that changed while the run watched."""
        store, taken = blob_store(self.url), self.handed_over()
        seen = {info.key: info for info in store.listing()
                if not is_ignored_name(info.key.rsplit("/", 1)[-1]) and taken.get(info.key) != info.etag}
        young = [key for key, info in seen.items() if time.time() - info.modified < settle_seconds]
        changed: list[BlobInfo] = []
        if young:
            time.sleep(min(probe_s, settle_seconds))
            again = {info.key: (info.etag, info.size) for info in store.listing()}
            changed = [seen[key] for key in young if again.get(key) != (seen[key].etag, seen[key].size)]
        ready = [info for info in seen.values() if info not in changed]
        return ready, changed

    def record_taken(self, names: list[str]) -> None:
        """Remember the objects a batch pinned (`pinned_name`s), so that no later run takes them as they are."""
        taken = {**self.handed_over(), **dict(unpinned(name) for name in names)}
        self.record.parent.mkdir(parents=True, exist_ok=True)
        scratch = self.record.with_name(f".{self.record.name}.{os.getpid()}")
        scratch.write_text(json.dumps(taken, indent=1, sort_keys=True))
        os.replace(scratch, self.record)

