"""Ingesting a batch of inbox files: images checked as they are, videos sampled into frames; every usable image
(file or frame) handed to `keep` once and the batch holding none of their bytes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.image_checks import InspectedImage, Rejection, inspect_files, inspect_image_bytes
from core.terminal import name_refusal, terminal_safe
from core.video import VIDEO_SUFFIXES, SampledVideo, VideoRule, VideoTooLarge, sample_video
from storage.urls import UrlFetcher, UrlRefused, is_url_list, read_url_list


@dataclass(frozen=True)
class InspectedBatch:
    """The batch's usable images by source (a file's path, a URL; a video frame's is `VIDEO#frame=N`), its
    rejections, and its videos (their frames' bytes already handed over)."""

    accepted: list[tuple[Path | str, InspectedImage]] = field(default_factory=list)
    rejected: list[tuple[Path | str, Rejection]] = field(default_factory=list)
    videos: list[tuple[Path | str, SampledVideo]] = field(default_factory=list)


def frame_source(video: str, index: int) -> str:
    """The source a video frame is recorded under: the video's path or URL and the frame's index."""
    return f"{video}#frame={index}"


def inspect_batch(files: list[Path], max_pixels: int, rule: VideoRule, keep: Callable[[InspectedImage], object],
                  keep_video: Callable[[Path, str], object], log: Callable[[str], object] | None = None,
                  fetcher: UrlFetcher | None = None, downloads: Path | None = None, urls: list[str] | None = None
                  ) -> InspectedBatch:
    """Check every file: images as `inspect_files` does, videos by sampling their frames (`keep_video` stores
    the video itself), URL lists and `urls` (a bucket inbox's objects) by fetching each URL (with `fetcher`, into
    `downloads`) and checking what came; one bad file or URL never stops the others."""
    refused_names = {path: refusal for path in files if (refusal := name_refusal(str(path)))}
    files = [path for path in files if path not in refused_names]
    lists = [path for path in files if is_url_list(path)]
    videos = [path for path in files if path.suffix.lower() in VIDEO_SUFFIXES]
    not_images = set(videos) | set(lists)  # built once: a batch may hold thousands of files
    images = [path for path in files if path not in not_images]
    accepted, rejected = inspect_files(images, max_pixels, keep, log)
    batch = InspectedBatch(list(accepted), list(rejected))
    batch.rejected.extend((terminal_safe(str(path)), Rejection("bad_name", why)) for path, why in refused_names.items())
    for path in videos:
        _add_video(batch, path, str(path), path.name, rule, max_pixels, keep, keep_video, log)
    urls = list(dict.fromkeys([*(urls or []), *(url for path in lists for url in read_url_list(path))]))
    if urls:
        fetched = (fetcher or UrlFetcher()).fetch_all(urls, downloads or Path("downloads"))
        for url, result in fetched.items():
            if isinstance(result, UrlRefused):
                batch.rejected.append((url, Rejection("url_refused", str(result))))
            elif result.suffix == ".video":
                _add_video(batch, result, url, url, rule, max_pixels, keep, keep_video, log)
            else:
                checked = inspect_image_bytes(url, result.read_bytes(), max_pixels)
                if isinstance(checked, Rejection):
                    batch.rejected.append((url, checked))
                else:
                    keep(checked)
                    batch.accepted.append((url, replace(checked, data=None)))
    return batch


def _add_video(batch: InspectedBatch, path: Path, source: str, name: str, rule: VideoRule, max_pixels: int,
               keep: Callable[[InspectedImage], object], keep_video: Callable[[Path, str], object],
               log: Callable[[str], object] | None) -> None:
    """Sample one video (`path`, recorded under `source`, called `name` in sentences: a file's name, a URL)."""
    try:
        video = sample_video(path, rule, max_pixels)
    except (ValueError, OSError) as error:
        code = ("too_many_pixels" if isinstance(error, VideoTooLarge)
                else "not_a_video" if isinstance(error, ValueError) else "unreadable")
        batch.rejected.append((source, Rejection(code, str(error).replace(path.name, name))))
        return
    keep_video(path, video.video_id)
    for frame in video.frames:
        image = InspectedImage(frame.input_id, frame.png, frame.width, frame.height, "PNG", len(frame.png))
        keep(image)  # no larger than max_pixels: `sample_video` refused such a video before decoding it
        batch.accepted.append((frame_source(source, frame.index), replace(image, data=None)))
    batch.videos.append((source, replace(video, frames=[replace(f, png=b"") for f in video.frames])))
    if log:
        log(f"{name}: {video.decoded} frames decoded, {len(video.frames)} kept"
            + (f"; {video.stopped}" if video.stopped else ""))
