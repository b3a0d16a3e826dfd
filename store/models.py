"""SQL of the model loop: trained detectors (`models` rows with training details), their evaluations
(`model_evaluations`) and each task's current detector (`model_promotions`)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.annotations import Source

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

    def label_origins(self, task: str, input_ids: list[str], version_key: str) -> dict[str, int]:
        """How the labels of these images (a training split) were made, as of the version's cutoff: `imported` (a
        person's imported labels, or imported as holding nothing), `reviewed` (a person decided or drew one in
        review, of them `sent_by_audit` after a label audit) and `auto_accepted` (the model's alone)."""
        cutoff = self.s.scalar("SELECT cutoff FROM dataset_versions WHERE version_key = ?", [version_key])
        rows = self.s.conn.execute(f"""
            WITH chosen AS (SELECT unnest($ids::VARCHAR[]) AS input_id),
            made AS (SELECT input_id, bool_or(source = '{Source.IMPORT}') AS imported,
                            bool_or(source = '{Source.REVIEW}') AS reviewed
                     FROM annotations WHERE task = $task AND event_at < $cutoff
                       AND input_id IN (SELECT input_id FROM chosen) GROUP BY 1)
            SELECT count(*) FILTER (WHERE coalesce(m.imported, false) OR e.input_id IS NOT NULL),
                   count(*) FILTER (WHERE NOT coalesce(m.imported, false) AND e.input_id IS NULL
                                    AND coalesce(m.reviewed, false)),
                   count(*) FILTER (WHERE NOT coalesce(m.imported, false) AND e.input_id IS NULL
                                    AND coalesce(m.reviewed, false) AND a.input_id IS NOT NULL),
                   count(*) FILTER (WHERE NOT coalesce(m.imported, false) AND e.input_id IS NULL
                                    AND NOT coalesce(m.reviewed, false))
            FROM chosen c LEFT JOIN made m USING (input_id)
                 LEFT JOIN (SELECT DISTINCT input_id FROM empty_inputs WHERE task = $task) e USING (input_id)
                 LEFT JOIN (SELECT DISTINCT input_id FROM audit_sends WHERE task = $task AND sent_at < $cutoff) a
                   USING (input_id)""", {"ids": input_ids, "task": task, "cutoff": cutoff}).fetchall()[0]
        return dict(zip(("imported", "reviewed", "sent_by_audit", "auto_accepted"), map(int, rows), strict=True))

    def evaluation(self, model_id: str, task: str, version_key: str) -> dict[str, Any] | None:
        rows = self.s.df("SELECT * FROM model_evaluations WHERE model_id = ? AND task = ? AND version_key = ?",
                         [model_id, task, version_key])
        return rows.iloc[0].to_dict() if len(rows) else None
