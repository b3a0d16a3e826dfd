"""The labeling tasks a deployment runs, each from its YAML file."""

from pathlib import Path

import dagster as dg

from core.task_config import LabelingTask, TaskConfigError, check_class_map, load_task
from resources.detector import Detector, LoadedModel, file_sha256


class LabelingTasks(dg.ConfigurableResource):
    """Task files to run on every batch; each task keeps its own annotations."""

    task_files: list[str]

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
        return sorted(tasks, key=lambda task: task.priority_rank)  # stable: file order within a priority


def detector_for(task: LabelingTask, default: Detector) -> Detector:
    """The task's own weights (and size) if it names them, else the deployment's detector; its confidence floor
    low enough for the task's lowest lower threshold (the deployment's floor when that is lower)."""
    weights = task.weights_path()
    chosen = {"weights": str(weights), "imgsz": task.model.imgsz or default.imgsz} if weights else {}
    return Detector(**{**default.model_dump(), **chosen, "conf_floor": min(default.conf_floor, task.lowest_lower)})


def detectors_for(tasks: list[LabelingTask], default: Detector) -> list[Detector]:
    """One detector per distinct weights file among the tasks that annotate objects (the default when no task is
    configured; none when every task annotates whole images only), at the lowest floor any of those tasks needs."""
    unique: dict[tuple, Detector] = {}
    chosen = [detector_for(task, default) for task in tasks if task.detects] if tasks else [default]
    for detector in chosen:
        key = (str(Path(detector.weights).resolve()), detector.imgsz)
        if key not in unique or detector.conf_floor < unique[key].conf_floor:
            unique[key] = detector
    return list(unique.values())


def models_by_task(tasks: list[LabelingTask], default: Detector) -> dict[str, str]:
    """Task name -> the model id (weights hash) it detects with, for the tasks that annotate objects."""
    paths = {task.name: detector_for(task, default).weights_path() for task in tasks if task.detects}
    hashes = {path: file_sha256(path) for path in set(paths.values())}
    return {name: hashes[path] for name, path in paths.items()}


def check_class_maps(tasks: list[LabelingTask], default: Detector, models: list[tuple[Detector, LoadedModel]]) -> None:
    """Each task's class_map against the classes of the model it predicts with."""
    by_weights = {str(chosen.weights_path()): model for chosen, model in models}
    for task in [t for t in tasks if t.detects]:
        model = by_weights[str(detector_for(task, default).weights_path())]
        check_class_map(task, model.class_names, model.name)
