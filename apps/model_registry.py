"""The detectors of each task, for people: which were trained from which version, how they measured, which one
each task uses; promoting one by hand and rolling back (`autoannotate model list|promote|rollback`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.locations import is_remote
from core.task_config import LabelingTask, load_task
from engines.base import model_ref
from resources.detector import NOT_YET_QUANTIZED, Detector
from resources.store import DuckDBStore
from resources.tasks import LabelingTasks


def detecting_tasks(tasks: LabelingTasks, name: str | None) -> list[LabelingTask]:
    chosen = [t for t in tasks.load() if t.detects and (name is None or t.name == name)]
    if not chosen:
        raise ValueError(f"No configured task that detects objects is called {name!r}." if name else
                         f"No configured task detects objects (configured: "
                         f"{', '.join(t.name for t in tasks.load()) or 'none'}): the model loop trains a task's "
                         "detector, so it needs a task with `model.weights`.")
    return chosen


def runs_as(task: LabelingTask, precision: str) -> str:
    """How the task's current weights run: fp32, or int8 with the quantized model's id (its predictions' id)."""
    chosen = task.model.precision if task.model and task.model.precision else precision
    if chosen == "fp32":
        return "fp32"
    quantized = Detector(weights=str(task.weights_path()), precision=chosen).predicting_model_id()
    if quantized.startswith(NOT_YET_QUANTIZED):
        return f"{chosen} (quantized by the next run)"
    return f"{chosen} (model {quantized[:12]})"


def list_models(store: DuckDBStore, tasks: LabelingTasks, task_name: str | None = None,
                precision: str = "fp32") -> list[dict]:
    """Every detector trained for the tasks, and each task's current one: model_id, parent_id, version_key (what
    it was trained on), the latest evaluation's version (`evaluated_on`), mAP50, mAP50-95 and auto-accepted share,
    `current`, and for the current one how it runs (`runs_as`: fp32, or int8 at the task's or the deployment's
    `precision`)."""
    listed = []
    for task in detecting_tasks(tasks, task_name):
        current = model_ref(task.weights_path()).model_id
        trained = store.read(lambda s, t=task: s.models.trained(t.name))
        rows = trained.to_dict("records")
        if current not in set(trained["model_id"]):
            figures = store.read(lambda s, t=task, m=current: s.models.latest_evaluation(m, t.name)) or {
                "map50": None, "map50_95": None, "auto_accepted": None, "evaluated_on": None}
            rows.insert(0, {"model_id": current, "path": str(task.weights_path()), "parent_id": None,
                            "version_key": None, "training": None, **figures})
        for row in rows:
            listed.append({"task": task.name, "model_id": row["model_id"], "parent_id": row["parent_id"],
                           "version_key": row["version_key"], "evaluated_on": row["evaluated_on"],
                           "map50": _number(row["map50"]), "map50_95": _number(row["map50_95"]),
                           "auto_accepted": _number(row["auto_accepted"]), "path": row["path"],
                           "current": row["model_id"] == current,
                           "runs_as": runs_as(task, precision) if row["model_id"] == current else None})
    return listed


def promotion_history(store: DuckDBStore, tasks: LabelingTasks, task_name: str | None = None) -> list[dict]:
    """Every promotion and rollback of the tasks, oldest first: who or what decided, and why."""
    rows = []
    for task in detecting_tasks(tasks, task_name):
        history = store.read(lambda s, t=task: s.models.promotions(t.name))
        rows += [{**row, "decided_at": row["decided_at"].isoformat(sep=" ", timespec="seconds")}
                 for row in history.to_dict("records")]
    return rows


def _number(value: object) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 4)


def promote_model(store: DuckDBStore, tasks: LabelingTasks, model_id: str, user: str,
                  task_name: str | None = None) -> dict:
    """Make a trained detector the task's current one, by hand."""
    task = detecting_tasks(tasks, task_name)[0]
    trained = store.read(lambda s: s.models.trained(task.name))
    match = trained[trained["model_id"].str.startswith(model_id)] if len(model_id) >= 8 else trained.iloc[0:0]
    if len(match) != 1:
        raise ValueError(f"No detector trained for task {task.name!r} has the id {model_id!r} (give at least 8 of "
                         "its hex digits; `autoannotate model list` shows them).")
    chosen = match.iloc[0]
    if chosen["model_id"] == model_ref(task.weights_path()).model_id:
        raise ValueError(f"Model {chosen['model_id'][:12]} is already task {task.name!r}'s detector.")
    tasks.change_model(store, task, chosen["model_id"], chosen["path"], "promote", user,
                       f"promoted by {user}")
    return {"task": task.name, "model_id": chosen["model_id"], "action": "promote"}


def rollback_model(store: DuckDBStore, tasks: LabelingTasks, user: str, task_name: str | None = None) -> dict:
    """Back to the detector the current one replaced when it was promoted."""
    task = detecting_tasks(tasks, task_name)[0]
    history = store.read(lambda s: s.models.promotions(task.name))
    current = model_ref(task.weights_path()).model_id
    made_current = history[(history["action"] == "promote") & (history["model_id"] == current)]
    if made_current.empty:
        raise ValueError(f"Task {task.name!r} uses a detector no promotion chose ({current[:12]}): there is "
                         "nothing to roll back.")
    previous = made_current.iloc[-1]["previous_model_id"]
    path = _weights_of(store, task, previous)
    tasks.change_model(store, task, previous, path, "rollback", user, f"rolled back by {user} from {current[:12]}")
    return {"task": task.name, "model_id": previous, "action": "rollback", "from": current}


def _weights_of(store: DuckDBStore, task: LabelingTask, model_id: str) -> Path | str:
    """Where the weights with this id are: a registered model's path (or its location in the models bucket), or
    the task file's own weights."""
    own = load_task(task.source_file).weights_path()
    if own is not None and model_ref(own).model_id == model_id:
        return own
    stored = store.read(lambda s: s.predictions.model_path(model_id))
    if stored is None or not (is_remote(stored) or Path(stored).is_file()):
        raise ValueError(f"The weights of model {model_id[:12]} are no longer on disk ({stored}); cannot roll back.")
    return stored
