"""Decide whether one file is a usable image, without Dagster or DuckDB.

Every file's whole pixel stream is decoded (a truncated JPEG often opens fine and
fails only on decode): a JPEG at 1/8 scale, which still reads every byte of it at
half the cost of a full decode. Width and height are recorded after EXIF orientation,
and a file that is not usable becomes a `Rejection` with a sentence a user understands.
"""

from __future__ import annotations

import hashlib
import io
import math
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

SUPPORTED_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
SUPPORTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "BMP": "BMP", "WEBP": "WEBP", "TIFF": "TIFF"}
DEFAULT_MAX_PIXELS = 50_000_000
ORIENTATION_TAG = 0x0112
QUARTER_TURNS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
REJECTION_CODES = ["empty", "not_an_image", "corrupt", "unsupported_format", "too_many_pixels", "unreadable",
                   "not_a_file", "not_a_video", "url_refused", "url_private", "bad_name"]
URL_REFUSALS = ("url_refused", "url_private")  # `url_private`: a loopback or private address, allowed by a setting


def _unpatched_pil_open() -> Callable[[io.BytesIO], Image.Image]:
    """PIL's own `Image.open`. Ultralytics replaces it on import with one that, on a file PIL cannot
    identify, tries to install and import a HEIF plugin: a network call, and a wrong 'corrupt' verdict
    for a file that is simply not an image."""
    opener = Image.open
    if opener.__module__.startswith("ultralytics"):
        from ultralytics.utils import patches

        opener = patches._image_open
    return opener


_PIL_OPEN = _unpatched_pil_open()


@dataclass(frozen=True)
class InspectedImage:
    input_id: str  # sha256 of the file's bytes
    data: bytes | None  # None once `inspect_files` has handed them to `keep`: a batch never holds every file
    width: int  # after EXIF orientation
    height: int
    format: str
    byte_size: int


@dataclass(frozen=True)
class Rejection:
    code: str
    reason: str


def _pixels(value: int) -> str:
    return f"{value:,}".replace(",", " ")


# The fewest bytes a pixel of a format can take, far below any real image: a JPEG codes each 8x8 block of its
# first component in at least a bit (1/512 of a byte a pixel; 1/4096 leaves room for arithmetic coding), a PNG
# holds at least 1/8 of a byte a pixel (1-bit) deflated at most 1032:1. A header declaring more pixels than that is
# forged or damaged; decoding it would only invent the missing pixels (libjpeg fills them in gray).
# Signatures no other kind of file starts with (BMP's "BM" and WebP's "RIFF" are too short or shared to tell).
SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff", "TIFF": b"II*\x00"}
FEWEST_BYTES_PER_PIXEL = {"JPEG": 1 / 4096, "PNG": 1 / (2 * 8 * 1032)}  # PNG: half the bound, for margin


def inspect_image_bytes(name: str, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> InspectedImage | Rejection:
    """Check bytes that claim to be the image `name`; the sentence of a rejection names it."""
    if not data:
        return Rejection("empty", f"{name} is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Our own pixel limit below gives the user the numbers; PIL's would only raise.
            previous_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = _PIL_OPEN(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = previous_limit
    except UnidentifiedImageError:
        signed = next((kind for kind, signature in SIGNATURES.items() if data.startswith(signature)), None)
        if signed:  # PIL tells "no format" from "a damaged header" (a PNG whose IHDR fails its CRC) no better
            return Rejection("corrupt", f"{name} is a damaged {signed} image: its header cannot be read.")
        return Rejection("not_an_image", f"{name} is not an image: its bytes match no image format.")
    except Exception as error:
        return Rejection("corrupt", f"{name} is corrupt and cannot be opened ({error}).")
    with image:
        fmt = SUPPORTED_FORMATS.get(image.format or "")
        if fmt is None:
            return Rejection(
                "unsupported_format",
                f"{name} is a {image.format} image; supported formats are JPEG, PNG, BMP, WEBP and TIFF.",
            )
        pixels = image.width * image.height
        if pixels > max_pixels:
            return Rejection(
                "too_many_pixels",
                f"{name} has {image.width}x{image.height} = {_pixels(pixels)} pixels, more than the limit of "
                f"{_pixels(max_pixels)} (inbox max_pixels).",
            )
        fewest = math.ceil(pixels * FEWEST_BYTES_PER_PIXEL.get(fmt, 0))
        if len(data) < fewest:
            return Rejection("corrupt", f"{name} declares {image.width}x{image.height} pixels, more than its "
                                        f"{len(data)} bytes can hold (a {fmt} that size takes at least {fewest}): "
                                        "it is damaged or forged, and was not decoded.")
        try:
            width, height = image.size
            if image.getexif().get(ORIENTATION_TAG) in QUARTER_TURNS:
                width, height = height, width
            if fmt == "JPEG":
                image.draft(None, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
        except Exception as error:
            return Rejection("corrupt", f"{name} is truncated or corrupt and cannot be decoded ({error}).")
        return InspectedImage(hashlib.sha256(data).hexdigest(), data, width, height, fmt, len(data))


def inspect_image_file(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> InspectedImage | Rejection:
    """Read and check one file from the inbox."""
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        return Rejection(
            "unsupported_format",
            f"{path.name} has the unsupported file type '{path.suffix or '(none)'}'; supported: "
            + ", ".join(sorted(SUPPORTED_SUFFIXES)) + ".",
        )
    try:
        # A FIFO, socket or device is never opened: reading one would block or never end.
        if not stat.S_ISREG(path.stat().st_mode):
            return Rejection("not_a_file", f"{path.name} is not a regular file (a pipe, socket or device); "
                                           "skipped without opening it.")
        data = path.read_bytes()
    except OSError as error:
        return Rejection("unreadable", f"{path.name} could not be read ({error.strerror or error}).")
    return inspect_image_bytes(path.name, data, max_pixels)


def inspect_files(files: list[Path], max_pixels: int, keep: Callable[[InspectedImage], object],
                  log: Callable[[str], object] | None = None, every: int = 100
                  ) -> tuple[list[tuple[Path, InspectedImage]], list[tuple[Path, Rejection]]]:
    """Check every file and `keep` the good ones; one bad file never stops the others."""
    accepted, rejected = [], []
    for done, path in enumerate(files, start=1):
        result = inspect_image_file(path, max_pixels)
        if isinstance(result, Rejection):
            rejected.append((path, result))
        else:
            keep(result)
            accepted.append((path, replace(result, data=None)))
        if log and done % every == 0:
            log(f"inspected {done}/{len(files)} files")
    return accepted, rejected


class ImageTooLarge(ValueError):
    """An image that would decode to more pixels than a budget allows; the message gives both."""


def load_oriented_rgb(data: bytes, max_pixels: int | None = None) -> Image.Image:
    """Decode stored bytes the way ingestion measured them: EXIF orientation applied, RGB, every pixel at full
    scale (a reduced-scale JPEG decode would feed the model other pixels than Ultralytics' own `predict` sees,
    and every confidence a threshold is calibrated on would move). With `max_pixels` (what a page is served at),
    never more than that many pixels are decoded: a larger JPEG decodes at 1/2, 1/4 or 1/8 scale, anything else
    is `ImageTooLarge`, decided from the header."""
    with _PIL_OPEN(io.BytesIO(data)) as image:
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            scale = 2 ** math.ceil(math.log2(math.sqrt(width * height / max_pixels)))
            if image.format == "JPEG" and scale <= 8:
                image.draft("RGB", (math.ceil(width / scale), math.ceil(height / scale)))
            if image.size[0] * image.size[1] > max_pixels:
                raise ImageTooLarge(f"The image is {_pixels(width)} x {_pixels(height)} pixels, more than the "
                                    f"{_pixels(max_pixels)} this server decodes to show one "
                                    "(AUTOANNOTATE_MAX_PIXELS).")
        return ImageOps.exif_transpose(image).convert("RGB")


def load_oriented_bgr(data: bytes) -> np.ndarray:
    """`load_oriented_rgb` as models take arrays (BGR, contiguous), for the run and its preview alike. A JPEG of one
    or three channels decodes with OpenCV, as Ultralytics' own `predict` reads files: the same pixels as Pillow's,
    EXIF orientation applied, in about half the time (27 against 51 ms for a 3.4 MP photo here); anything else
    (CMYK, PNG, WebP, ...) through Pillow."""
    import cv2

    with _PIL_OPEN(io.BytesIO(data)) as header:  # reads the header only; a decompression bomb fails here
        fast = header.format == "JPEG" and header.mode in ("RGB", "L")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if fast else None
    if decoded is not None:
        return np.asarray(decoded)
    return np.ascontiguousarray(np.asarray(load_oriented_rgb(data))[:, :, ::-1])


def crop_region(width: int, height: int, box: tuple[float, float, float, float], margin: float = 0.1
                ) -> tuple[int, int, int, int]:
    """The pixel region (left, top, right, bottom) of `box` (shares of the image) with `margin` of its size around
    it, inside the image and at least one pixel wide and high."""
    x1, y1, x2, y2 = box
    pad_x, pad_y = (x2 - x1) * margin, (y2 - y1) * margin
    left, top = max(0, int((x1 - pad_x) * width)), max(0, int((y1 - pad_y) * height))
    return (left, top, min(width, max(left + 1, round((x2 + pad_x) * width))),
            min(height, max(top + 1, round((y2 + pad_y) * height))))


def crop_jpeg(data: bytes, box: tuple[float, float, float, float], size: int, margin: float = 0.1,
              max_pixels: int | None = None) -> bytes:
    """A JPEG of the region `box` (x1, y1, x2, y2 as shares of the upright image) with `margin` of its size around
    it, scaled to fit `size` x `size` pixels: a gallery tile, never the whole image (decoded under `max_pixels`)."""
    image = load_oriented_rgb(data, max_pixels)
    tile = image.crop(crop_region(image.width, image.height, box, margin))
    tile.thumbnail((size, size))
    buffer = io.BytesIO()
    tile.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
