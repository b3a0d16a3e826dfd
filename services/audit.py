"""Label audits of a task: which of people's labels are likely wrong (`core.audit`), judged by a detector that did
not learn from them where there is one, and the top findings sent to review with their reasons.

The auditor of each image is the first of the task's detectors that was not trained on it: the task's current
detector, then the detectors the model loop trained for the task (newest first), then the weights those started
from. A detector trained on an image has learned its labels, errors included, and mostly agrees with them; when
every detector saw an image, the current one audits it and the report says so. `folds` trains K detectors
instead, each on the other folds' labels, so no image is audited by a model that saw it.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from core.annotations import AnnotationEvent, Source, Status, human_annotation_id
from core.audit import Finding, FindingKind, audit_labels
from core.formats.yolo import write_yolo
from core.manifests import split_of
from core.model_loop import training_classes
from core.task_config import LabelingTask
from engines.base import model_ref
from services.model_loop import DetectorTrainer
from services.ports import StoredImages, UnitsOfWork, VersionFiles
from store import Session


@dataclass(frozen=True)
class Candidate:
    """A detector that may audit: its weights, and the images it was trained on (empty when autoannotate did not
    train it on this task)."""

    model_id: str
    path: Path
    role: str
    trained_on: frozenset[str] = frozenset()


@dataclass
class AuditReport:
    task: str
    images: int
    labels: int
    auditors: list[dict[str, Any]]
    findings: list[Finding]
    counts: dict[str, int]
    seconds: float
    already_sent: int = 0
    auditor_of: dict[str, str] = field(default_factory=dict)  # image -> the detector that audited it
    sent: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self, top: int | None = None) -> dict[str, Any]:
        shown = self.findings[:top] if top else self.findings
        return {"task": self.task, "images": self.images, "labels": self.labels, "auditors": self.auditors,
                "counts": self.counts, "findings": [f.as_dict() for f in shown], "shown": len(shown),
                "seconds": round(self.seconds, 2), "already_sent": self.already_sent, "sent": self.sent}


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def candidates(s: Session, task: LabelingTask, current: Path, versions: VersionFiles) -> list[Candidate]:
    """The task's detectors in the order they are preferred as auditors, each with the images it trained on."""
    trained = s.models.trained(task.name).iloc[::-1]  # newest first
    training_of = {row.model_id: (Path(row.path), row.version_key) for row in trained.itertuples()}

    def trained_on(model_id: str) -> frozenset[str]:
        if model_id not in training_of:
            return frozenset()
        held = s.audits.version_inputs(training_of[model_id][1])
        groups = s.inputs.split_groups(list(held))
        return frozenset(i for i in held if split_of(groups[i], versions.val_ratio, versions.test_ratio) == "train")

    current_id = model_ref(current).model_id
    chosen = [Candidate(current_id, current, "the task's current detector", trained_on(current_id))]
    for row in trained.itertuples():
        chosen.append(Candidate(row.model_id, Path(row.path), f"trained on {row.version_key}",
                                trained_on(row.model_id)))
    for parent in dict.fromkeys(trained["parent_id"].dropna()):
        if parent not in training_of:
            chosen.append(Candidate(parent, Path(s.predictions.model_path(parent)), "the weights the loop started "
                                    "from", frozenset()))
    unique = {c.model_id: c for c in reversed(chosen)}  # the first mention of a model wins
    return [unique[c.model_id] for c in chosen if unique[c.model_id] is c and c.path.is_file()]


def choose_auditors(images: list[str], options: list[Candidate]) -> dict[str, tuple[Candidate, bool]]:
    """Image -> (its auditor, whether that auditor was trained on it): the first option that was not, else the
    first option."""
    chosen = {}
    for input_id in images:
        fresh = next((c for c in options if input_id not in c.trained_on), None)
        chosen[input_id] = (fresh, False) if fresh is not None else (options[0], True)
    return chosen


def _concept_predictions(task: LabelingTask, found: pd.DataFrame) -> pd.DataFrame:
    concepts = found["class_name"].map(task.concept_for)
    return found.assign(concept=concepts)[concepts.notna()]


def predictions_of(store: UnitsOfWork, images: StoredImages, detector: Any, task: LabelingTask, input_ids: list[str],
                   floor: float, log: Callable[[str], object]) -> pd.DataFrame:
    """The detector's predictions (as task concepts) on the inputs: stored ones where it ran at `floor` or lower,
    the others predicted now and kept in memory (an audit writes nothing)."""
    model = detector.load()
    stored, processed = store.read(lambda s: s.audits.stored_predictions(model.model_id, input_ids, floor))
    missing = [i for i in input_ids if i not in processed]
    if missing:
        log(f"{task.name}: predicting {len(missing)} images with {model.name} ({model.model_id[:12]})")
        fresh, _ = detector.predict_stored(model, images, missing, "audit")
        stored = pd.concat([stored, fresh[list(stored.columns)]], ignore_index=True) if len(fresh) else stored
    return _concept_predictions(task, stored)


def fold_of(input_id: str, folds: int) -> int:
    return int(input_id[8:16], 16) % folds  # not the digits the train/val split uses


def fold_predictions(store: UnitsOfWork, images: StoredImages, detector: Any, training: DetectorTrainer,
                     task: LabelingTask, labels: pd.DataFrame, input_ids: list[str], folds: int, floor: float,
                     log: Callable[[str], object]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """K-fold auditors: for each fold, the task's current detector fine-tuned on the other folds' labels (in its
    own class space) predicts the fold. Trained weights stay in a scratch folder; returns the predictions and, per
    fold, its images, labels and seconds."""
    parent = detector.load()
    class_of = training_classes(task, parent.class_names)
    held = labels[labels["concept"].isin(class_of)]
    inputs = store.read(lambda s: s.inputs.sizes(input_ids)).assign(file_name=lambda f: f["input_id"] + ".png")
    predicted, report = [], []
    for fold in range(folds):
        started = time.monotonic()
        inside = [i for i in input_ids if fold_of(i, folds) == fold]
        outside = inputs[~inputs["input_id"].isin(inside)]
        with tempfile.TemporaryDirectory() as scratch:
            data = Path(scratch) / "data"
            rows = held[held["input_id"].isin(outside["input_id"])].assign(
                concept=lambda f: f["concept"].map(class_of), polygon=None)
            write_yolo(rows, outside, images.path_for, data, parent.class_names, (0.0, 0.0))
            # Ultralytics builds a val loader even with val=False: it reads the train images again.
            (data / "data.yaml").write_text((data / "data.yaml").read_text().replace("val: images/val",
                                                                                     "val: images/train"))
            log(f"{task.name}: fold {fold + 1}/{folds}: fine-tuning {parent.name} on {len(outside)} images "
                f"({len(rows)} labels) to audit {len(inside)}")
            weights = training.train(Path(detector.weights_path()), data / "data.yaml",
                                     lambda line, f=fold: log(f"{task.name}: fold {f + 1}: {line}"),
                                     root=Path(scratch) / "weights")
            fold_detector = detector.model_copy(update={"weights": str(weights)})
            model = fold_detector.load()
            found, _ = fold_detector.predict_stored(model, images, inside, "audit")
            predicted.append(_concept_predictions(task, found))
            report.append({"fold": fold + 1, "model_id": model.model_id, "trained_on_images": len(outside),
                           "trained_on_labels": len(rows), "audited_images": len(inside),
                           "seconds": round(time.monotonic() - started, 1)})
    return pd.concat(predicted, ignore_index=True) if predicted else pd.DataFrame(), report


def audit_task(store: UnitsOfWork, images: StoredImages, versions: VersionFiles, task: LabelingTask, detector: Any,
               training: DetectorTrainer | None = None, folds: int = 0,
               log: Callable[[str], object] = print) -> AuditReport:
    """Rank the task's people's labels by how likely each is wrong. `detector`: the task's current detector (the
    `Detector` resource for its weights); `folds` > 1 trains that many auditors with `training`. Writes nothing."""
    started = time.monotonic()
    floor = task.lowest_lower
    labels, sizes = store.read(lambda s: s.audits.labels(task.name))
    input_ids = sorted(sizes)
    if not input_ids:
        return AuditReport(task.name, 0, 0, [], [], {str(k): 0 for k in FindingKind}, time.monotonic() - started)
    if folds > 1:
        if training is None:
            raise ValueError("a k-fold audit trains detectors: it needs the training resource")
        predictions, per_fold = fold_predictions(store, images, detector, training, task, labels, input_ids, folds,
                                                 floor, log)
        auditors = [{**f, "role": f"fold {f['fold']} of {folds}", "saw_audited_images": 0} for f in per_fold]
    else:
        options = store.read(lambda s: candidates(s, task, detector.weights_path(), versions))
        chosen = choose_auditors(input_ids, options)
        predictions, auditors = [], []
        for option in options:
            mine = [i for i in input_ids if chosen[i][0] is option]
            if not mine:
                continue
            seen = sum(1 for i in mine if chosen[i][1])
            runner = detector.model_copy(update={"weights": str(option.path),
                                                 "conf_floor": min(detector.conf_floor, floor)})
            predictions.append(predictions_of(store, images, runner, task, mine, floor, log))
            auditors.append({"model_id": option.model_id, "weights": option.path.name, "role": option.role,
                             "audited_images": len(mine), "saw_audited_images": seen})
        predictions = pd.concat(predictions, ignore_index=True)
    findings = audit_labels(labels, predictions, sizes, task.concepts, confident=floor)
    if folds > 1:
        by_fold = {a["fold"] - 1: a["model_id"] for a in auditors}
        auditor_of = {i: by_fold[fold_of(i, folds)] for i in input_ids}
    else:
        auditor_of = {i: chosen[i][0].model_id for i in input_ids}
    sent_before = store.read(lambda s: s.audits.sent(task.name))
    fresh = [f for f in findings if sent_key(task, f, auditor_of[f.input_id]) not in sent_before]
    counts = {str(k): sum(1 for f in fresh if f.kind == k) for k in FindingKind}
    return AuditReport(task.name, len(input_ids), int(labels["audited"].sum()), auditors, fresh, counts,
                       time.monotonic() - started, len(findings) - len(fresh), auditor_of)


def sent_key(task: LabelingTask, finding: Finding, auditor: str) -> str:
    """The annotation a finding puts in review: the label itself, or for a missed object the annotation made for
    the auditor's prediction."""
    if finding.annotation_id is not None:
        return finding.annotation_id
    return human_annotation_id(task.name, finding.input_id, finding.concept, finding.box, f"audit:{auditor}")


def send_findings(store: UnitsOfWork, task: LabelingTask, report: AuditReport, count: int, user: str
                  ) -> list[dict[str, Any]]:
    """The top `count` findings into review as AWAITING_REVIEW, each recorded with its reason in `audit_sends`;
    the task's reviewers get the images as any review item. A label still accepted goes back to review; a missed
    object becomes an annotation of the auditor's prediction. Returns what was sent."""
    auditor_of = report.auditor_of
    now = _now()

    def write(s: Session) -> list[dict[str, Any]]:
        events, sends = [], []
        for finding in report.findings:
            if len(sends) == count:
                break
            key = sent_key(task, finding, auditor_of[finding.input_id])
            if finding.annotation_id is not None:
                current = s.history.current_one(finding.annotation_id)
                if current.status != Status.SUCCESS:
                    continue
                events.append(replace(current, status=Status.AWAITING_REVIEW, annotator=user, event_at=now,
                                      rules=None))
            else:
                if s.history.exists(key):
                    continue
                box = finding.box
                events.append(AnnotationEvent(key, task.name, finding.input_id, finding.prediction_id,
                                              auditor_of[finding.input_id], None, finding.concept, box.x1, box.y1,
                                              box.x2, box.y2, None, finding.confidence, Status.AWAITING_REVIEW,
                                              user, Source.REVIEW, now))
            sends.append({"task": task.name, "annotation_id": key, "input_id": finding.input_id,
                          "kind": str(finding.kind), "score": finding.score, "evidence": finding.evidence,
                          "model_id": auditor_of[finding.input_id], "sent_by": user, "sent_at": now})
        s.history.append(events)
        s.audits.record_sends(sends)
        if task.consensus:
            s.consensus.assign_new(task, now)
        else:
            s.reviews.assign_new(task, now)
        return sends

    sent = store.write(write)
    report.sent = [{k: v for k, v in row.items() if k not in ("task", "sent_at")} for row in sent]
    return report.sent

