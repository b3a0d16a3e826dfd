"""Videos in the inbox: frames sampled at a rate, near-identical consecutive frames skipped, each kept frame an
image (lossless PNG of its upright pixels) that remembers its video, frame index and time. Decoded with PyAV (a
maintained FFmpeg binding); a damaged video keeps the frames before the damage and says where it stopped."""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from core.digests import file_sha256

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm"}


@dataclass(frozen=True)
class VideoRule:
    """How frames are sampled from every video (AUTOANNOTATE_VIDEO_FPS, _MAX_FRAMES, _SKIP_SIMILAR): at most
    `fps` frames a second and `max_frames` a video; a sampled frame whose perceptual hash is more than
    `skip_similar` alike the last kept one is skipped (1.0 keeps every sampled frame)."""

    fps: float = 2.0
    max_frames: int = 10_000
    skip_similar: float = 0.95


@dataclass(frozen=True)
class VideoFrame:
    index: int  # in decoding order, from 0
    timestamp: float  # seconds from the start
    png: bytes
    width: int
    height: int

    input_id: str = ""  # sha256 of `png`, set by `sample_video`


@dataclass(frozen=True)
class SampledVideo:
    """What sampling one video kept, and what it decoded, sampled and skipped; `stopped` says where a damaged
    video ended (None when it decoded to its end)."""

    video_id: str  # sha256 of the file's bytes
    frames: list[VideoFrame] = field(default_factory=list)
    decoded: int = 0
    sampled: int = 0
    skipped_similar: int = 0
    stopped: str | None = None
    frame_rate: float | None = None
    duration: float | None = None


HASH_SIDE = 16  # a 256-bit hash: a 64-bit one calls a small object moving across a still scene "the same"


def perceptual_hash(image: Image.Image) -> int:
    """The difference hash: is each pixel of a 17x16 grey thumbnail brighter than its right neighbour."""
    small = np.asarray(image.convert("L").resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BILINEAR),
                       dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


def hash_similarity(a: int, b: int) -> float:
    """1 minus the share of the hash's bits that differ."""
    return 1.0 - bin(a ^ b).count("1") / (HASH_SIDE * HASH_SIDE)


class VideoTooLarge(ValueError):
    """A video whose frames have more pixels than the inbox takes: refused before its frames are decoded."""


def _frames(path: Path, info: dict[str, float | None], max_pixels: int | None
            ) -> Iterator[tuple[int, float, Image.Image]]:
    """Every frame of the first video stream, upright (its display matrix applied): index, time and image; `info`
    receives the stream's frame rate and the duration its header gives. Frames larger than `max_pixels` are refused
    from the stream's header, before any is decoded (and a frame that is larger than its header said, before it is
    converted)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info["rate"] = float(stream.average_rate) if stream.average_rate else None
        info["duration"] = (float(stream.duration * stream.time_base) if stream.duration and stream.time_base
                            else container.duration / 1_000_000 if container.duration else None)
        too_large(path, stream.codec_context.width or 0, stream.codec_context.height or 0, max_pixels)
        for index, frame in enumerate(container.decode(stream)):
            too_large(path, frame.width, frame.height, max_pixels)
            timestamp = float(frame.time) if frame.time is not None else index / (info["rate"] or 25.0)
            image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
            if frame.rotation:  # counterclockwise degrees, as PIL turns
                image = image.rotate(frame.rotation, expand=True)
            yield index, timestamp, image


def too_large(path: Path, width: int, height: int, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise VideoTooLarge(f"{path.name} has {width}x{height} frames, more pixels than the limit of {max_pixels} "
                            "(inbox max_pixels); none was decoded.")


# Frames decoded a kept frame at most: a video of millions of tiny frames ends (10 000 kept frames: 3 million).
DECODED_PER_KEPT_FRAME = 300


def sample_video(path: Path, rule: VideoRule, max_pixels: int | None = None) -> SampledVideo:
    """Decode `path` and keep the frames `rule` samples. Raises ValueError when it is no video at all
    (`VideoTooLarge` when its frames are larger than `max_pixels`); a video damaged part way keeps what decoded
    before and says where it stopped. Sampling steps by the frames' own times in one step each, whatever times a
    file claims (a last frame at 10^12 s costs what any frame costs), and decoding ends after a bounded count."""
    video_id = file_sha256(path)
    frames: list[VideoFrame] = []
    decoded = sampled = skipped = 0
    next_time, step = 0.0, 1.0 / rule.fps
    last_hash: int | None = None
    info: dict[str, float | None] = {"rate": None, "duration": None}
    stopped = None
    last_time = 0.0
    try:
        for index, timestamp, image in _frames(path, info, max_pixels):
            decoded += 1
            last_time = timestamp
            if decoded > rule.max_frames * DECODED_PER_KEPT_FRAME:
                stopped = (f"{path.name} has more than {decoded - 1} frames: decoding stopped there; the "
                           f"{len(frames)} frames kept before it stay.")
                break
            if timestamp + 1e-9 < next_time:
                continue
            next_time = (math.floor((timestamp + 1e-9) / step) + 1) * step  # the next sample time after this one
            sampled += 1
            fingerprint = perceptual_hash(image)
            if last_hash is not None and hash_similarity(fingerprint, last_hash) > rule.skip_similar:
                skipped += 1
                continue
            last_hash = fingerprint
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="PNG", compress_level=1)
            png = buffer.getvalue()
            frames.append(VideoFrame(index, round(timestamp, 6), png, image.width, image.height,
                                     hashlib.sha256(png).hexdigest()))
            if len(frames) >= rule.max_frames:
                break
    except VideoTooLarge:
        raise
    except Exception as error:  # PyAV raises its own errors for damaged data; none may lose the frames so far
        if decoded == 0:
            raise ValueError(f"{path.name} is not a video that can be decoded ({type(error).__name__}: "
                             f"{str(error).strip() or 'no detail'}).") from None
        stopped = (f"{path.name} is damaged after frame {decoded - 1}: decoding stopped there ({type(error).__name__}"
                   f"); the {len(frames)} frames kept before it stay.")
    if decoded == 0 and stopped is None:
        raise ValueError(f"{path.name} holds no video frames.")
    # A file cut short (a copy that did not finish) often decodes without an error: it ends before its header says.
    rate, duration = info["rate"], info["duration"]
    if stopped is None and len(frames) < rule.max_frames and duration and rate and \
            last_time + 1.5 / rate < duration:
        stopped = (f"{path.name} ends early: decoding stopped after frame {decoded - 1} at {last_time:.2f} s of the "
                   f"{duration:.2f} s its header gives; the {len(frames)} frames kept before it stay.")
    return SampledVideo(video_id, frames, decoded, sampled, skipped, stopped, rate, duration)
