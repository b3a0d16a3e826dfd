"""Image files of an export: their names, sizes and how they are placed (hard link, copy, symlink, or rewritten
upright or smaller)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from PIL import Image

# How an export places a stored image: its own copy (a reflink where the filesystem shares blocks that way, so
# writing into the export never reaches the store), a hard link (asked for: the stored file is then made
# read-only), or a symlink into the store.
LINK_MODES = ("copy", "hardlink", "symlink")
FICLONE = 0x40049409  # Linux's ioctl that makes `target` share `source`'s blocks copy-on-write (btrfs, XFS)


def export_file_name(uri: str, input_id: str, fmt: str) -> str:
    """An exported image's file name: the stem of the file it came from (made safe for any filesystem) and the
    first 12 hex digits of its content hash, so a person can tell which photo it is and no two images share one."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(uri).stem).strip("._")[:80] or "image"
    return f"{stem}-{input_id[:12]}{image_suffix(fmt)}"


def image_suffix(fmt: str) -> str:
    return {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}[fmt]


def resized(width: int, height: int, longest_side: int) -> tuple[int, int]:
    """The size an image of width x height has once its longest side is at most `longest_side` (0: as it is;
    never enlarged)."""
    if not longest_side or max(width, height) <= longest_side:
        return width, height
    scale = longest_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def copy_or_reflink(source: Path, target: Path) -> None:
    """A file of its own at `target` with `source`'s bytes: a reflink where the filesystem has them, else a copy."""
    import fcntl

    with open(source, "rb") as read, open(target, "wb") as write:
        try:
            fcntl.ioctl(write.fileno(), FICLONE, read.fileno())
            return
        except OSError:
            shutil.copyfileobj(read, write, 1 << 20)


def place_image(source: Path, target: Path, longest_side: int = 0, link: str = "copy") -> None:
    """The stored image at `target`: a file of its own with the stored bytes (`link` copy: a reflink or a copy),
    a hard link when asked for (the stored file made read-only; a copy on another filesystem) or a symlink; or
    written upright when its EXIF rotates it (the boxes were computed on the upright pixels), or resized to
    `longest_side` when it is larger."""
    if target.exists() or target.is_symlink():
        target.unlink()
    with Image.open(source) as image:
        orientation = image.getexif().get(0x0112, 1)
        size = image.size if orientation in (0, 1, 2, 3, 4) else image.size[::-1]
        if orientation not in (0, 1) or resized(*size, longest_side) != size:
            from PIL import ImageOps

            upright = ImageOps.exif_transpose(image)
            if resized(*size, longest_side) != size:
                upright = upright.resize(resized(*size, longest_side), Image.Resampling.LANCZOS)
            upright.save(target, quality=95) if target.suffix == ".jpg" else upright.save(target)
            return
    if link == "copy":
        copy_or_reflink(source, target)
        return
    try:
        if link == "symlink":
            os.symlink(source, target)
        else:
            os.chmod(source, 0o444)  # one inode with the export: nobody but root writes through either name
            os.link(source, target)
    except OSError:  # another filesystem: a copy
        copy_or_reflink(source, target)

