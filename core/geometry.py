"""Boxes in autoannotate: normalised (x1, y1, x2, y2) in [0, 1] of the image as ingestion oriented it."""

from __future__ import annotations

from typing import NamedTuple

BOX_DECIMALS = 6  # 1e-6 of the image is far below a pixel; ids and manifests round boxes to this


class Box(NamedTuple):
    x1: float
    y1: float
    x2: float
    y2: float

    def key(self) -> str:
        """The box as text at the one precision ids and manifests use."""
        return "|".join(f"{v:.{BOX_DECIMALS}f}" for v in self)

    def is_ordered(self) -> bool:
        return self.x1 < self.x2 and self.y1 < self.y2


def clip_unit(value: float) -> float:
    return min(1.0, max(0.0, value))
