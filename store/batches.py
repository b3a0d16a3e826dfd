"""SQL of where each batch stands: ingested, predicted by each task's model, routed by each task, scored by each
task's classifier."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from core.routing import scope_sql
from core.task_config import LabelingTask

if TYPE_CHECKING:
    from store.database import Session

# In pipeline order; a batch is at the first stage it has not passed.
STAGES = ("not ingested", "not predicted", "not routed", "not scored for concepts", "complete")


class BatchesSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def stages(self, batches: list[str], models_by_task: dict[str, str], tasks: Iterable[LabelingTask] = (),
               scorers: dict[str, Collection[str]] | None = None) -> dict[str, str]:
        """The stage of each batch for the configured tasks (`models_by_task`: task name -> model id; `tasks`:
        their definitions, whose scope says which inputs each routes; `scorers`: task name -> the classifiers whose
        concept scores count, see `services.concepts.ConceptScorer`). Each stage writes in one transaction, so a
        batch is never half way through one."""
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

        scoped = {task.name: task for task in tasks}

        def to_route(batch: str, task: str) -> int:
            """How many of the batch's inputs the task routes."""
            definition = scoped.get(task)
            if definition is None:
                return inputs.get(batch, 0)
            if definition.skips_batch(batch):
                return 0
            if not definition.inputs.paths:
                return inputs.get(batch, 0)
            return int(self.s.scalar(f"SELECT count(*) FROM inputs WHERE batch = $batch AND {scope_sql(definition)}",
                                     {"batch": batch}))

        def stage(batch: str) -> str:
            expected = inputs.get(batch, 0)
            if batch not in ingested:
                return "not ingested"
            if any(predicted.get((batch, model), 0) < expected for model in models_by_task.values()):
                return "not predicted"
            if any(routed.get((batch, task), 0) < to_route(batch, task) for task in models_by_task):
                return "not routed"
            # A task's batch holds one classifier's scores at a time, so the counts of its classifiers add up.
            if any(sum(predicted.get((batch, m), 0) for m in models) < expected
                   for task, models in (scorers or {}).items()
                   if not (task in scoped and scoped[task].skips_batch(batch))):
                return "not scored for concepts"
            return "complete"

        return {batch: stage(batch) for batch in batches}

    def predicted_too_high(self, batches: list[str], models_by_task: dict[str, str],
                           tasks: Iterable[LabelingTask]) -> set[str]:
        """The batches whose stored predictions stop above the lowest lower threshold of a task that routes them:
        re-routing them needs their predictions made again first."""
        return {batch for batch in batches for task in tasks if task.name in models_by_task
                and not task.skips_batch(batch)
                and task.lowest_lower < (self.s.predictions.batch_floor(batch, models_by_task[task.name]) or 0.0)}
