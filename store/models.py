"""SQL of the model loop: trained detectors (`models` rows with training details), their evaluations
(`model_evaluations`) and each task's current detector (`model_promotions`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from store.database import Session

# Each detector's newest evaluation per task.
LATEST_EVALUATIONS = ("SELECT * FROM model_evaluations QUALIFY row_number() OVER (PARTITION BY model_id, task "
                      "ORDER BY evaluated_at DESC) = 1")


class ModelsSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def record_evaluation(self, model_id: str, task: str, version_key: str, figures: dict[str, Any],
                          now: datetime) -> None:
        """The model's figures on a version's val split (measured again: the row is replaced)."""
        self.s.conn.execute("DELETE FROM model_evaluations WHERE model_id = ? AND task = ? AND version_key = ?",
                            [model_id, task, version_key])
        self.s.insert("model_evaluations", [{
            "model_id": model_id, "task": task, "version_key": version_key, "map50": figures["map50"],
            "map50_95": figures["map50_95"], "per_class": json.dumps(figures["per_class"], sort_keys=True),
            "auto_accepted": figures["auto_accepted"]["share"],
            "images": figures["images"], "evaluated_at": now}])

    def current(self, task: str) -> str | None:
        """The model id a promotion (or rollback) made the task's detector, if any."""
        return self.s.scalar("SELECT model_id FROM model_promotions WHERE task = ? ORDER BY decided_at DESC "
                             "LIMIT 1", [task])

    def promotions(self, task: str) -> pd.DataFrame:
        """The task's promotions and rollbacks, oldest first."""
        return self.s.df("SELECT * FROM model_promotions WHERE task = ? ORDER BY decided_at", [task])

    def record_promotion(self, task: str, model_id: str, previous: str | None, action: str, decided_by: str,
                         reason: str, now: datetime) -> None:
        self.s.insert("model_promotions", [{
            "task": task, "model_id": model_id, "previous_model_id": previous, "action": action,
            "decided_by": decided_by, "reason": reason, "decided_at": now}])

    def trained(self, task: str | None = None) -> pd.DataFrame:
        """Every detector trained by autoannotate (of one task), with its parent, version, training settings and
        latest evaluation, oldest first."""
        return self.s.df(f"""
            SELECT m.model_id, m.path, m.registered_at,
                   json_extract_string(m.details, '$.task') AS task,
                   json_extract_string(m.details, '$.parent_id') AS parent_id,
                   json_extract_string(m.details, '$.version_key') AS version_key,
                   json_extract_string(m.details, '$.training') AS training,
                   e.map50, e.map50_95, e.auto_accepted, e.version_key AS evaluated_on
            FROM models m LEFT JOIN ({LATEST_EVALUATIONS}) e
              ON e.model_id = m.model_id AND e.task = json_extract_string(m.details, '$.task')
            WHERE json_extract_string(m.details, '$.kind') = 'trained'
              AND ($task IS NULL OR json_extract_string(m.details, '$.task') = $task)
            ORDER BY m.registered_at, m.model_id""", {"task": task})

    def latest_evaluation(self, model_id: str, task: str) -> dict[str, Any] | None:
        """A detector's latest figures for the task (any detector: the bundled one is measured too when a
        candidate is compared with it)."""
        rows = self.s.df(f"SELECT map50, map50_95, auto_accepted, version_key AS evaluated_on FROM "
                         f"({LATEST_EVALUATIONS}) WHERE model_id = ? AND task = ?", [model_id, task])
        return rows.iloc[0].to_dict() if len(rows) else None

    def learning_curve(self, task: str) -> pd.DataFrame:
        """Each detector trained for the task, by the labelled images of the version it was trained on (its
        images with accepted boxes), with its figures on that version's val split: what more labels bought."""
        return self.s.df("""
            SELECT json_extract_string(m.details, '$.version_key') AS version_key, v.inputs AS labelled_images,
                   e.map50, e.map50_95
            FROM models m
            JOIN dataset_versions v ON v.version_key = json_extract_string(m.details, '$.version_key')
            JOIN model_evaluations e ON e.model_id = m.model_id AND e.version_key = v.version_key AND e.task = $task
            WHERE json_extract_string(m.details, '$.kind') = 'trained'
              AND json_extract_string(m.details, '$.task') = $task
            ORDER BY labelled_images, version_key""", {"task": task})

    def evaluation(self, model_id: str, task: str, version_key: str) -> dict[str, Any] | None:
        rows = self.s.df("SELECT * FROM model_evaluations WHERE model_id = ? AND task = ? AND version_key = ?",
                         [model_id, task, version_key])
        return rows.iloc[0].to_dict() if len(rows) else None
