"""SQL of where each batch stands: ingested, predicted by each task's model, routed by each task."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from store.database import Session

# In pipeline order; a batch is at the first stage it has not passed.
STAGES = ("not ingested", "not predicted", "not routed", "complete")


class BatchesSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def stages(self, batches: list[str], models_by_task: dict[str, str]) -> dict[str, str]:
        """The stage of each batch for the configured tasks (`models_by_task`: task name -> model id). Each
        stage writes in one transaction, so a batch is never half way through one."""
        conn, params = self.s.conn, [batches]
        ingested = {b for (b,) in conn.execute(
            "SELECT batch FROM input_sources WHERE batch IN (SELECT unnest(?::VARCHAR[])) UNION "
            "SELECT batch FROM rejected_inputs WHERE batch IN (SELECT unnest(?::VARCHAR[]))", params * 2).fetchall()}
        inputs = dict(conn.execute("SELECT batch, count(*) FROM inputs WHERE batch IN (SELECT unnest(?::VARCHAR[])) "
                                   "GROUP BY 1", params).fetchall())
        predicted = {(b, m): n for b, m, n in conn.execute(
            "SELECT batch, model_id, count(*) FROM processed_inputs WHERE batch IN (SELECT unnest(?::VARCHAR[])) "
            "GROUP BY 1, 2", params).fetchall()}
        routed = {(b, t): n for b, t, n in conn.execute(
            "SELECT batch, task, count(*) FROM task_inputs WHERE batch IN (SELECT unnest(?::VARCHAR[])) "
            "GROUP BY 1, 2", params).fetchall()}

        def stage(batch: str) -> str:
            expected = inputs.get(batch, 0)
            if batch not in ingested:
                return "not ingested"
            if any(predicted.get((batch, model), 0) < expected for model in models_by_task.values()):
                return "not predicted"
            if any(routed.get((batch, task), 0) < expected for task in models_by_task):
                return "not routed"
            return "complete"

        return {batch: stage(batch) for batch in batches}
