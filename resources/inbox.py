"""The inbox as a Dagster resource: its folder or bucket prefix and the batch manifests
(`storage.inbox.BatchManifests`), how long a file must settle, and the pixel limit for ingestion."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from core.image_checks import DEFAULT_MAX_PIXELS
from core.locations import is_remote
from core.video import VideoRule
from storage.blobs import blob_store
from storage.inbox import BatchManifests
from storage.s3_blobs import BucketObject
from storage.urls import UrlFetcher


class Inbox(dg.ConfigurableResource):
    """Where images arrive, how long they must settle, and the pixel limit for ingestion."""

    path: str  # a folder, or a bucket prefix (s3://bucket/prefix)
    batches: str  # where batch manifests are kept: a folder, or s3://bucket/prefix (every worker reads them)
    settle_seconds: float = 10.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    video_fps: float = 2.0
    video_max_frames: int = 10_000
    video_skip_similar: float = 0.95
    downloads_dir: str = ""
    allow_private_urls: bool = False
    url_max_bytes: int = 200_000_000
    url_timeout_s: float = 30.0
    url_deadline_s: float = 60.0
    store_wait_s: float = 60.0  # a bucket (of the inbox or the manifests) that stops answering is waited for

    @property
    def url_fetcher(self) -> UrlFetcher:
        return UrlFetcher(self.allow_private_urls, self.url_max_bytes, self.url_timeout_s,
                          deadline_s=self.url_deadline_s, store_wait_s=self.store_wait_s)

    @property
    def video_rule(self) -> VideoRule:
        return VideoRule(self.video_fps, self.video_max_frames, self.video_skip_similar)

    @property
    def is_bucket(self) -> bool:
        return is_remote(self.path)

    @property
    def manifests(self) -> BatchManifests:
        return BatchManifests(self.path, blob_store(self.batches, self.store_wait_s))

    def has_batch(self, batch: str) -> bool:
        return self.manifests.has_batch(batch)

    def write_batch(self, files: list[str], key: str | None = None, root: Path | None = None) -> str:
        return self.manifests.write_batch(files, key, root)

    def pinned_batches(self) -> list[str]:
        return self.manifests.batches()

    def pinned_signatures(self, except_batch: str | None = None) -> dict[Path, list[int] | None]:
        return self.manifests.pinned_signatures(except_batch)

    def batch_files(self, batch: str) -> tuple[list[Path], list[BucketObject]]:
        return self.manifests.batch_files(batch)
