"""Seeded generator of synthetic scenes with exact ground-truth boxes.

The same generator feeds `autoannotate demo`, the training script of the bundled
demo detector, the recall test and the benchmarks, so all of them agree on what
an object is.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross")


@dataclass(frozen=True)
class SceneObject:
    """One drawn object; the box is in pixels (x1, y1, x2, y2), exclusive of nothing."""

    class_name: str
    x1: float
    y1: float
    x2: float
    y2: float


def _overlaps(box: tuple[float, float, float, float], placed: list[SceneObject], margin: float) -> bool:
    x1, y1, x2, y2 = box
    return any(
        x1 < o.x2 + margin and o.x1 < x2 + margin and y1 < o.y2 + margin and o.y1 < y2 + margin
        for o in placed
    )


def _background(rng: random.Random, width: int, height: int) -> Image.Image:
    # A two-colour gradient with blurred blobs: enough texture that the detector
    # cannot learn "anything not flat is an object".
    top = tuple(rng.randint(0, 255) for _ in range(3))
    bottom = tuple(rng.randint(0, 255) for _ in range(3))
    gradient = Image.linear_gradient("L").resize((width, height))
    image = Image.composite(Image.new("RGB", (width, height), bottom), Image.new("RGB", (width, height), top), gradient)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 8)):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.05, 0.3) * min(width, height)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        draw.ellipse((cx - r, cy - r * rng.uniform(0.3, 1.0), cx + r, cy + r), fill=colour)
    return image.filter(ImageFilter.GaussianBlur(radius=max(width, height) / 25))


def _object_colour(rng: random.Random, image: Image.Image, box: tuple[float, float, float, float],
                   faint: bool) -> tuple:
    """A colour that stands out from the background, or (faint) one only a little different from it."""
    cx, cy = int((box[0] + box[2]) / 2), int((box[1] + box[3]) / 2)
    bg = image.getpixel((min(cx, image.width - 1), min(cy, image.height - 1)))
    low, high = (45, 110) if faint else (180, 765)
    for _ in range(10_000):
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        if low < sum(abs(a - b) for a, b in zip(colour, bg, strict=True)) <= high:
            return colour
    return tuple(255 - v for v in bg)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, box: tuple[float, float, float, float], colour: tuple) -> None:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([(x1 + w / 2, y1), (x2, y2), (x1, y2)], fill=colour)
    elif shape == "cross":
        t = 0.3
        draw.rectangle((x1, y1 + h * (0.5 - t / 2), x2, y1 + h * (0.5 + t / 2)), fill=colour)
        draw.rectangle((x1 + w * (0.5 - t / 2), y1, x1 + w * (0.5 + t / 2), y2), fill=colour)
    else:
        raise ValueError(f"unknown shape {shape!r}; known shapes: {', '.join(SHAPE_CLASSES)}")


def generate_scene(
    seed: int,
    width: int | None = None,
    height: int | None = None,
    max_objects: int = 6,
    hard: bool = False,
    min_objects: int = 1,
    shapes: tuple[str, ...] = SHAPE_CLASSES,
) -> tuple[Image.Image, list[SceneObject]]:
    """Draw one scene; the same seed always gives the same pixels and boxes.

    `hard` scenes have faint objects, blur and noise, the kind a detector is unsure of:
    the demo inbox mixes them in so that every band (accept, review, discard) gets rows.
    """
    rng = random.Random(seed)
    width = width or rng.choice((320, 384, 448, 512, 640))
    height = height or rng.choice((240, 288, 320, 384, 480))
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    objects: list[SceneObject] = []
    short_side = min(width, height)
    for _ in range(rng.randint(min_objects, max_objects)):
        shape = rng.choice(shapes)
        for _attempt in range(20):
            size = rng.uniform(0.12, 0.35) * short_side
            aspect = 1.0 if shape in ("circle", "square") else rng.uniform(0.8, 1.25)
            w, h = size * math.sqrt(aspect), size / math.sqrt(aspect)
            x1, y1 = rng.uniform(0, width - w), rng.uniform(0, height - h)
            box = (x1, y1, x1 + w, y1 + h)
            if not _overlaps(box, objects, margin=4):
                break
        else:
            continue
        # Integer-aligned boxes so the pixels drawn and the box recorded agree exactly.
        box = tuple(float(round(v)) for v in box)
        _draw_shape(draw, shape, box, _object_colour(rng, image, box, faint=hard and rng.random() < 0.6))
        objects.append(SceneObject(shape, *box))
    if hard:
        image = image.filter(ImageFilter.GaussianBlur(radius=rng.uniform(1.0, 2.5)))
        # Drawn from the scene's own seed: PIL's effect_noise reads C's process-wide rand(), so the same seed gave
        # other pixels once anything in the process (a training run) had drawn from it.
        sigma = rng.uniform(20, 40)
        grain = np.random.default_rng(rng.getrandbits(64)).normal(128, sigma, (image.height, image.width))
        noise = Image.fromarray(np.clip(grain, 0, 255).astype(np.uint8), "L").convert("RGB")
        image = Image.blend(image, noise, rng.uniform(0.15, 0.3))
    return image, objects


def write_demo_images(directory: Path, count: int, seed: int = 0, prefix: str = "scene") -> list[Path]:
    """Write `count` generated JPEG scenes into `directory` (every other one hard) and return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image, _ = generate_scene(seed * 1_000_003 + index, hard=index % 2 == 1)
        path = directory / f"{prefix}_{seed:04d}_{index:05d}.jpg"
        image.save(path, quality=92)
        paths.append(path)
    return paths


SCENE_CONCEPTS: tuple[str, ...] = ("blurry", "crowded", "night")


def concept_scene(seed: int) -> tuple[Image.Image, set[str]]:
    """A scene with image-level concepts, each drawn or not at random: `blurry` (blur and noise), `crowded` (four
    objects or more, against one or two) and `night` (dark)."""
    rng = random.Random(seed)
    night, crowded, blurry = (rng.random() < 0.5 for _ in range(3))
    low, high = (6, 9) if crowded else (1, 2)
    image, objects = generate_scene(seed, hard=blurry, min_objects=low, max_objects=high)
    if night:
        image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.2, 0.4))
    concepts = {"blurry"} if blurry else set()
    concepts |= {"crowded"} if len(objects) >= 4 else set()
    concepts |= {"night"} if night else set()
    return image, concepts


def write_concept_scenes(directory: Path, count: int, seed: int = 0) -> dict[Path, set[str]]:
    """Write `count` concept scenes as JPEGs into `directory`; each path with its true concepts."""
    directory.mkdir(parents=True, exist_ok=True)
    truth = {}
    for index in range(count):
        image, concepts = concept_scene(seed * 1_000_003 + index)
        path = directory / f"concepts_{seed:04d}_{index:05d}.jpg"
        image.save(path, quality=92)
        truth[path] = concepts
    return truth


def moving_scene(seed: int, frames: int, width: int = 480, height: int = 360, objects: int = 3,
                 shapes: tuple[str, ...] = ("circle", "square", "triangle")
                 ) -> tuple[list[np.ndarray], list[list[tuple[int, SceneObject]]]]:
    """Frames of one scene whose objects move in straight lines (bouncing off the edges), and per frame each
    object's index (its true track) and box: a video with tracks known exactly."""
    rng = random.Random(seed)
    background = _background(rng, width, height)
    short = min(width, height)
    movers = []
    for index in range(objects):
        side = rng.uniform(0.16, 0.24) * short
        movers.append({"shape": shapes[index % len(shapes)], "side": side,
                       "x": rng.uniform(0, width - side), "y": rng.uniform(0, height - side),
                       "dx": rng.uniform(-6, 6), "dy": rng.uniform(-4, 4),
                       "colour": _object_colour(rng, background, (0, 0, side, side), faint=False)})
    pictures, truth = [], []
    for _ in range(frames):
        image = background.copy()
        draw = ImageDraw.Draw(image)
        placed = []
        for index, mover in enumerate(movers):
            box = tuple(float(round(v)) for v in (mover["x"], mover["y"], mover["x"] + mover["side"],
                                                  mover["y"] + mover["side"]))
            _draw_shape(draw, mover["shape"], box, mover["colour"])
            placed.append((index, SceneObject(mover["shape"], *box)))
            for axis, step, limit in (("x", "dx", width), ("y", "dy", height)):
                mover[axis] += mover[step]
                if not 0 <= mover[axis] <= limit - mover["side"]:
                    mover[step] = -mover[step]
                    mover[axis] = min(max(mover[axis], 0), limit - mover["side"])
        pictures.append(np.asarray(image.convert("RGB")))
        truth.append(placed)
    return pictures, truth


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, rotation: int = 0) -> Path:
    """Frames (RGB arrays of one size) as an H.264 video (the container from the suffix: mp4, mkv, ...), written
    with PyAV; `rotation` sets its display matrix (degrees counterclockwise), as a phone held upright does."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        if rotation:
            stream.set_display_rotation(rotation)
        for pixels in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
