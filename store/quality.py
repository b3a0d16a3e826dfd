"""SQL of label quality: a task's routed predictions and the boxes people confirmed, on the images where a
person's labels are complete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from core.quality import calibrate_task, task_quality
from core.routing import concept_sql
from core.task_config import LabelingTask

if TYPE_CHECKING:
    from store.database import Session

# Images whose labels a person completed: imported labels (an import is an image's whole labelling), or a
# finished review (a person decided the image and nothing of it still waits: every box left standing, the
# auto-accepted ones included, is one the reviewer saw and kept).
REFERENCE_IMAGES = """
    WITH judged AS (
        SELECT input_id, bool_or(source = 'import') AS imported,
               bool_or(source = 'review') AND NOT bool_or(status = 'AWAITING_REVIEW') AS reviewed
        FROM annotation_state WHERE task = $task GROUP BY input_id)
    SELECT input_id, reviewed FROM judged
    WHERE (imported OR reviewed) AND input_id IN (SELECT input_id FROM task_inputs WHERE task = $task)"""


class QualitySQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def _predictions_sql(self, task: LabelingTask, columns: str) -> str:
        """The predictions each routed input of the task was routed from, with their concept."""
        classes = sorted(set(task.class_map) | set(task.concepts))
        return f"""
            SELECT {columns} FROM (
                SELECT p.*, {concept_sql(task, classes)} AS concept FROM predictions p
                JOIN task_inputs t ON t.input_id = p.input_id AND t.model_id = p.model_id AND t.task = $task)
            WHERE concept IS NOT NULL"""

    def evidence(self, task: LabelingTask) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(predictions on the reference images, the reference boxes there, every routed prediction's concept
        and confidence): what `core.quality` measures and calibrates on."""
        boxes = "input_id, concept, x1, y1, x2, y2"
        on_reference = self.s.df(f"""
            {self._predictions_sql(task, f"{boxes}, confidence")}
            AND input_id IN (SELECT input_id FROM ({REFERENCE_IMAGES}))""", {"task": task.name})
        references = self.s.df(f"""
            SELECT {boxes} FROM annotation_state a JOIN ({REFERENCE_IMAGES}) r USING (input_id)
            WHERE a.task = $task AND a.status = 'SUCCESS' AND (a.source <> 'auto' OR r.reviewed)""",
                               {"task": task.name})
        everything = self.s.df(self._predictions_sql(task, "concept, confidence"), {"task": task.name})
        return on_reference, references, everything

    def spot_check_outcomes(self, task: LabelingTask) -> dict[str, dict[str, tuple[int, int]]]:
        """Per concept and band of the task's spot checks: (decided by a person, kept by that person: confirmed
        when drawn from the accepted band, a missed object when drawn from the discarded one)."""
        rows = self.s.conn.execute("""
            SELECT s.band, a.concept, count(*) FILTER (WHERE a.source <> 'auto'),
                   count(*) FILTER (WHERE a.source <> 'auto' AND a.status = 'SUCCESS')
            FROM spot_checks s JOIN annotation_state a USING (task, annotation_id)
            WHERE s.task = ? GROUP BY 1, 2""", [task.name]).fetchall()
        outcomes: dict[str, dict[str, tuple[int, int]]] = {}
        for band, concept, decided, kept in rows:
            outcomes.setdefault(concept, {})[band] = (int(decided), int(kept))
        return outcomes

    def report(self, task: LabelingTask, level: float = 0.95) -> dict[str, Any]:
        """Per concept: `core.quality.band_quality` under the task's thresholds, with its curve, and the
        estimates of its spot checks."""
        return task_quality(task.rules(), *self.evidence(task), level, task.match_iou,
                            self.spot_check_outcomes(task))

    def calibration(self, task: LabelingTask, target_precision: float, level: float = 0.95,
                    target_recall: float | None = None) -> dict[str, Any]:
        """Per concept: proposed thresholds (`core.quality.calibrate_concept`) beside the current ones."""
        return calibrate_task(task.rules(), *self.evidence(task), target_precision, level, target_recall,
                              task.match_iou)
