"""SQL of image-level concepts: stored embeddings, and the labels people gave whole images."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.annotations import KIND_SQL, Kind, Source, Status

if TYPE_CHECKING:
    from store.database import Session


class ConceptsSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def embeddings(self, backbone_id: str, input_ids: list[str]) -> dict[str, np.ndarray]:
        """The stored embeddings by `backbone_id` of those of `input_ids` that have one."""
        rows = self.s.conn.execute(
            "SELECT input_id, vector FROM embeddings WHERE model_id = ? AND input_id IN (SELECT unnest(?::VARCHAR[]))",
            [backbone_id, input_ids]).fetchall()
        return {input_id: np.asarray(vector, dtype=float) for input_id, vector in rows}

    def store_embeddings(self, rows: list[dict[str, Any]]) -> int:
        """Add embeddings not stored yet (a re-run adds none)."""
        stored = {(i, m) for i, m in self.s.conn.execute(
            "SELECT input_id, model_id FROM embeddings WHERE input_id IN (SELECT unnest(?::VARCHAR[]))",
            [[r["input_id"] for r in rows]]).fetchall()}
        return self.s.insert("embeddings", [r for r in rows if (r["input_id"], r["model_id"]) not in stored])

    def labels(self, task: str, concepts: list[str]) -> pd.DataFrame:
        """(input_id, concept, positive) for every image a person gave image-level concepts (imported or decided in
        review) or labelled with none of them, and every one of `concepts`: positive when the image's concept
        annotation is SUCCESS now, negative otherwise (a person who labels an image says which of the task's
        concepts it has). Sorted, so the same labels train the same classifier."""
        return self.s.df(f"""
            WITH labelled AS (
                SELECT DISTINCT input_id FROM annotations
                WHERE task = $task AND {KIND_SQL} = '{Kind.CONCEPT}' AND source <> '{Source.AUTO}'
                UNION SELECT input_id FROM no_concept_inputs WHERE task = $task),
            positive AS (
                SELECT DISTINCT input_id, concept FROM annotation_state
                WHERE task = $task AND {KIND_SQL} = '{Kind.CONCEPT}' AND status = '{Status.SUCCESS}')
            SELECT l.input_id, c.concept, p.input_id IS NOT NULL AS positive
            FROM labelled l CROSS JOIN (SELECT unnest($concepts::VARCHAR[]) AS concept) c
            LEFT JOIN positive p USING (input_id, concept)
            ORDER BY l.input_id, c.concept""", {"task": task, "concepts": concepts})

    def _task_classifiers_sql(self, columns: str = "model_id") -> str:
        """The context-based classifiers trained for task $task."""
        return (f"SELECT {columns} FROM models WHERE task_type = 'context' "
                "AND json_extract_string(details, '$.task') = $task")

    def replace_batch_scores(self, task: str, batch: str, model_id: str, scores: pd.DataFrame,
                             processed: pd.DataFrame) -> None:
        """The batch's concept scores by `model_id`, in place of its earlier ones by that model or by an earlier
        classifier of the task (retrained on new labels): one classifier's scores per task and batch."""
        for table in ("predictions", "processed_inputs"):
            self.s.conn.execute(f"DELETE FROM {table} WHERE batch = $batch AND (model_id = $model_id OR model_id IN "
                                f"({self._task_classifiers_sql()}))", {"batch": batch, "model_id": model_id,
                                                                         "task": task})
        self.s.insert("predictions", scores)
        # A classifier scores every concept of every image: no confidence floor applies (empty).
        no_floor = pd.Series(dtype="float64", index=processed.index)
        self.s.insert("processed_inputs", processed.assign(conf_floor=no_floor))

    def classifier_learned_from(self, task: str, key: str) -> tuple[str, str] | None:
        """(model id, path) of the task's context-based classifier learned from the labels `key` names."""
        rows = self.s.conn.execute(f"{self._task_classifiers_sql('model_id, path')} AND list_contains("
                                   "json_extract_string(details, '$.labels_keys[*]'), $key) ORDER BY model_id "
                                   "LIMIT 1", {"task": task, "key": key}).fetchall()
        return tuple(rows[0]) if rows else None

    def classifier_ids(self, task: str) -> list[str]:
        """Every context-based classifier the task has learned."""
        return [m for (m,) in self.s.conn.execute(self._task_classifiers_sql(), {"task": task}).fetchall()]

    def add_labels_key(self, model_id: str, key: str) -> None:
        """Note that the labels `key` names give this classifier (other labels may give the same bytes, e.g. the
        same backbone configured another way)."""
        details = json.loads(self.s.scalar("SELECT details FROM models WHERE model_id = ?", [model_id]) or "{}")
        if key not in details.setdefault("labels_keys", []):
            details["labels_keys"].append(key)
            self.s.conn.execute("UPDATE models SET details = ? WHERE model_id = ?",
                                [json.dumps(details, sort_keys=True), model_id])

    def batch_classifier(self, task: str, batch: str, weights_id: str | None = None) -> str | None:
        """The model whose concept scores of `batch` the task routes: its classification weights (`weights_id`)
        when they scored the batch, else the task's context-based classifier that did; None if none did."""
        rows = self.s.conn.execute(f"""
            SELECT DISTINCT model_id FROM processed_inputs WHERE batch = $batch
              AND (model_id = $weights OR model_id IN ({self._task_classifiers_sql()}))""",
            {"batch": batch, "weights": weights_id, "task": task}).fetchall()
        return rows[0][0] if rows else None

    def scored_count(self, task: str) -> int:
        """Inputs a classifier of the task has scored (its context-based classifiers, and any model whose
        scores became the task's image-level annotations)."""
        return int(self.s.scalar(f"""
            SELECT count(DISTINCT input_id) FROM processed_inputs WHERE model_id IN ({self._task_classifiers_sql()})
               OR model_id IN (SELECT model_id FROM annotations WHERE task = $task AND {KIND_SQL} = '{Kind.CONCEPT}'
                                                                  AND model_id IS NOT NULL)""", {"task": task}))

    def latest_classifier(self, task: str) -> tuple[str, str] | None:
        """(model id, path) of the context-based classifier trained most recently for the task, if any."""
        rows = self.s.conn.execute(f"{self._task_classifiers_sql('model_id, path')} "
                                   "ORDER BY registered_at DESC, model_id LIMIT 1", {"task": task}).fetchall()
        return tuple(rows[0]) if rows else None
