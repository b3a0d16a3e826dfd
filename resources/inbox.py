"""The inbox as a Dagster resource: its folder and batch manifests (`storage.inbox.InboxFolder`), how long a file
must settle, and the pixel limit for ingestion."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from core.image_checks import DEFAULT_MAX_PIXELS
from core.video import VideoRule
from storage.inbox import InboxFolder
from storage.urls import UrlFetcher


class Inbox(dg.ConfigurableResource):
    """Where images arrive, how long they must settle, and the pixel limit for ingestion."""

    path: str
    batches_dir: str
    settle_seconds: float = 10.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    video_fps: float = 2.0
    video_max_frames: int = 10_000
    video_skip_similar: float = 0.95
    downloads_dir: str = ""
    allow_private_urls: bool = False
    url_max_bytes: int = 200_000_000
    url_timeout_s: float = 30.0

    @property
    def url_fetcher(self) -> UrlFetcher:
        return UrlFetcher(self.allow_private_urls, self.url_max_bytes, self.url_timeout_s)

    @property
    def video_rule(self) -> VideoRule:
        return VideoRule(self.video_fps, self.video_max_frames, self.video_skip_similar)

    @property
    def files(self) -> InboxFolder:
        return InboxFolder(Path(self.path), Path(self.batches_dir))

    def manifest_path(self, batch: str) -> Path:
        return self.files.manifest_path(batch)

    def write_batch(self, files: list[str], key: str | None = None, root: Path | None = None) -> str:
        return self.files.write_batch(files, key, root)

    def batches(self) -> list[str]:
        return self.files.batches()

    def pinned_signatures(self, except_batch: str | None = None) -> dict[Path, list[int] | None]:
        return self.files.pinned_signatures(except_batch)

    def batch_files(self, batch: str) -> list[Path]:
        return self.files.batch_files(batch)
