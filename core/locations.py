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


def location_parts(location: str | Path) -> tuple[str, ...]:
    """A location as the path of names it stands for: ("s3", bucket, *prefix) for a URL, the resolved folder's
    parts for a folder."""
    text = str(location)
    if is_remote(text):
        scheme, _, rest = text.partition("://")
        return (scheme, *(part for part in rest.split("/") if part))
    return Path(text).expanduser().resolve().parts


RELATIONS = ("is", "lies inside", "holds")


def relation(location: str | Path, kept: str | Path) -> str | None:
    """How `location` stands to `kept`: "is", "lies inside" or "holds" it; None when they are apart."""
    a, b = location_parts(location), location_parts(kept)
    if a == b:
        return "is"
    if a[:len(b)] == b:
        return "lies inside"
    if b[:len(a)] == a:
        return "holds"
    return None
