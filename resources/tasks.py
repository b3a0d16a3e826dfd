"""The labeling tasks a deployment runs, each from its YAML file, with the detector each one currently uses."""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from core.locations import is_remote
from core.task_config import LabelingTask, TaskConfigError, check_class_map, load_task
from engines.base import LoadedModel, model_ref
from resources.detector import Detector
from resources.store import DuckDBStore
from storage.blobs import blob_store, local_file
from store import Session

PROMOTED = "promoted.json"  # in the models store: task name -> the weights it was promoted to


class LabelingTasks(dg.ConfigurableResource):
    """Task files to run on every batch; each task keeps its own annotations. `models`: the models store (a folder
    or s3://bucket/prefix) whose `promoted.json` names the detector each task was promoted to (it overrides the
    task file's `model.weights`); the database's `model_promotions` holds the history, this blob the current
    state, read without opening the database (a sensor or the daemon must not wait for the database's lock).
    Promoted weights in a bucket are loaded from this machine's copy under `cache`."""

    task_files: list[str]
    models: str = ""
    cache: str = "cache/models"

    def promoted_weights(self) -> dict[str, dict[str, str]]:
        """Task name -> the weights it was promoted to: `weights` (a path, or an s3:// URL) and `sha256` (the id
        recorded when they were trained; absent in records written before pins existed)."""
        if not self.models:
            return {}
        try:
            record = json.loads(blob_store(self.models).read(PROMOTED))
        except KeyError:
            return {}
        return {name: entry if isinstance(entry, dict) else {"weights": entry} for name, entry in record.items()}

    def change_model(self, store: DuckDBStore, task: LabelingTask, model_id: str, weights: Path | str, action: str,
                     decided_by: str, reason: str) -> None:
        """Make `weights` (id `model_id`; a path, or the s3:// URL of weights in the models store) the task's
        detector: a row in `model_promotions` (with the model it replaces), then the record `load` reads. Back to
        the task file's own weights, the task's entry goes."""
        now = datetime.now(UTC).replace(tzinfo=None)
        previous = model_ref(task.weights_path()).model_id

        def record(s: Session) -> None:
            s.models.record_promotion(task.name, model_id, previous, action, decided_by, reason, now)

        store.write(record)
        current = self.promoted_weights()
        own = load_task(task.source_file).weights_path()
        location = str(weights) if is_remote(weights) else str(Path(weights).resolve())
        if own is not None and location == str(own.resolve()):
            current.pop(task.name, None)
        else:
            current[task.name] = {"weights": location, "sha256": model_id}
        blob_store(self.models).put(PROMOTED, (json.dumps(current, indent=1, sort_keys=True) + "\n").encode())

    def load(self) -> list[LabelingTask]:
        tasks, problems = [], []
        for path in self.task_files:  # every broken file at once
            try:
                tasks.append(load_task(path))
            except TaskConfigError as error:
                problems.append(str(error))
        if problems:
            raise TaskConfigError(" ".join(problems))
        names = [task.name for task in tasks]
        for name in names:
            if names.count(name) > 1:
                raise TaskConfigError(f"Two task files use the name {name!r}; task names must be unique.")
        by_name = {task.name: task for task in tasks}
        for name, entry in self.promoted_weights().items():
            task = by_name.get(name)
            if task is not None and task.model is not None:  # the promoted weights, pinned to their record's id
                weights = str(local_file(entry["weights"], Path(self.cache)))
                by_name[name] = task.model_copy(update={"model": task.model.model_copy(
                    update={"weights": weights, "sha256": entry.get("sha256")})})
        tasks = list(by_name.values())
        return sorted(tasks, key=lambda task: task.priority_rank)  # stable: file order within a priority


def detector_for(task: LabelingTask, default: Detector) -> Detector:
    """The task's own weights (and size) if it names them, else the deployment's detector; its confidence floor
    low enough for the task's lowest lower threshold (the deployment's floor when that is lower)."""
    weights = task.weights_path()
    chosen = ({"weights": str(weights), "imgsz": task.model.imgsz or default.imgsz,
               "precision": task.model.precision or default.precision, "sha256": task.model.sha256 or ""}
              if weights and task.model else {})
    return Detector(**{**default.model_dump(), **chosen, "conf_floor": min(default.conf_floor, task.lowest_lower)})


def detectors_for(tasks: list[LabelingTask], default: Detector) -> list[Detector]:
    """One detector per distinct weights file among the tasks that annotate objects (the default when no task is
    configured; none when every task annotates whole images only), at the lowest floor any of those tasks needs."""
    unique: dict[tuple, Detector] = {}
    chosen = [detector_for(task, default) for task in tasks if task.detects] if tasks else [default]
    for detector in chosen:
        key = (str(Path(detector.weights).resolve()), detector.imgsz, detector.precision)
        if key not in unique or detector.conf_floor < unique[key].conf_floor:
            unique[key] = detector
    return list(unique.values())


def models_by_task(tasks: list[LabelingTask], default: Detector) -> dict[str, str]:
    """Task name -> the model id its predictions carry (the weights' hash, or its INT8 graph's), for the tasks that
    annotate objects."""
    return {task.name: detector_for(task, default).predicting_model_id() for task in tasks if task.detects}


def check_class_maps(tasks: list[LabelingTask], default: Detector, models: list[tuple[Detector, LoadedModel]]) -> None:
    """Each task's class_map against the classes of the model it predicts with."""
    by_weights = {str(chosen.weights_path()): model for chosen, model in models}
    for task in [t for t in tasks if t.detects]:
        model = by_weights[str(detector_for(task, default).weights_path())]
        check_class_map(task, model.class_names, model.name)


def check_task_models(tasks: list[LabelingTask], default: Detector) -> None:
    """Before a run takes anything: each detecting task's weights exist and hold every class its class_map names
    (read from the checkpoints; nothing is loaded for inference)."""
    for task in [t for t in tasks if t.detects]:
        detector = detector_for(task, default)
        _, class_names = detector.describe()
        check_class_map(task, class_names, detector.weights_path().name)
