"""Ingesting a batch of inbox files: images checked as they are, videos sampled into frames; every usable image
(file or frame) handed to `keep` once and the batch holding none of their bytes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from core.image_checks import InspectedImage, Rejection, inspect_files
from core.video import VIDEO_SUFFIXES, SampledVideo, VideoRule, sample_video


@dataclass(frozen=True)
class InspectedBatch:
    """The batch's usable images (a video frame's path is `VIDEO#frame=N`), its rejections, and its videos (their
    frames' bytes already handed over)."""

    accepted: list[tuple[Path, InspectedImage]] = field(default_factory=list)
    rejected: list[tuple[Path, Rejection]] = field(default_factory=list)
    videos: list[tuple[Path, SampledVideo]] = field(default_factory=list)


def frame_path(video: Path, index: int) -> Path:
    """The source a video frame is recorded under: the video's path and the frame's index."""
    return Path(f"{video}#frame={index}")


def inspect_batch(files: list[Path], max_pixels: int, rule: VideoRule, keep: Callable[[InspectedImage], object],
                  keep_video: Callable[[Path, str], object], log: Callable[[str], object] | None = None
                  ) -> InspectedBatch:
    """Check every file: images as `inspect_files` does, videos by sampling their frames (`keep_video` stores
    the video itself); one bad file never stops the others."""
    videos = [path for path in files if path.suffix.lower() in VIDEO_SUFFIXES]
    accepted, rejected = inspect_files([path for path in files if path not in set(videos)], max_pixels, keep, log)
    sampled: list[tuple[Path, SampledVideo]] = []
    for path in videos:
        try:
            video = sample_video(path, rule)
        except (ValueError, OSError) as error:
            rejected.append((path, Rejection("not_a_video" if isinstance(error, ValueError) else "unreadable",
                                             str(error))))
            continue
        keep_video(path, video.video_id)
        for frame in video.frames:
            image = InspectedImage(frame.input_id, frame.png, frame.width, frame.height, "PNG", len(frame.png))
            if image.width * image.height > max_pixels:
                rejected.append((frame_path(path, frame.index), Rejection(
                    "too_many_pixels", f"{path.name} has {image.width}x{image.height} frames, more pixels than the "
                                       f"limit of {max_pixels} (inbox max_pixels).")))
                break
            keep(image)
            accepted.append((frame_path(path, frame.index), replace(image, data=None)))
        sampled.append((path, replace(video, frames=[replace(f, png=b"") for f in video.frames])))
        if log:
            log(f"{path.name}: {video.decoded} frames decoded, {len(video.frames)} kept"
                + (f"; {video.stopped}" if video.stopped else ""))
    return InspectedBatch(accepted, rejected, sampled)
