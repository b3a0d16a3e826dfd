"""Videos end to end: how fast are frames decoded, sampled and annotated, how pure are the tracks, and how many
review decisions does track review save?

1. Real photographs: a 640x480 video at 25 fps that pans and zooms over `skimage.data` photographs (astronaut,
   coffee, chelsea, rocket; 6 s each), written with PyAV, then `autoannotate run` on an inbox holding it with the
   default sampling (2 frames a second). Printed: decoding and sampling alone (frames decoded per second), and the
   whole run (frames kept and annotated per second of wall time).
2. Moving demo scenes (synthetic: three shapes moving in straight lines, their true tracks known exactly), every
   frame kept, under the demo task with `tracker: bytetrack` and a wide review band. Printed against the
   generator's tracks, matching boxes at IoU >= 0.5: MOTA, IDF1 (true and predicted tracks paired one-to-one to
   the most frames shared) and ID switches per true track; then the review decisions the doubtful objects take:
   one per track with track review, one per frame annotation without.

    PYTHONPATH=. .venv/bin/python benchmarks/video_pipeline.py [--seconds 24] [--scenes 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import skimage.data
import yaml
from PIL import Image
from scipy.optimize import linear_sum_assignment

from apps.demo_scenes import moving_scene, write_video
from apps.runner import run_pipeline
from core.consensus import box_iou
from core.geometry import Box
from core.settings import DEMO_TASK, DEMO_WEIGHTS, Settings
from core.video import VideoRule, sample_video
from resources import build_resources

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket"]


def photo_tour(seconds: int, fps: int = 25, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """Frames panning and zooming over the photographs in turn, a share of the time each."""
    frames = []
    per_photo = max(1, seconds * fps // len(PHOTOS))
    for name in PHOTOS:
        picture = Image.fromarray(getattr(skimage.data, name)()).convert("RGB").resize((1280, 960))
        for step in range(per_photo):
            t = step / per_photo
            zoom = 1.0 + 0.6 * t  # closer over time
            width, height = int(picture.width / zoom / 1.25), int(picture.height / zoom / 1.25)
            left = int((picture.width - width) * t)
            top = min(max(int((picture.height - height) * (0.5 + 0.4 * np.sin(2 * np.pi * t))), 0),
                      picture.height - height)
            frames.append(np.asarray(picture.crop((left, top, left + width, top + height)).resize(size)))
    return frames


def task_file(home: Path, **changes: object) -> Path:
    data = yaml.safe_load(DEMO_TASK.read_text())
    data["model"]["weights"] = str(DEMO_WEIGHTS)
    data.update(changes)
    path = home / "task.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def real_photographs(folder: Path, seconds: int) -> None:
    home = folder / "photos"
    (home / "inbox").mkdir(parents=True)
    video = write_video(home / "inbox" / "tour.mp4", photo_tour(seconds), fps=25)
    start = time.perf_counter()
    sampled = sample_video(video, VideoRule())
    decoding = time.perf_counter() - start
    print(f"real photographs: {seconds} s of 640x480 at 25 fps ({sampled.decoded} frames), sampled at 2 a second: "
          f"{len(sampled.frames)} kept, {sampled.skipped_similar} skipped as near-identical")
    print(f"  decoding and sampling: {sampled.decoded / decoding:.0f} frames decoded a second ({decoding:.1f} s)")
    start = time.perf_counter()
    run_pipeline(Settings(home=home, task_files=(str(task_file(home)),)))
    wall = time.perf_counter() - start
    print(f"  the whole run (ingest, predict, route, version): {wall:.1f} s, {len(sampled.frames) / wall:.2f} kept "
          f"frames annotated a second, {sampled.decoded / wall:.0f} video frames a second")


def track_figures(truth: list[list], found: dict[int, list[tuple[int, Box]]]) -> dict[str, float]:
    """MOTA, IDF1 and ID switches per true track; `found`: per frame, (track id, box) of each tracked box."""
    gt = sum(len(objects) for objects in truth)
    false_positives = misses = switches = 0
    last: dict[int, int] = {}
    shared: dict[tuple[int, int], int] = {}
    predicted_total = 0
    for frame, objects in enumerate(truth):
        boxes = found.get(frame, [])
        predicted_total += len(boxes)
        pairs = sorted(((box_iou(Box(o.x1, o.y1, o.x2, o.y2), b), i, j) for i, (_, o) in enumerate(objects)
                        for j, (_, b) in enumerate(boxes)), reverse=True)
        used_true, used_found = set(), set()
        for iou, i, j in pairs:
            if iou < 0.5 or i in used_true or j in used_found:
                continue
            used_true.add(i)
            used_found.add(j)
            true_id, track = objects[i][0], boxes[j][0]
            if true_id in last and last[true_id] != track:
                switches += 1
            last[true_id] = track
            shared[(true_id, track)] = shared.get((true_id, track), 0) + 1
        misses += len(objects) - len(used_true)
        false_positives += len(boxes) - len(used_found)
    true_ids = sorted({t for t, _ in shared})
    tracks = sorted({k for _, k in shared})
    weights = np.array([[shared.get((t, k), 0) for k in tracks] for t in true_ids]) if shared else np.zeros((0, 0))
    rows, cols = linear_sum_assignment(-weights) if weights.size else ([], [])
    idtp = int(sum(weights[r, c] for r, c in zip(rows, cols, strict=True)))
    idf1 = 2 * idtp / (gt + predicted_total) if gt + predicted_total else 0.0
    return {"mota": 1 - (misses + false_positives + switches) / gt, "idf1": idf1,
            "switches_per_track": switches / max(1, len({o[0] for objects in truth for o in objects})),
            "misses": misses, "false_positives": false_positives, "switches": switches, "gt": gt}


def moving_scenes(folder: Path, scenes: int) -> None:
    home = folder / "moving"
    (home / "inbox").mkdir(parents=True)
    truths = {}
    for scene in range(scenes):
        frames, truth = moving_scene(500 + scene, 60)
        write_video(home / "inbox" / f"scene{scene}.mp4", frames, fps=10)
        truths[f"scene{scene}.mp4"] = truth
    task = task_file(home, tracker="bytetrack", thresholds={"upper": 0.99, "lower": 0.3})
    run_pipeline(Settings(home=home, task_files=(str(task),), video_fps=10.0, video_skip_similar=1.0))
    store = build_resources(Settings(home=home, task_files=(str(task),)))["store"]
    rows = store.read(lambda s: s.df("""
        SELECT regexp_extract(v.uri, '[^/]*$') AS video, f.frame_index, t.track_id, p.x1 * i.width AS x1,
               p.y1 * i.height AS y1, p.x2 * i.width AS x2, p.y2 * i.height AS y2
        FROM prediction_tracks t JOIN predictions p USING (prediction_id) JOIN video_frames f USING (input_id)
        JOIN videos v ON v.video_id = f.video_id JOIN inputs i USING (input_id)
        WHERE p.class_name <> 'cross'"""))
    totals = {"mota": [], "idf1": [], "switches_per_track": []}
    for video, truth in truths.items():
        found: dict[int, list[tuple[int, Box]]] = {}
        for row in rows[rows["video"] == video].itertuples():
            found.setdefault(int(row.frame_index), []).append((int(row.track_id), Box(row.x1, row.y1, row.x2, row.y2)))
        for key, value in track_figures(truth, found).items():
            if key in totals:
                totals[key].append(value)
    print(f"moving demo scenes (synthetic, true tracks known): {scenes} videos x 60 frames, 3 objects each, "
          "ByteTrack over every frame")
    print(f"  MOTA {np.mean(totals['mota']):.3f}, IDF1 {np.mean(totals['idf1']):.3f}, ID switches per true track "
          f"{np.mean(totals['switches_per_track']):.2f} (mean over the videos)")
    review = store.read(lambda s: s.df("""
        SELECT count(*) AS frame_annotations, count(DISTINCT (t.video_id, t.track_id)) AS tracks
        FROM annotation_state c JOIN prediction_tracks t ON t.prediction_id = c.prediction_id
        WHERE c.status = 'AWAITING_REVIEW'""")).iloc[0]
    print(f"  review decisions for the doubtful objects: {int(review.tracks)} with track review (one per track) "
          f"against {int(review.frame_annotations)} without (one per frame annotation)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=24)
    parser.add_argument("--scenes", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        real_photographs(Path(folder), args.seconds)
        moving_scenes(Path(folder), args.scenes)


if __name__ == "__main__":
    main()
