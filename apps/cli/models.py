"""Detector weights: `model classes|train|list|promote|rollback`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from apps.cli.common import emit, print_table, verb, verbs
from core.settings import Settings


def registry_of(settings: Settings) -> tuple:
    from resources import build_resources

    resources = build_resources(settings)
    return resources["store"], resources["tasks"]


def command_model_train(args: argparse.Namespace, settings: Settings) -> None:
    from apps.model_registry import detecting_tasks
    from apps.runner import train_detectors

    detecting_tasks(registry_of(settings)[1], None)  # a sentence, before a run, when no task has a detector to train
    day = args.date or datetime.now(UTC).date().isoformat()
    outcomes = train_detectors(settings, day)
    emit(args, {"day": day, "tasks": outcomes}, lambda r: [print(
        f"{task}: " + (f"model {o['model_id'][:12]} from {o['version']}: {o['reason']}" if o["trained"]
                       else f"not trained: {o['why']}")) for task, o in r["tasks"].items()])


def command_model_list(args: argparse.Namespace, settings: Settings) -> None:
    from apps.model_registry import list_models, promotion_history

    store, tasks = registry_of(settings)
    emit(args, {"models": list_models(store, tasks, args.task, settings.precision),
                "promotions": promotion_history(store, tasks, args.task)}, render_model_list)


def render_model_list(r: dict) -> None:
    print_table([{**{k: "-" if v is None else v for k, v in m.items()}, "model_id": m["model_id"][:12],
                  "parent_id": (m["parent_id"] or "-")[:12], "current": "yes" if m["current"] else ""}
                 for m in r["models"]],
                ["task", "model_id", "parent_id", "version_key", "evaluated_on", "map50", "map50_95",
                 "auto_accepted", "current", "runs_as"])
    if r["promotions"]:
        print("\npromotions and rollbacks:")
        print_table([{**p, "model_id": p["model_id"][:12]} for p in r["promotions"]],
                    ["decided_at", "task", "action", "model_id", "decided_by", "reason"])


def command_model_change(args: argparse.Namespace, settings: Settings) -> None:
    """`model promote` and `model rollback`."""
    from apps.model_registry import promote_model, rollback_model

    store, tasks = registry_of(settings)
    result = (promote_model(store, tasks, args.model_id, args.user, args.task) if args.action == "promote"
              else rollback_model(store, tasks, args.user, args.task))
    emit(args, result, lambda r: print(f"task {r['task']}: {r['action']} -> model {r['model_id'][:12]}; the next "
                                       "batches (and `autoannotate run`, which predicts the earlier ones again) "
                                       "use it"))


def command_model_classes(args: argparse.Namespace, settings: Settings) -> None:
    from resources import build_resources
    from resources.detector import Detector
    from resources.tasks import detector_for

    resources = build_resources(settings)
    default: Detector = resources["detector"]
    tasks = [] if args.weights else resources["tasks"].load()
    if args.weights:
        path = Path(args.weights).expanduser().resolve()
        detectors = [Detector(**{**default.model_dump(), "weights": str(path)})]
    else:
        detectors = [detector_for(task, default) for task in tasks]
    models: dict[str, dict] = {}
    for index, detector in enumerate(detectors):
        model_id, class_names = detector.describe()  # a listing loads no runtime and exports nothing
        weights = str(detector.weights_path())
        entry = models.setdefault(weights, {"weights": weights, "model_id": model_id, "classes": class_names,
                                            "tasks": {}})
        if tasks:
            entry["tasks"][tasks[index].name] = {c: tasks[index].concept_for(c) for c in class_names}
    emit(args, {"models": list(models.values())}, render_model_classes)


def render_model_classes(result: dict) -> None:
    for model in result["models"]:
        print(f"model {model['weights']} ({model['model_id'][:12]}): {len(model['classes'])} classes")
        rows = [{"id": i, "class": c, **{f"{t} concept": m[c] or "-" for t, m in model["tasks"].items()}}
                for i, c in enumerate(model["classes"])]
        print_table(rows, ["id", "class", *(f"{t} concept" for t in model["tasks"])])


def register(sub: argparse._SubParsersAction) -> None:
    model = verbs(verb(sub, "model", "detector weights", "autoannotate model classes ~/models/best.pt",
                       json_option=False))
    classes = verb(model, "classes", "a model's class ids and names, and the concept each task maps them to",
                   "autoannotate model classes ~/models/best.pt", command_model_classes)
    classes.add_argument("weights", nargs="?", help="weights file (default: the models of the configured tasks)")
    train = verb(model, "train", "fine-tune every task's detector on a day's dataset version, evaluate it and "
                 "promote it by the task's rule", "autoannotate model train --date 2026-11-22", command_model_train)
    train.add_argument("--date", help="the version's day, YYYY-MM-DD (default: today, UTC)")
    listed = verb(model, "list", "trained detectors, their figures, each task's current",
                  "autoannotate model list --task demo-shapes --json", command_model_list)
    promote = verb(model, "promote", "make a trained detector a task's current one",
                   "autoannotate model promote 3f2a9c4e1b7d --user alice", command_model_change)
    promote.add_argument("model_id", help="its id (at least 8 hex digits, as `model list` shows)")
    rollback = verb(model, "rollback", "back to the detector the current one replaced",
                    "autoannotate model rollback --task demo-shapes --user alice", command_model_change)
    for parser in (listed, promote, rollback):
        parser.add_argument("--task", help="task name (default: the first configured task that detects)")
    for parser in (promote, rollback):
        parser.add_argument("--user", required=True, help="who decides (recorded in model_promotions)")
