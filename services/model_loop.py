"""The model loop for one task and day: fine-tune its current detector on the day's dataset version (the train
split), measure the candidate and the current detector on the same val split, and promote the candidate when the
task's `promote_when` rule says so."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from core.model_loop import (
    METRICS,
    average_precision,
    concepts_without_class,
    promotion_decision,
    share_auto_accepted,
    training_classes,
)
from core.results import TrainingOutcome
from core.task_config import LabelingTask
from engines.base import LoadedModel, model_ref
from services.exports import EXPORT_RECORD, default_negatives, export_version
from services.ports import StoredImages, UnitsOfWork, VersionFiles

DECIDED_BY_RULE = "promote_when"
DEFAULT_TARGET_PRECISION = 0.95  # the precision autoannotate's own measure calibrates to when a task sets none


class TaskDetector(Protocol):
    """A task's current detector: its weights and how it runs."""

    @property
    def conf_floor(self) -> float: ...

    def weights_path(self) -> Path: ...

    def load(self) -> LoadedModel: ...


class DetectorTrainer(Protocol):
    """Fine-tuning and evaluation of detectors (the `DetectorTraining` resource)."""

    @property
    def epochs(self) -> int: ...

    @property
    def imgsz(self) -> int: ...

    @property
    def batch(self) -> int: ...

    @property
    def device(self) -> str: ...

    @property
    def architecture(self) -> str: ...

    def labelled_boxes(self, data: Path, split: str) -> int: ...

    def train(self, parent: Path, data: Path, log: Callable[[str], object], root: Path | None = None) -> Path: ...

    def publish(self, weights: Path) -> str: ...

    def val_predictions(self, weights: Path, data: Path, conf_floor: float) -> tuple[pd.DataFrame, pd.DataFrame]: ...

    def evaluate(self, weights: Path, data: Path) -> dict[str, Any]: ...

    def class_names(self, weights: Path) -> list[str]: ...


class ModelChanges(Protocol):
    """Where a task's current detector is recorded (the `LabelingTasks` resource)."""

    def change_model(self, store: Any, task: LabelingTask, model_id: str, weights: Path | str, action: str,
                     decided_by: str, reason: str) -> Any: ...


def train_task(task: LabelingTask, day: str, store: UnitsOfWork, images: StoredImages, versions: VersionFiles,
               parent_detector: TaskDetector, training: DetectorTrainer, tasks: ModelChanges,
               log: Callable[[str], object] = print) -> TrainingOutcome:
    """Train, evaluate and maybe promote one task's detector (`parent_detector`: the task's current one) on its
    version of `day`; what happened."""
    version_key = f"{task.name}@{day}"
    parent = parent_detector.weights_path()
    parent_model = parent_detector.load()
    # A concept no class of the detector stands for can only be learned in the task's concept space: a new head of
    # nc = the task's concepts (Ultralytics builds it when the dataset's nc differs, transferring every weight whose
    # shape fits), whose classes are the concepts themselves.
    new_concepts = concepts_without_class(task, parent_model.class_names)
    with tempfile.TemporaryDirectory() as scratch:
        exported = export_version(store, images, versions, version_key, "yolo", Path(scratch) / "data",
                                  negatives=default_negatives(store, task)[0],
                                  model_classes=None if new_concepts else (
                                      parent_model.class_names, training_classes(task, parent_model.class_names)))
        data = Path(exported.out)
        train_labels = training.labelled_boxes(data, "train")
        # The export placed each image in its split: the train split's ids are the files of images/train.
        input_of = json.loads((data.parent / EXPORT_RECORD).read_text())["images"]
        train_ids = sorted(input_of[image.name] for image in (data.parent / "images" / "train").iterdir())
        chosen_by = store.read(lambda s: s.models.label_origins(task.name, train_ids, version_key))
        train_images, val_images = exported.counts["train"], exported.counts["val"]
        if not train_images or not val_images or not train_labels:
            return TrainingOutcome(False, why=f"{version_key} has {train_images} train images holding {train_labels} "
                                              f"labels the detector can learn, and {val_images} val images: both "
                                              "splits need images and the train split labels")
        space = (f"in the task's concept space (new head for {', '.join(new_concepts)})" if new_concepts
                 else "in its own class space")
        log(f"{task.name}: fine-tuning {parent.name} {space} on {version_key} ({train_images} train images, "
            f"{train_labels} labels; {val_images} val images) ...")
        trained = training.train(parent, data, lambda line: log(f"{task.name}: {line}"))
        target = task.target_precision or DEFAULT_TARGET_PRECISION

        def measured(weights: Path) -> dict:
            predicted, labels = training.val_predictions(weights, data, parent_detector.conf_floor)
            # Class ids of the two detectors differ from each other there: measured on the concepts both map to.
            figures = (average_precision(predicted.assign(concept=predicted["class_name"].map(task.concept_for)),
                                         labels.assign(concept=labels["class_name"]), task.concepts)
                       if new_concepts else training.evaluate(weights, data))
            return {**figures, "auto_accepted": share_auto_accepted(task, predicted, labels, target)}

        figures = {which: measured(weights) for which, weights in (("candidate", trained), ("current", parent))}
        class_names = training.class_names(trained)
        stored = training.publish(trained)  # where the workers that predict with it will read it
    model_id, parent_id = model_ref(trained).model_id, parent_model.model_id
    now = datetime.now(UTC).replace(tzinfo=None)
    settings = {"epochs": training.epochs, "imgsz": training.imgsz, "batch": training.batch,
                "device": training.device, "from": training.architecture or "parent weights",
                "classes": "task concepts" if new_concepts else "parent classes", "train_labels": train_labels,
                "train_images": len(train_ids), "chosen_by": {**chosen_by, "review_order": task.review_order}}

    def record(s) -> None:
        s.predictions.register_model(parent_id, parent_model.name, parent_model.path, parent_model.task_type,
                                     parent_model.class_names, now)
        s.predictions.register_model(model_id, trained.name, stored, parent_model.task_type,
                                     class_names, now, details={
                                         "kind": "trained", "task": task.name, "version_key": version_key,
                                         "parent_id": parent_id, "training": settings})
        for which, evaluated in (("candidate", model_id), ("current", parent_id)):
            s.models.record_evaluation(evaluated, task.name, version_key,
                                       {**figures[which], "images": val_images}, now)

    store.write(record)
    promote, reason = promotion_decision(task.promote_when, figures["candidate"], figures["current"])
    if promote:
        tasks.change_model(store, task, model_id, stored, "promote", DECIDED_BY_RULE, reason)
    log(f"{task.name}: model {model_id[:12]} {reason}")
    return TrainingOutcome(
        True, model_id=model_id, parent_id=parent_id, version=version_key, promoted=promote, reason=reason,
        training=settings, per_class=figures["candidate"]["per_class"],
        figures={**{f"{which} {metric}": round(figures[which][metric], 4) for which in figures for metric in METRICS},
                 **{f"{which} auto-accepted at precision {target}": figures[which]["auto_accepted"]["share"]
                    for which in figures}})
