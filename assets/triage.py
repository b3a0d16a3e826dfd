"""Stage 3: the `annotations` asset routes predictions by each task's thresholds.

Annotations are an append-only history of status events (`store.history`). A re-run appends an
event only where the auto status changed (so re-running with the same thresholds writes nothing and
keeps every timestamp), retires auto annotations that no longer pass, and never touches an
annotation a person has decided.
"""

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from assets import metadata_keys
from assets.checks import column_schema, table_metadata, table_schema_check
from assets.inference import predictions
from assets.partitions import batch_partitions
from core.annotations import LIVE_STATUSES, Kind, Source, Status
from core.image_checks import load_oriented_rgb
from core.plots import annotated_grid, confidence_histograms, markdown_image
from core.results import TaskRouting
from core.routing import route_predictions
from core.task_config import LabelingTask
from resources.concepts import ConceptModels
from resources.detector import Detector
from resources.image_store import ImageStore
from resources.store import DuckDBStore, RetryingStore, write_or_retry
from resources.tasks import LabelingTasks, detector_for
from services.review_order import embed_review_images
from services.routing import annotate_task

SAMPLE_IMAGES = 6


def log_hand_over(log: Callable[[str], object], task: str, handed_over: dict[str, dict[str, int]]) -> None:
    """One run-log line per removed reviewer whose open images moved."""
    for removed, counts in handed_over.items():
        log(f"task {task}: {removed} is no longer a reviewer; their {sum(counts.values())} open images went to "
            + ", ".join(f"{reviewer} ({n})" for reviewer, n in sorted(counts.items())))


@dg.asset(
    partitions_def=batch_partitions,
    deps=[predictions],
    group_name="triage",
    kinds={"duckdb", "python"},
    pool="duckdb",
    metadata=table_metadata("annotations"),
    description="Status events of every task's annotations for the batch: SUCCESS above the upper threshold, "
                "AWAITING_REVIEW (assigned to a reviewer) between the thresholds (DuckDB table `annotations`).",
)
def annotations(context: dg.AssetExecutionContext, store: DuckDBStore, tasks: LabelingTasks,
                detector: Detector, images: ImageStore, concept_models: ConceptModels) -> dg.MaterializeResult:
    batch = context.partition_key
    now = datetime.now(UTC).replace(tzinfo=None)
    per_task, queues, pictures, totals, embedded = {}, {}, {}, {}, {}
    for task in [t for t in tasks.load() if t.detects]:
        model_id = detector_for(task, detector).predicting_model_id()
        per_task[task.name] = write_or_retry(
            store, lambda s, task=task, model_id=model_id: annotate_task(s, task, batch, model_id, now))
        log_hand_over(context.log.info, task.name, per_task[task.name].handed_over)
        if task.review_order != "doubt":  # the queue places images by their embeddings
            embedded[task.name] = embed_review_images(RetryingStore(store), images, concept_models, task,
                                                      Path(detector.weights), context.log.info)
        queues[task.name] = store.read(lambda s, task=task: s.reviews.progress_of(task))
        pictures.update(task_pictures(store, images, task, batch, model_id))
        totals.update(task_totals(store, task.name, per_task[task.name], queues[task.name]))
    return dg.MaterializeResult(metadata={
        "dagster/column_schema": column_schema("annotations"),  # the Columns tab reads the latest event
        **totals,
        "dagster/row_count": sum(t.appended_events for t in per_task.values()),
        metadata_keys.BANDS: {name: t.bands for name, t in per_task.items()},
        "review_queues": queues,
        "unmapped_predictions": sum(t.unmapped_predictions for t in per_task.values()),
        **({"review_order_embedded_images": embedded} if embedded else {}),
        metadata_keys.ROUTING_RULES: dg.MetadataValue.json({task.name: task.rules_hash for task in tasks.load()}),
        **pictures,
    })


def task_totals(store: DuckDBStore, task: str, routing: TaskRouting,
                queues: dict[str, dict[str, int]]) -> dict[str, int]:
    """Numbers the asset page shows at a glance (and plots across batches): this batch's bands beside the task's
    current totals, so a batch of duplicates still shows where the task stands."""
    by_status = store.read(lambda s: s.history.counts(task)).groupby("status")["n"].sum()
    return {
        f"{task}: batch accepted": routing.accepted,
        f"{task}: batch to review": routing.to_review,
        f"{task}: batch discarded": routing.discarded,
        f"{task}: total accepted": int(by_status.get(str(Status.SUCCESS), 0)),
        f"{task}: total awaiting review": int(by_status.get(str(Status.AWAITING_REVIEW), 0)),
        f"{task}: total rejected": int(by_status.get(str(Status.REJECTED), 0)),
        f"{task}: images reviewed": sum(q["reviewed"] for q in queues.values()),
        f"{task}: images assigned to reviewers": sum(q["assigned"] for q in queues.values()),
    }


def task_pictures(store: DuckDBStore, images: ImageStore, task: LabelingTask, batch: str,
                  model_id: str) -> dict[str, dg.MetadataValue]:
    """Confidence histograms with the thresholds, and a few annotated images of the batch."""
    confidences, current = store.read(lambda s: (
        s.predictions.batch_confidences(batch, model_id),
        s.history.current(task=task.name, batch=batch, status=LIVE_STATUSES, kind=Kind.BOX)))
    routed = route_predictions(confidences, task)
    sample_ids = sorted(current["input_id"].unique())[:SAMPLE_IMAGES]
    samples = [(load_oriented_rgb(images.read(i)), current[current["input_id"] == i]) for i in sample_ids]
    return {
        f"{task.name} confidence histogram": dg.MetadataValue.md(
            markdown_image(confidence_histograms(routed, task), f"{task.name} confidences")),
        f"{task.name} sample annotations": dg.MetadataValue.md(
            markdown_image(annotated_grid(samples), f"{task.name} samples") if samples else "no annotations"),
    }


annotations_schema_check = table_schema_check(annotations, "annotations", "batch = $partition")
annotation_state_schema_check = table_schema_check(annotations, "annotation_state", "batch = $partition")
review_assignments_schema_check = table_schema_check(
    annotations, "review_assignments", "input_id IN (SELECT input_id FROM task_inputs WHERE batch = $partition)")


def upper_rule_violations(store: DuckDBStore, tasks: list[LabelingTask], batch: str) -> dict[str, list[str]]:
    """Per task, predictions of the batch's current auto SUCCESS annotations that the rules which wrote them
    would not accept (at most 10 each); empty when all pass."""
    violations: dict[str, list[str]] = {}
    for task in tasks:
        current, definitions = store.read(lambda s, task=task: (
            frame := s.history.current(task=task.name, batch=batch, source=Source.AUTO, status=[Status.SUCCESS]),
            s.history.routing_definitions(sorted(frame["rules"].dropna().unique()))))
        for rules, written in current.groupby(current["rules"].fillna(""), sort=True):
            # Events from before rules were recorded are checked against the task's current rules.
            writer = task.under_rules(definitions[rules]) if rules else task
            routed = route_predictions(written.rename(columns={"concept": "class_name"}), writer)
            # A task may have its review band write SUCCESS too (`band_status`).
            bad = routed.loc[routed["band"].map(writer.band_statuses()) != str(Status.SUCCESS), "prediction_id"]
            bad = bad.tolist()
            if bad:
                violations.setdefault(task.name, []).extend(bad[:10])
    return violations


@dg.asset_check(asset=annotations, blocking=True, partitions_def=batch_partitions,
                description="Every current auto SUCCESS annotation of the batch passes the upper rule of the routing "
                            "rules that wrote it (a threshold changed since does not make it wrong).")
def auto_success_passes_upper_rule(context: dg.AssetCheckExecutionContext, store: DuckDBStore,
                                   tasks: LabelingTasks) -> dg.AssetCheckResult:
    violations = upper_rule_violations(store, tasks.load(), context.partition_key)
    return dg.AssetCheckResult(passed=not violations, metadata={"violations": violations})


@dg.asset_check(asset=annotations, blocking=True, partitions_def=batch_partitions,
                description="No input of the batch is assigned to two reviewers of one task.")
def no_input_has_two_reviewers(context: dg.AssetCheckExecutionContext, store: DuckDBStore) -> dg.AssetCheckResult:
    doubles = store.read(lambda s: s.reviews.inputs_with_two_reviewers(context.partition_key))
    return dg.AssetCheckResult(passed=doubles == 0, metadata={"inputs_with_two_reviewers": doubles})


@dg.asset_check(asset=annotations, blocking=True, partitions_def=batch_partitions,
                description="Every annotation box of the batch lies inside [0, 1] with x1 < x2 and y1 < y2.")
def boxes_are_inside_the_image(context: dg.AssetCheckExecutionContext, store: DuckDBStore) -> dg.AssetCheckResult:
    bad = store.read(lambda s: s.history.bad_boxes(context.partition_key))
    return dg.AssetCheckResult(passed=bad == 0, metadata={"bad_boxes": bad})


@dg.asset_check(asset=annotations, blocking=True, partitions_def=batch_partitions,
                description="No object on the batch's images has two live annotations: no two live boxes of one task "
                            "and concept on one image overlap with IoU >= 0.9, whatever path wrote them.")
def one_annotation_per_object(context: dg.AssetCheckExecutionContext, store: DuckDBStore) -> dg.AssetCheckResult:
    pairs = store.read(lambda s: s.history.overlapping_live_pairs(context.partition_key))
    return dg.AssetCheckResult(passed=pairs.empty, metadata={
        "overlapping_pairs": len(pairs), "first_pairs": dg.MetadataValue.json(pairs.to_dict("records"))
        if len(pairs) else dg.MetadataValue.text("none")})


@dg.asset_check(asset=annotations, blocking=True, partitions_def=batch_partitions,
                description="The current state of the batch's annotations (`annotation_state`) is their latest event.")
def state_is_latest_event(context: dg.AssetCheckExecutionContext, store: DuckDBStore) -> dg.AssetCheckResult:
    differing = store.read(lambda s: s.history.state_differences(context.partition_key))
    return dg.AssetCheckResult(passed=differing == 0, metadata={"differing_annotations": differing})
