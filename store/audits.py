"""SQL of label audits: which labels an audit judges, the auditor's stored predictions, and `audit_sends`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from core.annotations import HELD_STATUSES, KIND_SQL, Kind, Source, Status

if TYPE_CHECKING:
    from store.database import Session

PEOPLE = (str(Source.IMPORT), str(Source.REVIEW))


class AuditsSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def labelled_inputs(self, task: str) -> dict[str, tuple[int, int]]:
        """The images a person labelled for objects in `task` (a person's accepted box on it, or imported as
        holding none), with their sizes."""
        images = self.s.conn.execute(f"""
            SELECT i.input_id, i.width, i.height FROM inputs i
            WHERE i.input_id IN (SELECT input_id FROM annotation_state WHERE task = $task AND status = $success
                                   AND source IN (SELECT unnest($people)) AND {KIND_SQL} = $box
                                 UNION SELECT input_id FROM empty_inputs WHERE task = $task)
              AND i.input_id NOT IN (SELECT input_id FROM deleted_inputs) ORDER BY 1""",
            {"task": task, "people": list(PEOPLE), "success": str(Status.SUCCESS), "box": str(Kind.BOX)}).fetchall()
        return {i: (int(w), int(h)) for i, w, h in images}

    def labels(self, task: str) -> tuple[pd.DataFrame, dict[str, tuple[int, int]]]:
        """The images a person labelled (`labelled_inputs`) and every held box on them; `audited` marks people's
        accepted boxes (the others, the model's or still undecided, only cover their objects)."""
        sizes = self.labelled_inputs(task)
        labels = self.s.df(f"""
            SELECT annotation_id, input_id, concept, x1, y1, x2, y2, event_at, source, annotator,
                   status = $success AND source IN (SELECT unnest($people)) AS audited
            FROM annotation_state WHERE task = $task AND {KIND_SQL} = $box AND status IN (SELECT unnest($held))
              AND input_id IN (SELECT unnest($images)) ORDER BY input_id, annotation_id""",
            {"task": task, "people": list(PEOPLE), "success": str(Status.SUCCESS), "box": str(Kind.BOX),
             "images": sorted(sizes), "held": [str(s) for s in HELD_STATUSES]})
        return labels, sizes

    def stored_predictions(self, model_id: str, input_ids: list[str], floor: float) -> tuple[pd.DataFrame, set[str]]:
        """The model's stored predictions on those inputs it ran on at a confidence floor of `floor` or lower
        (input_id, class_name, confidence, x1..y2, prediction_id), and which inputs those are."""
        processed = {i for (i,) in self.s.conn.execute(
            "SELECT input_id FROM processed_inputs WHERE model_id = $model AND coalesce(conf_floor, 0.05) <= $floor "
            "AND input_id IN (SELECT unnest($inputs))",
            {"model": model_id, "floor": floor, "inputs": input_ids}).fetchall()}
        found = self.s.df(
            "SELECT input_id, class_name, confidence, x1, y1, x2, y2, prediction_id FROM predictions WHERE model_id = "
            "$model AND input_id IN (SELECT unnest($inputs)) ORDER BY input_id, prediction_id",
            {"model": model_id, "inputs": sorted(processed)})
        return found, processed

    def version_inputs(self, version_key: str) -> set[str]:
        """The inputs a dataset version holds (accepted annotations and negatives, as of its cutoff)."""
        version = self.s.versions.get(version_key)
        if version is None:
            return set()
        accepted, params = self.s.history.as_of_sql(version["task"], version["cutoff"])
        negatives, negative_params = self.s.history.negatives_sql(version["task"], version["cutoff"])
        return {i for (i,) in self.s.conn.execute(
            f"SELECT input_id FROM ({accepted}) UNION SELECT input_id FROM ({negatives})",
            {**params, **negative_params}).fetchall()}

    def sent(self, task: str) -> set[str]:
        """The annotations an audit of the task has sent to review before (never sent twice)."""
        return {i for (i,) in self.s.conn.execute("SELECT annotation_id FROM audit_sends WHERE task = ?",
                                                  [task]).fetchall()}

    def record_sends(self, rows: list[dict[str, Any]]) -> int:
        return self.s.insert("audit_sends", rows)
