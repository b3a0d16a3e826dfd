"""Ingesting a batch of inbox files: images checked as they are, videos sampled into frames; every usable image
(file or frame) handed to `keep` once and the batch holding none of their bytes."""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.image_checks import URL_REFUSALS, InspectedImage, Rejection, inspect_files, inspect_image_bytes
from core.terminal import name_refusal, name_safe
from core.video import VIDEO_SUFFIXES, SampledVideo, VideoRule, VideoTooLarge, sample_video
from services.ports import UnitsOfWork
from storage.inbox import place_in_inbox
from storage.s3_blobs import BucketObject
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
                  fetcher: UrlFetcher | None = None, downloads: Path | None = None,
                  objects: Sequence[BucketObject] = ()) -> InspectedBatch:
    """Check every file: images as `inspect_files` does, videos by sampling their frames (`keep_video` stores
    the video itself), URL lists by fetching each URL, and a bucket inbox's `objects` by reading each (with
    `fetcher`, into `downloads`), checking what came; one bad file or URL never stops the others."""
    refused_names = {path: refusal for path in files if (refusal := name_refusal(str(path)))}
    files = [path for path in files if path not in refused_names]
    lists = [path for path in files if is_url_list(path)]
    videos = [path for path in files if path.suffix.lower() in VIDEO_SUFFIXES]
    not_images = set(videos) | set(lists)  # built once: a batch may hold thousands of files
    images = [path for path in files if path not in not_images]
    accepted, rejected = inspect_files(images, max_pixels, keep, log)
    batch = InspectedBatch(list(accepted), list(rejected))
    batch.rejected.extend((name_safe(str(path)), Rejection("bad_name", why)) for path, why in refused_names.items())
    for path in videos:
        _add_video(batch, path, str(path), path.name, rule, max_pixels, keep, keep_video, log)
    urls: list[str] = []
    for path in lists:
        try:
            urls.extend(read_url_list(path))
        except (OSError, UnicodeDecodeError, csv.Error) as error:  # one unreadable list never stops the others
            why = "is not UTF-8 text" if isinstance(error, UnicodeDecodeError) else f"cannot be read ({error})"
            batch.rejected.append((path, Rejection("unreadable", f"The URL list {path.name} {why}; nothing it "
                                                                 "names was fetched.")))
    urls = list(dict.fromkeys(urls))
    if urls or objects:
        fetched = (fetcher or UrlFetcher()).fetch_all(urls, downloads or Path("downloads"), objects)
        for url, result in fetched.items():
            if isinstance(result, UrlRefused):
                batch.rejected.append((url, url_rejection(result)))
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


def queue_refused_urls(store: UnitsOfWork, inbox: Path, allow_private: bool, every: bool) -> list[str]:
    """The refused URLs worth fetching again, as a list placed in the inbox (the run then takes it as it takes
    any list): with `every` (`run --retry-refused`) each URL whose latest word is a refusal, else those refused
    for a loopback or private address once `allow_private` is on. The list is named by what it retries, so a run
    that stops before ingesting it leaves it to the next run rather than queueing it twice."""
    codes = URL_REFUSALS if every else ("url_private",) if allow_private else ()
    refused = store.read(lambda s: s.inputs.still_refused_urls(codes)) if codes else []
    if not refused:
        return []
    digest = hashlib.sha256("".join(f"{uri}\t{at.isoformat()}\n" for uri, at in refused).encode()).hexdigest()
    name = f"retry-refused-{digest[:12]}.urls"
    if os.path.lexists(inbox / name):
        return []
    place_in_inbox(inbox, name, "".join(f"{uri}\n" for uri, _ in refused).encode())
    return [uri for uri, _ in refused]


def url_rejection(refused: UrlRefused) -> Rejection:
    """A refused URL's rejection, its sentence saying how it is fetched again where that may help."""
    if refused.code == "url_private":
        return Rejection(refused.code, f"{refused} A run with AUTOANNOTATE_ALLOW_PRIVATE_URLS=1 fetches it again.")
    advice = " `autoannotate run --retry-refused` fetches it again." if refused.retry else ""
    return Rejection(refused.code, f"{refused}{advice}")


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
