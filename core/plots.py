"""Pictures for asset pages: confidence histograms with the thresholds, and annotated samples.

Rendered with matplotlib's Agg backend and its bundled DejaVu font, and PIL's default
bitmap font: nothing is fetched. matplotlib is imported when a picture is drawn, not at
import: it is half a second of every command's start otherwise.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pandas as pd
from PIL import Image, ImageDraw, ImageFont

from core.annotations import Status
from core.task_config import LabelingTask

BAND_COLOURS = {"accept": "#2e7d32", "review": "#f9a825", "discard": "#9e9e9e"}
STATUS_COLOURS = {Status.SUCCESS: (46, 125, 50), Status.AWAITING_REVIEW: (249, 168, 37)}


def markdown_image(png: bytes, alt: str) -> str:
    """Markdown the Dagster UI renders inline on the asset page."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _panels(count: int) -> tuple[Any, ...]:
    """A figure with one panel per concept, three to a row."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = min(count, 3)
    rows = -(-count // columns)
    figure = Figure(figsize=(5.2 * columns, 3.8 * rows + 0.6))
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, squeeze=False).flatten()


def _png(figure: Any, unused: list[Any], title: str) -> bytes:
    """The figure as PNG bytes, its unused panels hidden, under `title`."""
    for axis in unused:
        axis.set_visible(False)
    figure.suptitle(title, fontsize=13)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def confidence_histograms(routed: pd.DataFrame, task: LabelingTask) -> bytes:
    """One panel per concept: stacked histogram by band, the lower and upper thresholds as lines, one legend."""
    rules = {rule.concept: rule for rule in task.rules()}
    concepts = list(rules)
    figure, axes = _panels(len(concepts))
    bins = [i / 20 for i in range(21)]
    for axis, concept in zip(axes, concepts, strict=False):
        chosen = routed[routed["concept"] == concept]
        data = [chosen[chosen["band"] == band]["confidence"] for band in BAND_COLOURS]
        axis.hist(data, bins=bins, stacked=True, color=list(BAND_COLOURS.values()),
                  label=[f"{band} ({len(d)})" for band, d in zip(BAND_COLOURS, data, strict=True)])
        rule = rules[concept]
        axis.axvline(rule.lower, color="#c62828", linestyle="--", linewidth=2, label=f"lower threshold {rule.lower}")
        axis.axvline(rule.upper, color="#1565c0", linestyle="--", linewidth=2, label=f"upper threshold {rule.upper}")
        axis.set_title(f"{concept}: {len(chosen)} predictions", fontsize=13)
        axis.set_xlim(0, 1)
        axis.set_ylim(bottom=0)  # an empty panel starts at 0, never below
        if chosen.empty:
            axis.text(0.5, 0.5, "no predictions in this batch", ha="center", va="center", fontsize=12,
                      transform=axis.transAxes)
        axis.set_xlabel("confidence", fontsize=11)
        axis.set_ylabel("predictions", fontsize=11)
        axis.tick_params(labelsize=10)
        axis.legend(fontsize=9, loc="upper left")
    return _png(figure, axes[len(concepts):],
                f"task {task.name}: confidence by band (accept above upper, review between, discard below)")


def annotated_grid(samples: list[tuple[Image.Image, pd.DataFrame]], columns: int = 3, cell: int = 400) -> bytes:
    """Thumbnails with their current annotations drawn, labels on filled strips, a colour legend on top."""
    legend_height = 28
    rows = max(1, -(-len(samples) // columns))
    grid = Image.new("RGB", (columns * cell, rows * cell + legend_height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=16)
    x = 8
    for label, colour in (("accepted", STATUS_COLOURS[Status.SUCCESS]),
                          ("awaiting review", STATUS_COLOURS[Status.AWAITING_REVIEW])):
        draw.rectangle((x, 7, x + 14, 21), fill=colour)
        draw.text((x + 20, 5), label, fill=(0, 0, 0), font=font)
        x += 40 + int(draw.textlength(label, font=font))
    for index, (image, boxes) in enumerate(samples):
        thumb = image.copy()
        thumb.thumbnail((cell - 8, cell - 8))
        pen = ImageDraw.Draw(thumb)
        for box in boxes.itertuples():
            colour = STATUS_COLOURS.get(box.status, (200, 0, 0))
            xy = (box.x1 * thumb.width, box.y1 * thumb.height, box.x2 * thumb.width, box.y2 * thumb.height)
            pen.rectangle(xy, outline=colour, width=3)
            text = f"{box.concept} {box.confidence:.2f}" if box.confidence == box.confidence else box.concept
            strip = pen.textbbox((xy[0], xy[1]), text, font=font)
            top = xy[1] - (strip[3] - strip[1]) - 4 if xy[1] > 24 else xy[1]
            pen.rectangle((xy[0], top, xy[0] + strip[2] - strip[0] + 6, top + strip[3] - strip[1] + 4), fill=colour)
            pen.text((xy[0] + 3, top), text, fill=(255, 255, 255), font=font)
        grid.paste(thumb, ((index % columns) * cell + 4, (index // columns) * cell + 4 + legend_height))
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    return buffer.getvalue()


def precision_recall_curves(report: dict[str, Any], task: LabelingTask) -> bytes:
    """One panel per concept: precision against recall as the confidence threshold falls, with the points of
    the task's accepted band (upper threshold) and accepted + review band (lower threshold) marked."""
    concepts = list(report)
    figure, axes = _panels(len(concepts))
    for axis, concept in zip(axes, concepts, strict=False):
        figures = report[concept]
        curve = figures["curve"]
        axis.plot(curve["recall"], curve["precision"], color="#37474f", linewidth=2, label="threshold falling")
        for band, colour, label in (("", "#1565c0", f"accepted (> {figures['upper']})"),
                                    ("_with_review", "#f9a825", f"with review (> {figures['lower']})")):
            if figures[f"precision{band}"] is not None:
                axis.plot(figures[f"recall{band}"], figures[f"precision{band}"], "o", color=colour, markersize=9,
                          label=label)
        axis.set_title(f"{concept}: {figures['reference_boxes']} reference boxes", fontsize=13)
        if figures["note"]:
            axis.text(0.5, 0.5, "too few reference boxes", ha="center", va="center", fontsize=12,
                      transform=axis.transAxes)
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.02)
        axis.set_xlabel("recall", fontsize=11)
        axis.set_ylabel("precision", fontsize=11)
        axis.legend(fontsize=9, loc="lower left")
    return _png(figure, axes[len(concepts):],
                f"task {task.name}: precision and recall against the labels people confirmed")


def model_comparison(outcomes: dict[str, dict[str, Any]]) -> bytes:
    """Per task, the candidate detector's mAP50 and mAP50-95 beside the current one's, on the same val split."""
    figure, axes = _panels(len(outcomes))
    for axis, (task, outcome) in zip(axes, outcomes.items(), strict=False):
        for offset, (which, colour) in enumerate((("current", "#9e9e9e"), ("candidate", "#1565c0"))):
            values = [outcome[f"{which} map50"], outcome[f"{which} map50_95"]]
            axis.bar([i + offset * 0.38 for i in range(2)], values, width=0.36, color=colour, label=which)
        axis.set_xticks([0.19, 1.19], ["mAP50", "mAP50-95"])
        axis.set_ylim(0, 1)
        axis.set_title(f"{task}: {'promoted' if outcome['promoted'] else 'not promoted'}")
        axis.legend(loc="upper right")
    return _png(figure, list(axes[len(outcomes):]), "candidate and current detectors on the version's val split")


def learning_curves(curves: dict[str, pd.DataFrame]) -> bytes:
    """Per task, each trained detector's mAP50 and mAP50-95 (on its version's val split) against the labelled
    images of the version it was trained on."""
    figure, axes = _panels(len(curves))
    for axis, (task, curve) in zip(axes, curves.items(), strict=False):
        for metric, label in (("map50", "mAP50"), ("map50_95", "mAP50-95")):
            axis.plot(curve["labelled_images"], curve[metric], marker="o", label=label)
        axis.set_xlabel("labelled images in the version")
        axis.set_ylim(0, 1)
        axis.set_title(task)
        axis.legend(loc="lower right")
    return _png(figure, list(axes[len(curves):]), "learning curves: trained detectors by version size")
