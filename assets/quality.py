"""Stage 5: `label_quality`, how good each task's labels are, measured against the labels people confirmed; and
`label_audit`, which of people's labels are likely wrong."""

import dagster as dg

from assets.triage import annotations
from core.plots import markdown_image, precision_recall_curves
from core.task_config import LabelingTask
from resources.detector import Detector
from resources.image_store import ImageStore
from resources.store import DuckDBStore
from resources.tasks import LabelingTasks, detector_for
from resources.versions import VersionStore
from services.audit import audit_task
from services.consensus import reviewer_agreement

FIGURES = ("reference_boxes", "precision", "precision_low", "precision_high", "recall", "recall_low", "recall_high",
           "precision_with_review", "recall_with_review", "share_auto_accepted", "auto_accepted", "review_load",
           "spot_checks", "note")


TARGET_CHECK = "thresholds_meet_target_precision"


def target_misses(task: LabelingTask, report: dict) -> tuple[dict, dict]:
    """For a task that sets target_precision: the concepts whose accepted band's lower bound is below it, and
    those with too few reference boxes to tell."""
    below, unmeasured = {}, {}
    if task.target_precision is None:
        return below, unmeasured
    for concept, figures in report.items():
        if figures["precision_low"] is None:
            unmeasured[f"{task.name}/{concept}"] = figures["note"] or "no accepted predictions"
        elif figures["precision_low"] < task.target_precision:
            below[f"{task.name}/{concept}"] = (f"precision {figures['precision']:.3f}, lower bound "
                                               f"{figures['precision_low']:.3f} < target {task.target_precision}")
    return below, unmeasured


@dg.asset(
    deps=[dg.AssetDep(annotations, partition_mapping=dg.AllPartitionMapping())],
    group_name="quality",
    kinds={"duckdb", "python"},
    description="Per task and concept: precision and recall (95 % Wilson intervals) of the auto-accepted band and "
                "of accepted + review, against imported labels and finished reviews; the share auto-accepted, the "
                "review load and a precision/recall curve with the thresholds marked (`autoannotate quality`).",
    # The check judges the figures the asset has just measured: measuring them twice would read the store twice.
    check_specs=[dg.AssetCheckSpec(
        TARGET_CHECK, asset="label_quality",
        description="Every concept of a task that sets target_precision reaches it: the lower end of the accepted "
                    "band's 95 % interval is at least the target (concepts with too few reference boxes are "
                    "listed, not failed).")],
)
def label_quality(store: DuckDBStore, tasks: LabelingTasks) -> dg.MaterializeResult:
    metadata: dict = {}
    below, unmeasured = {}, {}
    for task in tasks.load():
        report = store.read(lambda s, t=task: s.quality.report(t))
        metadata[task.name] = {concept: {k: figures[k] for k in FIGURES} for concept, figures in report.items()}
        for concept, figures in report.items():
            if figures["precision_low"] is not None:  # numbers the UI plots over materializations
                metadata[f"{task.name}/{concept} precision (low)"] = dg.FloatMetadataValue(figures["precision_low"])
        metadata[f"{task.name}: precision and recall"] = dg.MarkdownMetadataValue(
            markdown_image(precision_recall_curves(report, task), f"precision and recall of {task.name}"))
        agreement = reviewer_agreement(store, task)
        if agreement is not None:
            metadata[f"{task.name}: reviewer agreement"] = dg.JsonMetadataValue(agreement)
        missed, untold = target_misses(task, report)
        below |= missed
        unmeasured |= untold
    check = dg.AssetCheckResult(check_name=TARGET_CHECK, passed=not below, severity=dg.AssetCheckSeverity.WARN,
                                metadata={"below_target": below, "not_measured": unmeasured,
                                          "hint": "autoannotate calibrate --task TASK --target-precision P --write"})
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


AUDIT_TOP = 20  # findings each task's materialization lists


@dg.asset(
    deps=[dg.AssetDep(annotations, partition_mapping=dg.AllPartitionMapping())],
    group_name="quality",
    kinds={"duckdb", "python", "cleanlab"},
    description="Per task: people's labels ranked by how likely each is wrong (missed object, wrong concept, bad "
                "box, duplicate label), from cleanlab's object-detection label-quality scores over the predictions "
                "of a detector that did not learn those labels where the task has one (`autoannotate audit`). "
                "Writes nothing: `autoannotate audit --send N` puts findings in review.",
)
def label_audit(context: dg.AssetExecutionContext, store: DuckDBStore, tasks: LabelingTasks, images: ImageStore,
                versions: VersionStore, detector: Detector) -> dg.MaterializeResult:
    metadata: dict = {}
    for task in [t for t in tasks.load() if t.detects]:
        report = audit_task(store, images, versions, task, detector_for(task, detector), log=context.log.info)
        metadata[task.name] = dg.JsonMetadataValue({
            "images": report.images, "labels": report.labels, "counts": report.counts, "auditors": report.auditors,
            "already_sent": report.already_sent,
            "top": [{k: f[k] for k in ("kind", "score", "input_id", "annotation_id", "concept", "evidence")}
                    for f in report.as_dict(AUDIT_TOP)["findings"]]})
        metadata[f"{task.name}/findings"] = dg.IntMetadataValue(sum(report.counts.values()))
    return dg.MaterializeResult(metadata=metadata)
