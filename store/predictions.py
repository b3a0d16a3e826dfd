"""SQL of the predictions family: `models`, `predictions`, `processed_inputs`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.annotations import prediction_id
from core.geometry import Box
from core.settings import DEFAULT_CONF_FLOOR

if TYPE_CHECKING:
    from store.database import Session

# The stored predictions of one batch and model, as a relation routing queries read ($batch, $model_id).
# A deleted input is routed by no task again.
BATCH_PREDICTIONS = ("(SELECT * FROM predictions WHERE batch = $batch AND model_id = $model_id "
                     "AND input_id NOT IN (SELECT input_id FROM deleted_inputs))")


def prediction_rows(batch: str, model_id: str, input_id: str, detections: list[Any],
                    now: datetime) -> list[dict[str, Any]]:
    """Rows of `predictions` for one image's detections (anything with class_name, confidence, a box, polygon)."""
    return [
        {"prediction_id": prediction_id(model_id, input_id, d.class_name, Box(d.x1, d.y1, d.x2, d.y2)),
         "batch": batch, "input_id": input_id, "model_id": model_id, "class_name": d.class_name,
         "confidence": d.confidence, "x1": d.x1, "y1": d.y1, "x2": d.x2, "y2": d.y2, "polygon": d.polygon,
         "predicted_at": now}
        for d in detections
    ]


class PredictionsSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def register_model(self, model_id: str, name: str, path: str, task_type: str, class_names: list[str],
                       now: datetime, details: dict[str, Any] | None = None) -> None:
        if self.s.scalar("SELECT count(*) FROM models WHERE model_id = ?", [model_id]):
            return
        self.s.insert("models", [{"model_id": model_id, "name": name, "path": path, "task_type": task_type,
                                  "class_names": class_names, "registered_at": now,
                                  "details": json.dumps(details, sort_keys=True) if details else None}])

    def model_path(self, model_id: str) -> str:
        """Where a registered model's file is."""
        return self.s.scalar("SELECT path FROM models WHERE model_id = ?", [model_id])

    def replace_batch(self, batch: str, model_id: str, predictions: pd.DataFrame, processed: pd.DataFrame) -> None:
        """Swap this batch's rows of this model for the new ones, in the session's transaction."""
        for table in ("predictions", "processed_inputs"):
            self.s.conn.execute(f"DELETE FROM {table} WHERE batch = ? AND model_id = ?", [batch, model_id])
        self.s.insert("predictions", predictions)
        self.s.insert("processed_inputs", processed)

    def batch_floor(self, batch: str, model_id: str) -> float | None:
        """The confidence floor the batch's predictions of `model_id` were made at (None: not predicted yet)."""
        return self.s.scalar(f"SELECT max(coalesce(conf_floor, {DEFAULT_CONF_FLOOR})) FROM processed_inputs "
                             "WHERE batch = ? AND model_id = ?", [batch, model_id])

    def batch_class_names(self, batch: str, model_id: str) -> list[str]:
        return [c for (c,) in self.s.conn.execute(
            "SELECT DISTINCT class_name FROM predictions WHERE batch = ? AND model_id = ? ORDER BY 1",
            [batch, model_id]).fetchall()]

    def batch_count(self, batch: str, model_id: str) -> int:
        """The batch's predictions of the model that routing reads (a deleted input's are not)."""
        return int(self.s.scalar(f"SELECT count(*) FROM {BATCH_PREDICTIONS}", {"batch": batch, "model_id": model_id}))

    def batch_confidences(self, batch: str, model_id: str) -> pd.DataFrame:
        return self.s.df("SELECT class_name, confidence FROM predictions WHERE batch = ? AND model_id = ?",
                         [batch, model_id])

    def per_class(self, batch: str) -> dict[str, int]:
        return {name: int(n) for name, n in self.s.conn.execute(
            "SELECT class_name, count(*) FROM predictions WHERE batch = ? GROUP BY 1 ORDER BY 1", [batch]).fetchall()}

    def total(self) -> int:
        return int(self.s.scalar("SELECT count(*) FROM predictions"))
