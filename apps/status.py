"""Counts a user checks: what was ingested, rejected, predicted, annotated and reviewed."""

from __future__ import annotations

from collections.abc import Collection

from core.annotations import Kind
from core.task_config import LabelingTask
from resources.store import DuckDBStore
from services.concepts import concept_scorers
from store import Session


def annotation_counts(s: Session, task: str | None) -> tuple[dict, dict, dict]:
    """Current annotations by status; boxes by concept then status; image-level concepts by concept then status
    (retired ones left out)."""
    by_status: dict[str, int] = {}
    by_kind: dict[str, dict[str, dict[str, int]]] = {str(Kind.BOX): {}, str(Kind.CONCEPT): {}}
    for row in s.history.counts(task).itertuples():
        by_status[row.status] = by_status.get(row.status, 0) + int(row.n)
        by_kind[row.kind].setdefault(row.concept, {})[row.status] = int(row.n)
    return by_status, by_kind[str(Kind.BOX)], by_kind[str(Kind.CONCEPT)]


def collect_status(store: DuckDBStore, task: str | None = None, batches: list[str] = (),
                   models: dict[str, str] | None = None, rules_of: list[LabelingTask] = ()) -> dict:
    """One object with the totals of every table; the JSON of `autoannotate status [--task NAME]`. With the
    pinned `batches` and the configured tasks' `models` (task -> model id), also the batches not complete;
    with the configured tasks (`rules_of`), how many batches each routed under rules it no longer has."""
    scorers = concept_scorers(store, list(rules_of))

    def read(s: Session) -> dict:
        def unscored(name: str, models: Collection[str]) -> int:
            """Batches these models have not scored every input of, for the task."""
            stages = s.batches.stages(list(batches), {}, rules_of, {name: models})
            return sum(stage == "not scored for concepts" for stage in stages.values())

        totals = s.inputs.totals()
        by_status, by_concept, by_image_concept = annotation_counts(s, task)
        configured = {t.name: t for t in rules_of}
        # Every configured task (one with nothing done yet too) and every task with progress: the most urgent
        # first (configured priority), then by name; tasks no longer configured last.
        tasks = [task] if task else sorted(set(s.history.tasks_with_progress()) | set(configured), key=lambda name: (
            configured[name].priority_rank if name in configured else 3, name))
        return {
            **totals,
            "predictions": s.predictions.total(),
            "annotations": by_status,
            "annotations_by_concept": by_concept,
            "image_concepts_by_concept": by_image_concept,
            "tasks": {name: {"priority": configured[name].priority if name in configured else None,
                             "model_id": (models or {}).get(name),
                             "inputs_processed": s.history.processed_count(name), "inputs_total": totals["inputs"],
                             "inputs_scored_for_concepts": s.concepts.scored_count(name),
                             "review": s.reviews.progress_of(configured[name]) if name in configured
                             else s.reviews.progress(name),
                             "switched_off": name in configured and not configured[name].auto_annotate,
                             # A context-based classifier with no concept it can learn yet scores nothing.
                             "waiting_for_labels": name in configured and name not in scorers
                             and configured[name].classifier is not None
                             and configured[name].classifier.kind == "context"} for name in tasks},
            # Scored, but not by the classifier the task's labels give now: what `run --rescore` would score.
            "batches_scored_by_earlier_classifiers": {
                name: n for name, scorer in scorers.items()
                if (n := unscored(name, {scorer.current}) - unscored(name, scorer.counted))},
            "batches_routed_under_older_rules": {
                t.name: n for t in rules_of if (n := len(s.history.batches_routed_under_other_rules(t)))},
            "unfinished_batches": {
                b: stage for b, stage in s.batches.stages(
                    list(batches), models or {}, rules_of, {n: c.counted for n, c in scorers.items()}).items()
                if stage != "complete"},
        }

    status = store.read(read)
    if task:
        status["task"] = task
        status["review"] = status["tasks"][task]["review"]
        status["inputs_processed"] = status["tasks"][task]["inputs_processed"]
    else:
        status["review"] = {f"{name}/{reviewer}": counts for name, t in status["tasks"].items()
                            for reviewer, counts in t["review"].items()}
    return status
