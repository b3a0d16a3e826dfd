"""Locations: a folder on this machine, or a store named by URL (s3://bucket/prefix), as one string."""

from __future__ import annotations

from pathlib import Path


def is_remote(location: str | Path) -> bool:
    """Whether `location` names a store by URL (s3://...) rather than a folder on this machine."""
    return "://" in str(location)


def joined(location: str | Path, *parts: str) -> str:
    """`location` (a folder or a URL) with `parts` below it."""
    text = str(location)
    return "/".join([text.rstrip("/"), *parts]) if is_remote(text) else str(Path(text, *parts))
