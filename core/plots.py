"""Pictures for asset pages: confidence histograms with the thresholds, and annotated samples.

Rendered with matplotlib's Agg backend and its bundled DejaVu font, and PIL's default
bitmap font: nothing is fetched. matplotlib is imported when a picture is drawn, not at
import: it is half a second of every command's start otherwise.
"""

from __future__ import annotations

import base64
import io

import pandas as pd
from PIL import Image, ImageDraw

from core.annotations import Status
from core.task_config import LabelingTask

BAND_COLOURS = {"accept": "#2e7d32", "review": "#f9a825", "discard": "#9e9e9e"}
STATUS_COLOURS = {Status.SUCCESS: (46, 125, 50), Status.AWAITING_REVIEW: (249, 168, 37)}


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown the Dagster UI renders inline on the asset page."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def confidence_histograms(routed: pd.DataFrame, task: LabelingTask) -> bytes:
    """One panel per concept: stacked histogram by band, lower and upper thresholds as lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rules = {rule.concept: rule for rule in task.rules()}
    concepts = list(rules)
    figure = Figure(figsize=(3.2 * len(concepts), 2.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(concepts), squeeze=False)
    bins = [i / 20 for i in range(21)]
    for axis, concept in zip(axes[0], concepts, strict=True):
        rows = routed[routed["concept"] == concept]
        data = [rows[rows["band"] == band]["confidence"] for band in BAND_COLOURS]
        axis.hist(data, bins=bins, stacked=True, color=list(BAND_COLOURS.values()), label=list(BAND_COLOURS))
        rule = rules[concept]
        axis.axvline(rule.lower, color="#c62828", linestyle="--", linewidth=1)
        axis.axvline(rule.upper, color="#1565c0", linestyle="--", linewidth=1)
        axis.set_title(f"{concept} (lower {rule.lower_operator} {rule.lower}, upper {rule.upper_operator} "
                       f"{rule.upper})", fontsize=8)
        axis.set_xlim(0, 1)
        axis.set_xlabel("confidence", fontsize=8)
        axis.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


def annotated_grid(samples: list[tuple[Image.Image, pd.DataFrame]], columns: int = 3, cell: int = 240) -> bytes:
    """Thumbnails with their current annotations drawn (green accepted, amber to review)."""
    rows = max(1, -(-len(samples) // columns))
    grid = Image.new("RGB", (columns * cell, rows * cell), (255, 255, 255))
    for index, (image, boxes) in enumerate(samples):
        thumb = image.copy()
        thumb.thumbnail((cell - 8, cell - 8))
        draw = ImageDraw.Draw(thumb)
        for box in boxes.itertuples():
            colour = STATUS_COLOURS.get(box.status, (200, 0, 0))
            xy = (box.x1 * thumb.width, box.y1 * thumb.height, box.x2 * thumb.width, box.y2 * thumb.height)
            draw.rectangle(xy, outline=colour, width=2)
            draw.text((xy[0] + 2, xy[1] + 1), f"{box.concept} {box.confidence:.2f}", fill=colour)
        grid.paste(thumb, ((index % columns) * cell + 4, (index // columns) * cell + 4))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()
