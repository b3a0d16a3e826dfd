"""Tracks: a video's frames, in order, through one of Ultralytics' own trackers (ByteTrack or BoT-SORT, no ReID
weights), so that every detection of one object across frames carries one track id; a task with a `tracker`
then routes and reviews each track as a whole."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import numpy as np

from core.offline import make_ultralytics_offline
from store import Session

TRACKERS = ("bytetrack", "botsort")


class FrameDetections:
    """One frame's detections as Ultralytics' trackers read them (`conf`, `cls`, `xywh`, boolean indexing)."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xyxy, self.conf, self.cls = xyxy.reshape(-1, 4), conf, cls

    @property
    def xywh(self) -> np.ndarray:
        centre = (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2
        return np.concatenate([centre, self.xyxy[:, 2:] - self.xyxy[:, :2]], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, mask: Any) -> FrameDetections:
        return FrameDetections(self.xyxy[mask], self.conf[mask], self.cls[mask])


def new_tracker(name: str) -> Any:
    """A fresh ByteTrack or BoT-SORT of Ultralytics with its bundled settings (BoT-SORT without ReID and without
    camera-motion compensation: the frames are sampled, not consecutive)."""
    make_ultralytics_offline()
    from ultralytics.trackers.track import TRACKER_MAP
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    settings = IterableSimpleNamespace(**YAML.load(check_yaml(f"{name}.yaml")))
    if name == "botsort":
        settings.with_reid, settings.gmc_method = False, "none"
    return TRACKER_MAP[name](args=settings)


def track_ids(name: str, frames: Iterable[list[dict[str, Any]]]) -> dict[str, int]:
    """Each detection's track id (detections: prediction_id, class id `cls`, confidence and a pixel box), the
    frames given in order; a detection no track takes gets none."""
    tracker = new_tracker(name)
    assigned: dict[str, int] = {}
    for detections in frames:
        if not detections:
            tracker.update(FrameDetections(np.zeros((0, 4)), np.zeros(0), np.zeros(0)))
            continue
        boxes = FrameDetections(np.array([[d["x1"], d["y1"], d["x2"], d["y2"]] for d in detections], dtype=float),
                                np.array([d["confidence"] for d in detections], dtype=float),
                                np.array([d["cls"] for d in detections], dtype=float))
        for row in tracker.update(boxes):
            assigned[detections[int(row[-1])]["prediction_id"]] = int(row[4])
    return assigned


def track_batch(s: Session, batch: str, model_id: str, tracker: str, now: datetime) -> int:
    """Track the batch's videos' predictions of `model_id` once per tracker (a re-run keeps the tracks); returns
    how many predictions got a track id."""
    written = 0
    for video_id in s.tracks.untracked_videos(batch, model_id, tracker):
        # The sampled frames are the tracker's frames (a lost track is kept `track_buffer` of them).
        ids = track_ids(tracker, s.tracks.frame_predictions(video_id, model_id))
        written += s.tracks.record(video_id, model_id, tracker, ids, now)
    return written
