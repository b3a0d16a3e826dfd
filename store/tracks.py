"""SQL of tracks: `prediction_tracks`, the frames of a video with their predictions, and each track's confidence."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from store.database import Session


def track_confidence_sql(tracker: str) -> str:
    """Per tracked prediction of `$model_id`, its track's confidence: the median of the track's predictions' (one
    frame's outlier neither accepts nor discards an object the other frames agree on)."""
    return f"""
        SELECT t.prediction_id, median(p.confidence) OVER (PARTITION BY t.video_id, t.track_id) AS confidence,
               t.track_id, t.video_id
        FROM prediction_tracks t JOIN predictions p USING (prediction_id)
        WHERE t.tracker = '{tracker}' AND t.model_id = $model_id"""


class TracksSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def untracked_videos(self, batch: str, model_id: str, tracker: str) -> list[str]:
        """The batch's videos with frames `model_id` ran on and no tracks by `tracker` yet."""
        return [v for (v,) in self.s.conn.execute("""
            SELECT DISTINCT f.video_id FROM video_frames f JOIN videos v ON v.video_id = f.video_id AND v.batch = $batch
            WHERE f.input_id IN (SELECT input_id FROM processed_inputs WHERE model_id = $model_id)
              AND NOT EXISTS (SELECT 1 FROM prediction_tracks t WHERE t.video_id = f.video_id
                              AND t.model_id = $model_id AND t.tracker = $tracker)
            ORDER BY 1""", {"batch": batch, "model_id": model_id, "tracker": tracker}).fetchall()]

    def frame_predictions(self, video_id: str, model_id: str) -> list[list[dict[str, Any]]]:
        """The video's kept frames in order, each with its predictions by `model_id` in pixels (class ids by the
        model's class names in order)."""
        rows = self.s.df("""
            SELECT f.frame_index, p.prediction_id, dense_rank() OVER (ORDER BY p.class_name) - 1 AS cls,
                   p.confidence, p.x1 * i.width AS x1, p.y1 * i.height AS y1, p.x2 * i.width AS x2,
                   p.y2 * i.height AS y2
            FROM video_frames f JOIN inputs i USING (input_id)
            LEFT JOIN predictions p ON p.input_id = f.input_id AND p.model_id = $model_id
            WHERE f.video_id = $video ORDER BY f.frame_index, p.prediction_id""",
            {"video": video_id, "model_id": model_id})
        frames: dict[int, list[dict[str, Any]]] = {}
        for row in rows.to_dict("records"):
            detections = frames.setdefault(int(row["frame_index"]), [])
            if isinstance(row["prediction_id"], str):
                detections.append(row)
        return [frames[index] for index in sorted(frames)]

    def record(self, video_id: str, model_id: str, tracker: str, ids: dict[str, int], now: datetime) -> int:
        return self.s.insert("prediction_tracks", [
            {"prediction_id": p, "model_id": model_id, "tracker": tracker, "video_id": video_id, "track_id": t,
             "tracked_at": now} for p, t in sorted(ids.items())])

    def frames_of_track(self, task: str, video_id: str, track_id: int, tracker: str) -> list[dict[str, Any]]:
        """The task's live annotations made from one track's predictions, in frame order, with their input,
        frame index, concept and status."""
        return self.s.df("""
            SELECT c.annotation_id, c.input_id, f.frame_index, c.concept, c.status FROM annotation_state c
            JOIN prediction_tracks t ON t.prediction_id = c.prediction_id AND t.model_id = c.model_id
            JOIN video_frames f ON f.input_id = c.input_id AND f.video_id = t.video_id
            WHERE c.task = ? AND t.video_id = ? AND t.track_id = ? AND t.tracker = ? AND c.status <> 'RETIRED'
            ORDER BY f.frame_index, c.annotation_id""", [task, video_id, track_id, tracker]).to_dict("records")

    def annotations_of_track(self, task: str, video_id: str, track_id: int, tracker: str) -> list[str]:
        """The task's live annotations made from one track's predictions, in frame order."""
        return [f["annotation_id"] for f in self.frames_of_track(task, video_id, track_id, tracker)]

    def of_boxes(self, boxes: pd.DataFrame, tracker: str | None) -> pd.DataFrame:
        """For the boxes (annotation_id, input_id, prediction_id, model_id) on video frames: their video, frame
        index and, with a `tracker`, track id."""
        with self.s.registered("exported_boxes", boxes[["annotation_id", "input_id", "prediction_id", "model_id"]]):
            return self.s.df("""
                SELECT b.annotation_id, b.input_id, f.video_id, any_value(v.uri) AS video_uri, f.frame_index,
                       any_value(t.track_id) AS track_id, any_value(v.frame_rate) AS frame_rate
                FROM exported_boxes b JOIN video_frames f ON f.input_id = b.input_id
                JOIN videos v ON v.video_id = f.video_id
                LEFT JOIN prediction_tracks t ON t.prediction_id = b.prediction_id AND t.model_id = b.model_id
                     AND t.tracker = $tracker
                GROUP BY b.annotation_id, b.input_id, f.video_id, f.frame_index
                ORDER BY f.video_id, f.frame_index, b.annotation_id""", {"tracker": tracker})
