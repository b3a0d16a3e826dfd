"""Boxes in autoannotate: normalised (x1, y1, x2, y2) in [0, 1] of the image as ingestion oriented it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

BOX_DECIMALS = 6  # 1e-6 of the image is far below a pixel; ids and manifests round boxes to this


class Box(NamedTuple):
    x1: float
    y1: float
    x2: float
    y2: float

    def key(self) -> str:
        """The box as text at the one precision ids and manifests use."""
        return unit_key(self)

    def is_ordered(self) -> bool:
        return self.x1 < self.x2 and self.y1 < self.y2


def clip_unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def polygon_bounds(polygon: list[float]) -> Box:
    """The box around a polygon x0, y0, x1, y1, ... (shares of the image)."""
    xs, ys = polygon[0::2], polygon[1::2]
    return Box(min(xs), min(ys), max(xs), max(ys))


def unit_key(values: Iterable[float]) -> str:
    """Coordinates as text at the one precision ids and manifests use."""
    return "|".join(f"{v:.{BOX_DECIMALS}f}" for v in values)
