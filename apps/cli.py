"""`autoannotate`: the things people do by hand, each with --json for scripts.

Every command exits 0 on success and non-zero with one line on stderr on error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

from core.annotations import Kind, Status
from core.formats import EXPORT_FORMATS, FORMATS, IMPORT_FORMATS, LINK_MODES
from core.manifests import NEGATIVE_CHOICES, SPLITS
from core.settings import Settings
from core.task_config import LabelingTask

SHOWN_REJECTIONS = 20


class UserError(Exception):
    """An error whose message is meant for the user as it is."""


class Parser(argparse.ArgumentParser):
    """argparse that fails like every other command: one line on stderr and exit 1 (not usage and 2)."""

    def error(self, message: str) -> None:
        self.exit(1, f"autoannotate: {message} (see `{self.prog} --help`).\n")


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain aligned text table."""
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def emit(args: argparse.Namespace, payload: dict, render: Callable[[dict], None]) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))
    else:
        render(payload)


def command_demo(args: argparse.Namespace, settings: Settings) -> None:
    from apps.demo_scenes import write_demo_images
    from resources.inbox import list_inbox_files

    inbox = Path(args.inbox) if args.inbox else settings.inbox_path
    if args.if_empty and inbox.is_dir() and list_inbox_files(inbox):
        paths = []
    else:
        paths = write_demo_images(inbox, args.count, seed=args.seed)
    emit(args, {"inbox": str(inbox), "written": len(paths)},
         lambda p: print(f"wrote {p['written']} demo images into {p['inbox']}"))


def command_run(args: argparse.Namespace, settings: Settings) -> None:
    from apps.runner import run_pipeline
    from resources import build_resources

    inbox = Path(args.inbox).resolve() if args.inbox else None
    if inbox is not None and not inbox.is_dir():
        raise UserError(f"The inbox {inbox} is not a folder.")
    run_settings = settings.with_run_options(inbox, args.task)
    if args.task:
        if "task_files" in settings.from_environment:
            raise UserError("AUTOANNOTATE_TASKS is set, and it decides the tasks of every command; unset it to "
                            "use --task, or list the files there.")
        from resources.tasks import check_task_models

        # A broken file, missing weights or a class the model lacks is refused before the files are remembered.
        resources = build_resources(run_settings)
        check_task_models(resources["tasks"].load(), resources["detector"])
        run_settings.remember_task_files()
    summary = run_pipeline(run_settings, progress=None if args.json else print, build_version=args.version,
                           reroute=args.reroute, rescore=args.rescore)
    emit(args, summary, render_run_summary)


def render_run_summary(summary: dict) -> None:
    for item in summary["resumed"]:
        print(f"finished batch {item['batch']} ({item['inputs']} inputs), which was {item['stage']} (a run stopped, "
              "a task was added or changed, an import's images waited for the model, or new labels taught a "
              "classifier)")
    for batch in summary["rerouted"]:
        print(f"re-routed batch {batch} under the current rules")
    if summary["still_written"]:
        print(f"{len(summary['still_written'])} file(s) still being written, left for the next run: "
              + ", ".join(summary["still_written"][:5]) + (" ..." if len(summary["still_written"]) > 5 else ""))
    if summary["batch"] is None:
        if summary.get("inbox_missing"):
            print(f"The inbox {summary['inbox']} does not exist: put images there, or pass --inbox FOLDER.")
        else:
            print(f"Nothing new in the inbox {summary['inbox']}: every file there was already ingested or "
                  "rejected.")
        return
    print(f"\nbatch {summary['batch']}: {summary['files']} files")
    print_table([{"what": k, "count": v} for k, v in summary["ingestion"].items()], ["what", "count"])
    print("\npredictions per class:")
    print_table([{"class": k, "predictions": v} for k, v in summary["predictions"].items()], ["class", "predictions"])
    for name, model in summary.get("inference", {}).items():
        print(f"\nmodel {name}: {model['images_per_second']} images/s on {model['runtime']}")
    for name, task in summary.get("tasks", {}).items():
        print(f"\ntask {name}: per concept")
        print_table([{"concept": c, "accepted": b["accept"], "to review": b["review"], "discarded": b["discard"]}
                     for c, b in task["bands"].items()], ["concept", "accepted", "to review", "discarded"])
        print(f"\ntask {name}: review queues")
        print_table([{"reviewer": r, "inputs assigned": q["assigned"], "reviewed": q["reviewed"]}
                     for r, q in task["review"].items()], ["reviewer", "inputs assigned", "reviewed"])
    for key, version in summary.get("versions", {}).items():
        print(f"\ndataset version {key}: {version['annotations']} accepted annotations on {version['inputs']} "
              f"images, {version['negatives']} negative images, manifest {version['manifest_sha256'][:16]}")
    print_rejections(summary["rejections"], summary["ingestion"]["rejected"])


def print_rejections(rejections: list[dict], total: int) -> None:
    """The rejected files with their reasons: the first `SHOWN_REJECTIONS`, then how many more."""
    if not total:
        return
    print(f"\nrejected files ({total}):")
    for item in rejections[:SHOWN_REJECTIONS]:
        print(f"  {item['uri']}: {item['reason']}")
    if total > SHOWN_REJECTIONS:
        print(f"  ... and {total - SHOWN_REJECTIONS} more (`autoannotate status --json` lists "
              f"{SHOWN_REJECTIONS}; the table rejected_inputs holds all)")


def command_status(args: argparse.Namespace, settings: Settings) -> None:
    from apps.status import collect_status
    from core.review_rules import ReviewError, task_named
    from resources import build_resources
    from resources.tasks import models_by_task

    resources = build_resources(settings)
    tasks = resources["tasks"].load()
    if args.task:
        try:
            task_named(tasks, args.task)
        except ReviewError as error:
            raise UserError(str(error)) from None
    status = collect_status(resources["store"], task=args.task, batches=resources["inbox"].batches(),
                            models=models_by_task(tasks, resources["detector"]), rules_of=tasks)
    emit(args, status, render_status)


def render_status(status: dict) -> None:
    print_table([{"what": k, "count": status[k]} for k in ("inputs", "rejected", "duplicates", "predictions")],
                ["what", "count"])
    print_rejections(status["rejected_files"], status["rejected"])
    print("\nannotations (current state):")
    statuses = [Status.SUCCESS, Status.AWAITING_REVIEW, Status.REJECTED]
    print_table([{"concept": c, **{s: counts.get(s, 0) for s in statuses}}
                 for c, counts in status["annotations_by_concept"].items()], ["concept", *statuses])
    if status["image_concepts_by_concept"]:
        print("\nimage-level concepts (current state):")
        statuses = [Status.SUCCESS, Status.AWAITING_REVIEW, Status.PENDING, Status.REJECTED]
        print_table([{"concept": c, **{s: counts.get(s, 0) for s in statuses}}
                     for c, counts in status["image_concepts_by_concept"].items()], ["concept", *statuses])
    for name, task in status["tasks"].items():
        total = task["inputs_total"]
        done = [f"{task[key]}/{total} inputs {what}" for key, what in (
            ("inputs_processed", "processed for objects"),
            ("inputs_scored_for_concepts", "scored for image-level concepts")) if task[key]]
        priority = f" (priority {task['priority']})" if task["priority"] else ""
        priority += f", detector {task['model_id'][:12]}" if task["model_id"] else ""
        # Nothing done yet: a task with a detector processes inputs for objects, one without scores concepts.
        nothing = f"0/{total} inputs " + ("processed for objects" if task["model_id"]
                                          else "scored for image-level concepts")
        print(f"\ntask {name}{priority}: {', '.join(done) or nothing}")
        if task["switched_off"]:
            print("auto_annotate is false: its model runs, it writes nothing")
        if task["waiting_for_labels"]:
            print("its concept classifier has nothing to learn from yet: label images with its concepts "
                  "(`autoannotate import --format concepts-csv`, or in review; each concept needs an image with it "
                  "and one without), then `autoannotate run` scores every image")
        if task["review"]:
            print_table([{"reviewer": r, **q} for r, q in task["review"].items()],
                        ["reviewer", "assigned", "reviewed"])
    for name, count in status["batches_scored_by_earlier_classifiers"].items():
        print(f"\ntask {name}: {count} batches were scored by an earlier concept classifier; `autoannotate run "
              "--rescore` scores them with the one its labels give now")
    for name, count in status["batches_routed_under_older_rules"].items():
        print(f"\ntask {name}: {count} batches were routed under earlier thresholds; `autoannotate run --reroute` "
              "re-routes them under the current ones")
    if status["unfinished_batches"]:
        print("\nunfinished batches (a run stopped before they were complete, a task changed, or new labels made "
              "their concept scores stale; the next `autoannotate run` "
              "finishes them):")
        print_table([{"batch": b, "stage": stage} for b, stage in status["unfinished_batches"].items()],
                    ["batch", "stage"])


def configured_task(settings: Settings, name: str | None) -> tuple[dict, LabelingTask]:
    """The resources and the configured task called `name` (the first one without a name); an unknown name is
    `task_named`'s sentence (a ValueError, which `main` prints)."""
    from core.review_rules import task_named
    from resources import build_resources

    resources = build_resources(settings)
    return resources, task_named(resources["tasks"].load(), name)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _interval(figures: dict, name: str) -> str:
    """`name` with its interval, as "p [low, high]"."""
    return f"{_share(figures[name])} [{_share(figures[name + '_low'])}, {_share(figures[name + '_high'])}]"


def _or_dash(value: object) -> object:
    return "-" if value is None else value


def _threshold(value: float | None) -> str:
    return "none reaches it" if value is None else f"{value:.4g}"


def command_quality(args: argparse.Namespace, settings: Settings) -> None:
    resources, task = configured_task(settings, args.task)
    report = resources["store"].read(lambda s: s.quality.report(task, args.confidence))
    concepts = {c: {k: v for k, v in figures.items() if k != "curve"} for c, figures in report.items()}
    emit(args, {"task": task.name, "confidence": args.confidence, "iou": task.match_iou, "concepts": concepts},
         render_quality)


def render_quality(result: dict) -> None:
    print(f"label quality of task {result['task']} against the labels people confirmed (IoU >= {result['iou']}; "
          f"[low, high]: {result['confidence']:.0%} Wilson intervals)")
    print_table([{"concept": c, "reference boxes": f["reference_boxes"], "thresholds": f"{f['upper']} / {f['lower']}",
                  "precision": _interval(f, "precision"), "recall": _interval(f, "recall"),
                  "with review: precision / recall": f"{_share(f['precision_with_review'])} / "
                                                     f"{_share(f['recall_with_review'])}",
                  "auto-accepted": _share(f["share_auto_accepted"]), "review load": f["review_load"]}
                 for c, f in result["concepts"].items()],
                ["concept", "reference boxes", "thresholds", "precision", "recall", "with review: precision / recall",
                 "auto-accepted", "review load"])
    for concept, figures in result["concepts"].items():
        if figures["note"]:
            print(f"{concept}: {figures['note']}")
    checked = {c: f["spot_checks"] for c, f in result["concepts"].items()
               if f["spot_checks"]["accepted_checked"] or f["spot_checks"]["discarded_checked"]}
    if checked:
        print("\nspot checks (decided by a person), scaled to their whole band:")
        print_table([{"concept": c, "accepted checked": f["accepted_checked"],
                      "accepted precision": _interval(f, "accepted_precision"),
                      "est. false accepts": _or_dash(f["estimated_false_accepts"]),
                      "discarded checked": f["discarded_checked"], "miss rate": _interval(f, "miss_rate"),
                      "est. missed objects": _or_dash(f["estimated_misses"])}
                     for c, f in checked.items()],
                    ["concept", "accepted checked", "accepted precision", "est. false accepts", "discarded checked",
                     "miss rate", "est. missed objects"])


def command_calibrate(args: argparse.Namespace, settings: Settings) -> None:
    from apps.quality import write_calibrated_task

    for flag, value in (("--target-precision", args.target_precision), ("--confidence", args.confidence),
                        ("--target-recall", args.target_recall)):
        if value is not None and not 0 < value < 1:
            raise UserError(f"{flag} {value} is not a proportion between 0 and 1 (e.g. 0.95).")
    resources, task = configured_task(settings, args.task)
    proposal = resources["store"].read(lambda s: s.quality.calibration(task, args.target_precision, args.confidence,
                                                                        args.target_recall))
    if args.write and all(p["upper"] is None for p in proposal.values()):
        # A calibrated file with every threshold unchanged would only look calibrated.
        raise UserError(f"Nothing written: no concept of task {task.name!r} can be calibrated to a precision of "
                        f"{args.target_precision}: " + "; ".join(
                            f"{c}: {p['note'] or 'no threshold reaches it'} ({p['reference_boxes']} reference boxes)"
                            for c, p in proposal.items()) + ".")
    written = str(write_calibrated_task(task, proposal, args.target_precision)) if args.write else None
    emit(args, {"task": task.name, "target_precision": args.target_precision, "confidence": args.confidence,
                "target_recall": args.target_recall, "concepts": proposal, "written": written}, render_calibration)


def render_calibration(result: dict) -> None:
    print(f"thresholds of task {result['task']} for a precision of at least {result['target_precision']} "
          f"(the lower end of its {result['confidence']:.0%} interval)"
          + (f" and a recall with review of {result['target_recall']}" if result["target_recall"] else ""))
    print_table([{"concept": c, "reference boxes": p["reference_boxes"],
                  "upper": f"{p['current_upper']:.4g} -> {_threshold(p['upper'])}",
                  "lower": f"{p['current_lower']:.4g} -> {_threshold(p['lower'])}",
                  "expected precision (low)": _share(p["expected_precision_low"]),
                  "auto-accepted": _share(p["share_auto_accepted"]),
                  "review load": _or_dash(p["review_load"])}
                 for c, p in result["concepts"].items()],
                ["concept", "reference boxes", "upper", "lower", "expected precision (low)", "auto-accepted",
                 "review load"])
    for concept, proposed in result["concepts"].items():
        if proposed["note"]:
            print(f"{concept}: {proposed['note']}")
    missed = [c for c, p in result["concepts"].items() if p["target_recall_reached"] is False]
    if missed:
        print(f"no lower threshold keeps the target recall for {', '.join(missed)}: the lowest confidence stored "
              "is proposed")
    print(f"wrote {result['written']}" if result["written"] else
          "nothing written (add --write for a calibrated copy of the task file)")


def command_dry_run(args: argparse.Namespace, settings: Settings) -> None:
    from apps.dry_run import dry_run

    emit(args, dry_run(settings, args.task, [Path(p) for p in args.images]), render_dry_run)


def render_dry_run(result: dict) -> None:
    print(f"task {result['task']} (nothing is written)")
    for key, title in (("predictions", "boxes"), ("concepts", "image-level concepts")):
        rows = [{"image": image["image"], **p, "confidence": f"{p['confidence']:.4f}"} for image in result["images"]
                for p in image.get(key, [])]
        if any(key in image for image in result["images"]):
            print(f"\n{title}:")
            print_table(rows, ["image", "class_name", "concept", "confidence", "band", "status"])
    for image in result["images"]:
        if "rejected" in image:
            print(f"  {image['rejected']}")


def command_import(args: argparse.Namespace, settings: Settings) -> None:
    from apps.dataset_io import import_labels

    resources, task = configured_task(settings, args.task)
    path = Path(args.path)
    if not path.exists():
        raise UserError(f"{path} does not exist.")
    result = import_labels(resources["store"], resources["images"], args.format, path, task.name, args.user,
                           resources["inbox"].max_pixels, task.concepts,
                           suggestions_for=task if args.as_what == "suggestions" else None,
                           match_iou=task.match_iou, inbox=resources["inbox"], trust_sizes=args.trust_sizes)
    emit(args, {"task": task.name, **result}, render_import)


def render_import(result: dict) -> None:
    print(f"imported {result['labels']} labels on {result['images']} images into task {result['task']}: "
          f"{result['annotations_written']} new annotations ({result['status']}), {result['new_inputs']} new inputs"
          + (f", {result['newly_assigned']} images newly in reviewers' queues" if result["newly_assigned"] else ""))
    print(f"its images are batch {result['batch']}: the next `autoannotate run` predicts and routes them for the "
          "configured tasks (a person's label wins over a prediction it matches)")
    if result["matched_existing"]:
        print(f"{result['matched_existing']} labels matched an annotation the task already had (IoU >= its match_iou): "
              f"{result['taken_over']} took it over (same annotation, now the imported box), {result['unchanged']} "
              "said the same already; no object got a second annotation")
    for item in result["identical_files"]:
        print(f"byte-identical files, one image: {', '.join(item['files'])}: their labels merged into "
              f"{item['labels']}" + (f", {item['conflicting_labels']} labels only some of them carry (kept)"
                                     if item["conflicting_labels"] else ""))
    if result["images_without_labels"]:
        print(f"{result['images_without_labels']} of those images are listed without a label: a person found "
              + ("none of the concepts on them" if FORMATS[result["format"]].kind == Kind.CONCEPT
                 else "no object on them")
              + " (recorded, once)")
    if result["rescaled_images"]:
        print(f"{len(result['rescaled_images'])} images are not the size their labels state; their boxes were "
              "rescaled to the image (--trust-sizes): " + ", ".join(result["rescaled_images"][:5])
              + (" ..." if len(result["rescaled_images"]) > 5 else ""))
    if result["clipped"]:
        print(f"{result['clipped_boxes']} boxes reached outside their image and were clipped to it: "
              + ", ".join(result["clipped"][:10]) + (" ..." if len(result["clipped"]) > 10 else ""))


def command_version_create(args: argparse.Namespace, settings: Settings) -> None:
    from apps.runner import create_versions

    columns = ["version", "annotations", "inputs", "negatives", "manifest_sha256", "changed"]
    if args.name:
        from apps.dataset_io import create_named_version
        from resources import build_resources

        resources = build_resources(settings)
        versions = create_named_version(resources["store"], resources["versions"], args.name, args.task)
        emit(args, {"name": args.name, "versions": versions}, lambda r: print_table(
            [{"version": k, **{f: v[f] for f in columns[1:]}} for k, v in r["versions"].items()], columns))
        return
    if args.task:
        raise UserError("--task goes with --name: a day's versions are built for every task.")
    day = args.date or datetime.now(UTC).date().isoformat()
    try:
        date.fromisoformat(day)
    except ValueError:
        raise UserError(f"--date {day!r} is not a date (YYYY-MM-DD).") from None
    versions = create_versions(settings, day)
    emit(args, {"day": day, "versions": versions}, lambda r: print_table(
        [{"version": k, **{f: v.get(f, 0) for f in columns[1:]}} for k, v in r["versions"].items()], columns))


def command_version_list(args: argparse.Namespace, settings: Settings) -> None:
    from resources import build_resources

    store = build_resources(settings)["store"]
    versions = store.read(lambda s: s.versions.listing(args.task))
    if args.task and not versions:
        stored = sorted({v["task"] for v in store.read(lambda s: s.versions.listing())})
        if args.task not in stored:
            raise UserError(f"No dataset versions of task {args.task!r}: "
                            + (f"the stored versions are of {', '.join(stored)}." if stored
                               else "no version is stored yet (`autoannotate version create`)."))
    emit(args, {"versions": versions}, lambda r: print_table(
        [{**v, "manifest": v["manifest_sha256"][:16], "frozen": "frozen" if v["frozen"] else "",
          "changed": v["changed_at"][:19]} for v in r["versions"]],
        ["version_key", "annotations", "inputs", "negatives", "frozen", "manifest", "changed"]))


def command_model_loop(args: argparse.Namespace, settings: Settings) -> None:
    """`model train|list|promote|rollback`."""
    from apps.model_registry import detecting_tasks, list_models, promote_model, promotion_history, rollback_model
    from resources import build_resources

    resources = build_resources(settings)
    store, tasks = resources["store"], resources["tasks"]
    if args.action == "train":
        from apps.runner import train_detectors

        detecting_tasks(tasks, None)  # a sentence, before a run, when no task has a detector to train
        day = args.date or datetime.now(UTC).date().isoformat()
        outcomes = train_detectors(settings, day)
        emit(args, {"day": day, "tasks": outcomes}, lambda r: [print(
            f"{task}: " + (f"model {o['model_id'][:12]} from {o['version']}: {o['reason']}" if o["trained"]
                           else f"not trained: {o['why']}")) for task, o in r["tasks"].items()])
        return
    if args.action == "list":
        listed = {"models": list_models(store, tasks, args.task),
                  "promotions": promotion_history(store, tasks, args.task)}

        def render(r: dict) -> None:
            print_table([{**{k: "-" if v is None else v for k, v in m.items()}, "model_id": m["model_id"][:12],
                          "parent_id": (m["parent_id"] or "-")[:12], "current": "yes" if m["current"] else ""}
                         for m in r["models"]],
                        ["task", "model_id", "parent_id", "version_key", "evaluated_on", "map50", "map50_95",
                         "auto_accepted", "current"])
            if r["promotions"]:
                print("\npromotions and rollbacks:")
                print_table([{**p, "model_id": p["model_id"][:12]} for p in r["promotions"]],
                            ["decided_at", "task", "action", "model_id", "decided_by", "reason"])

        emit(args, listed, render)
        return
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


def command_export(args: argparse.Namespace, settings: Settings) -> None:
    from resources import build_resources
    from resources.exports import default_negatives, export_version

    resources = build_resources(settings)
    negatives, why = args.negatives, "as --negatives says"
    if negatives is None:
        configured = {t.name: t for t in resources["tasks"].load()}
        negatives, why = default_negatives(resources["store"], configured.get(args.version.split("@")[0]))
    result = export_version(resources["store"], resources["images"], resources["versions"], args.version,
                            args.format, Path(args.out), negatives=negatives, longest_side=args.resize,
                            overwrite=args.overwrite, link=args.link)
    result["negatives_chosen"] = why
    splits = ", ".join(f"{split} {result[split]}" for split in SPLITS if split in result)
    emit(args, result, lambda r: print(
        f"exported {r['version']} as {r['format']} ({r['labels']} labels): {r['out']}\n"
        f"images: {splits}; {r['annotations']} annotations"
        + (f"; {r['image_concepts']} image-level concepts" if r.get("image_concepts") else "")
        + (f"; {r['negatives']} negative images (no objects) of the version's {r['person_negatives']} made by a "
           f"person and {r['model_negatives']} by the model alone"
           + (f" ({r['negatives_left_out']} left out; --negatives all takes every one)"
              if r["negatives_left_out"] else "") + f"; {r['negatives_chosen']}" if "negatives" in r else "")))


def command_review(args: argparse.Namespace, settings: Settings) -> None:
    from apps.review_desk import ReviewDesk
    from core.review_rules import ReviewError, check_reviewer, task_named
    from resources import build_resources

    resources = build_resources(settings)
    store, tasks = resources["store"], resources["tasks"].load()
    if args.action == "serve":
        import uvicorn

        from apps.review_server import create_app

        refuse_busy_port(args.host, args.port)
        print(f"review page on http://{args.host}:{args.port}/ (Ctrl-C stops it)", file=sys.stderr)
        uvicorn.run(create_app(store, resources["images"], tasks), host=args.host, port=args.port,
                    log_level="warning")
        return
    desk = ReviewDesk(store, tasks)
    try:
        if args.action == "invite":
            url = f"http://{args.host}:{args.port}/?token={desk.invite(args.reviewer)}"
            emit(args, {"reviewer": args.reviewer, "url": url}, lambda r: print(
                f"{r['url']}\n(personal to {r['reviewer']}: whoever opens it decides as {r['reviewer']}; a new invite "
                "replaces it)"))
            return
        if args.action == "list":
            task = task_named(tasks, args.task)
            check_reviewer(task, args.reviewer, assignee=None)
            items = desk.queue(task.name, args.reviewer, [Status.AWAITING_REVIEW] if args.pending else None)
            emit(args, {"task": task.name, "reviewer": args.reviewer, "pending": args.pending, "items": items,
                        "undecided": desk.undecided(task.name, args.reviewer)}, render_queue)
            return
        decision = {"accept": "accept", "reject": "reject", "reopen": "reopen", "relabel": "correct"}[args.action]
        result = desk.decide(args.annotation_id, decision, args.reviewer, concept=getattr(args, "concept", None))
    except ReviewError as error:
        raise UserError(str(error)) from None
    emit(args, result, lambda r: print(f"{r['annotation_id']}: {r['status']} ({r['written']} event(s) written)"))


def render_queue(queue: dict) -> None:
    if not queue["items"]:
        print(f"{queue['reviewer']} has nothing {'left ' if queue.get('pending') else ''}to review in task "
              f"{queue['task']}.")
        return
    # A finished image has nothing left to doubt.
    print_table([{**item, "doubt": "-" if item["doubt"] is None else f"{item['doubt']:.3f}"}
                 for item in queue["items"]],
                ["input_id", "file", "pending", "boxes", "concepts", "doubt"])
    if queue["undecided"]:
        print(f"\nundecided items ({len(queue['undecided'])}): accept, reject or relabel them by annotation_id")
        print_table([{**item, "spot check": "yes" if item["spot_check"] else "",
                      "confidence": "" if item["confidence"] is None else f"{item['confidence']:.3f}"}
                     for item in queue["undecided"]],
                    ["annotation_id", "file", "kind", "concept", "confidence", "status", "spot check"])


def refuse_busy_port(host: str, port: int) -> None:
    """One sentence instead of uvicorn's traceback when something already listens on the port."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As uvicorn binds: sockets a crashed server left in TIME-WAIT do not make the port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise UserError(f"Cannot serve the review page on {host}:{port}: {error.strerror.lower()}; pass "
                            "--port with a free port.") from None


EXAMPLES = {
    "demo": "autoannotate demo --count 40",
    "run": "autoannotate run --inbox ~/photos --task tasks/demo.yaml --version",
    "status": "autoannotate status --task demo-shapes",
    "quality": "autoannotate quality --task demo-shapes",
    "calibrate": "autoannotate calibrate --task demo-shapes --target-precision 0.95 --target-recall 0.9 --write",
    "dry-run": "autoannotate dry-run --task tasks/demo.yaml ~/photos/IMG_0001.jpg ~/photos/IMG_0002.jpg",
    "review": "autoannotate review serve",
    "review list": "autoannotate review list --reviewer alice --pending",
    "review accept": "autoannotate review accept 5d41402abc4b2a76b9719d911017c592 --reviewer alice",
    "review reject": "autoannotate review reject 5d41402abc4b2a76b9719d911017c592 --reviewer alice",
    "review reopen": "autoannotate review reopen 5d41402abc4b2a76b9719d911017c592 --reviewer alice",
    "review relabel": "autoannotate review relabel 5d41402abc4b2a76b9719d911017c592 --concept ball --reviewer alice",
    "review serve": "autoannotate review serve --port 8765",
    "review invite": "autoannotate review invite alice --host 192.168.1.20",
    "import": "autoannotate import --format voc ~/datasets/VOCdevkit/VOC2012 --user alice --task demo-shapes",
    "version": "autoannotate version create --date 2026-11-22",
    "version create": "autoannotate version create --date 2026-11-22",
    "version list": "autoannotate version list --task demo-shapes --json",
    "model": "autoannotate model classes ~/models/best.pt",
    "model classes": "autoannotate model classes ~/models/best.pt",
    "model train": "autoannotate model train --date 2026-11-22",
    "model list": "autoannotate model list --task demo-shapes --json",
    "model promote": "autoannotate model promote 3f2a9c4e1b7d --user alice",
    "model rollback": "autoannotate model rollback --task demo-shapes --user alice",
    "export": "autoannotate export --version demo-shapes@2026-11-22 --format yolo --out exports/yolo",
}


def add_examples(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Every verb's --help ends with an example of it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                verb = f"{path} {name}".strip()
                child.epilog = f"example:\n  {EXAMPLES[verb]}"
                child.formatter_class = argparse.RawDescriptionHelpFormatter
                add_examples(child, verb)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="autoannotate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON (before or after the verb)")
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a verb's default must not undo `autoannotate --json VERB`.
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print machine-readable JSON")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", parents=[common], help="write generated demo images into the inbox")
    demo.add_argument("--inbox", help="folder to write into (default: $AUTOANNOTATE_HOME/inbox)")
    demo.add_argument("--count", type=int, default=40)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--if-empty", action="store_true", help="write nothing when the inbox already holds files")
    demo.set_defaults(handler=command_demo)

    run = sub.add_parser("run", parents=[common], help="ingest and annotate the files not yet ingested, as one batch")
    run.add_argument("--inbox", help="folder to ingest (default: $AUTOANNOTATE_HOME/inbox)")
    run.add_argument("--task", action="append", help="labeling task file (repeatable; default: tasks/demo.yaml)")
    run.add_argument("--version", action="store_true",
                     help="also build today's dataset version of every task (costs what the whole dataset costs; "
                          "the daily schedule and `version create` build versions otherwise)")
    run.add_argument("--reroute", action="store_true",
                     help="first re-route every earlier batch routed under other thresholds than the tasks' current "
                          "ones, from the stored predictions (people's decisions stay; a batch is predicted again "
                          "only where a task's lower threshold lies below the confidence floor it was predicted at)")
    run.add_argument("--rescore", action="store_true",
                     help="first score image-level concepts again in every batch an earlier classifier scored, with "
                          "the one the task's labels give now (people's decisions stay)")
    run.set_defaults(handler=command_run)

    status = sub.add_parser("status", parents=[common], help="counts of inputs, rejections, predictions, annotations")
    status.add_argument("--task", help="only this task's annotations and review progress")
    status.set_defaults(handler=command_status)

    quality = sub.add_parser("quality", parents=[common],
                             help="precision and recall of each concept's bands, against the labels people confirmed")
    quality.add_argument("--task", help="task name (default: the first configured task)")
    quality.add_argument("--confidence", type=float, default=0.95, help="level of the intervals (default 0.95)")
    quality.set_defaults(handler=command_quality)

    calibration = sub.add_parser("calibrate", parents=[common],
                                 help="thresholds that reach a target precision, from the labels people confirmed")
    calibration.add_argument("--task", help="task name (default: the first configured task)")
    calibration.add_argument("--target-precision", type=float, required=True,
                             help="the accepted band's precision to reach, at the interval's lower end")
    calibration.add_argument("--confidence", type=float, default=0.95, help="level of that interval (default 0.95)")
    calibration.add_argument("--target-recall", type=float,
                             help="share of reference boxes accepted or sent to review (sets the lower threshold)")
    calibration.add_argument("--write", action="store_true",
                             help="write the calibrated task file beside the task's (NAME.calibrated.yaml)")
    calibration.set_defaults(handler=command_calibrate)

    dry = sub.add_parser("dry-run", parents=[common], help="what a task would write for these images; writes nothing")
    dry.add_argument("--task", required=True, help="labeling task file")
    dry.add_argument("images", nargs="+", help="image files")
    dry.set_defaults(handler=command_dry_run)
    review = sub.add_parser("review", help="the human review queue").add_subparsers(dest="action", required=True)
    listing = review.add_parser("list", parents=[common], help="a reviewer's images, most doubtful first, and "
                                "every undecided item (box or image-level concept) with its annotation id")
    listing.add_argument("--task", help="task name (default: the first configured task)")
    listing.add_argument("--reviewer", required=True)
    listing.add_argument("--pending", action="store_true", help="only images with boxes awaiting review")
    for action, text in (("accept", "accept an annotation"), ("reject", "reject an annotation"),
                         ("reopen", "send an accepted annotation back to review"),
                         ("relabel", "change an annotation's concept")):
        decision = review.add_parser(action, parents=[common], help=text)
        decision.add_argument("annotation_id")
        decision.add_argument("--reviewer", required=True)
        if action == "relabel":
            decision.add_argument("--concept", required=True)
    invite = review.add_parser("invite", parents=[common], help="a reviewer's personal link to the review page")
    invite.add_argument("reviewer")
    serve = review.add_parser("serve", help="the review page in the browser")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=8765)
    for option, default in (("--host", "127.0.0.1"), ("--port", 8765)):
        invite.add_argument(option, default=default, type=type(default), help="where `review serve` listens")
    review.required = True
    for parser_ in (listing, serve, invite):
        parser_.set_defaults(handler=command_review)
    for action in ("accept", "reject", "reopen", "relabel"):
        review.choices[action].set_defaults(handler=command_review)

    importer = sub.add_parser("import", parents=[common], help="existing labels in, as human annotations")
    importer.add_argument("--format", required=True, choices=IMPORT_FORMATS,
                          help="concepts-csv: `file,concept` rows; classify: a folder per concept (or Ultralytics' "
                               "train/<concept>/ layout): image-level concepts")
    importer.add_argument("--task", help="task the labels belong to (default: the first configured task)")
    importer.add_argument("--user", required=True, help="user id the annotations are attributed to")
    importer.add_argument("--as", dest="as_what", choices=["labels", "suggestions"], default="labels",
                          help="labels (default): accepted as they are; suggestions: awaiting review in the task's "
                               "reviewers' queues, with the file's confidences (YOLO save_conf, COCO score)")
    importer.add_argument("--trust-sizes", action="store_true",
                          help="COCO/VOC: accept labels whose stated image size differs from the image's (made on a "
                               "resized copy): their boxes are rescaled to the image, and the summary names them")
    importer.add_argument("path", help="YOLO dataset folder (data.yaml), COCO JSON file, VOC folder, concepts CSV "
                                       "file or concept folders")
    importer.set_defaults(handler=command_import)

    version = sub.add_parser("version", help="dataset versions").add_subparsers(dest="action", required=True)
    create = version.add_parser("create", parents=[common], help="build every task's version of a day, or freeze "
                                                                 "a named version")
    when = create.add_mutually_exclusive_group()
    when.add_argument("--date", help="YYYY-MM-DD (default: today, UTC)")
    when.add_argument("--name", help="freeze the current annotations as TASK@NAME (e.g. release-3): never rebuilt, "
                                     "refused if it exists")
    create.add_argument("--task", action="append", help="with --name: only this task (repeatable; default: all)")
    create.set_defaults(handler=command_version_create)
    listed_versions = version.add_parser("list", parents=[common], help="the stored versions, newest day first: "
                                                                        "counts, manifest, frozen or not")
    listed_versions.add_argument("--task", help="only this task's versions")
    listed_versions.set_defaults(handler=command_version_list)

    model = sub.add_parser("model", help="detector weights").add_subparsers(dest="action", required=True)
    classes = model.add_parser("classes", parents=[common],
                               help="a model's class ids and names, and the concept each task maps them to")
    classes.add_argument("weights", nargs="?", help="weights file (default: the models of the configured tasks)")
    classes.set_defaults(handler=command_model_classes)
    train = model.add_parser("train", parents=[common], help="fine-tune every task's detector on a day's dataset "
                                                             "version, evaluate it and promote it by the task's rule")
    train.add_argument("--date", help="the version's day, YYYY-MM-DD (default: today, UTC)")
    listed = model.add_parser("list", parents=[common], help="trained detectors, their figures, each task's current")
    promote = model.add_parser("promote", parents=[common], help="make a trained detector a task's current one")
    promote.add_argument("model_id", help="its id (at least 8 hex digits, as `model list` shows)")
    rollback = model.add_parser("rollback", parents=[common], help="back to the detector the current one replaced")
    for parser_ in (train, listed, promote, rollback):
        if parser_ is not train:
            parser_.add_argument("--task", help="task name (default: the first configured task that detects)")
        if parser_ in (promote, rollback):
            parser_.add_argument("--user", required=True, help="who decides (recorded in model_promotions)")
        parser_.set_defaults(handler=command_model_loop)

    export = sub.add_parser("export", parents=[common], help="write a dataset version as YOLO, classify or COCO")
    export.add_argument("--version", required=True, help="version key, e.g. demo-shapes@2026-11-22")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                        help="yolo (Ultralytics detection; segmentation labels when the version has polygons), "
                             "yolo-seg (Ultralytics segmentation, boxes as rectangles), classify (Ultralytics "
                             "classification: image-level concepts, one per image) or coco (boxes, and "
                             "image-level concepts on each image)")
    export.add_argument("--out", required=True, help="output folder")
    export.add_argument("--negatives", choices=list(NEGATIVE_CHOICES), default=None,
                        help="which negative images (no object) go in: people (the default: those a person made, "
                             "imported without labels or reviewed with nothing left), all (the model's too: images it "
                             "found nothing on, which teach a model to miss what this one misses; the default when "
                             "the task's model_negatives_below_miss_rate is met by its spot checks) or none")
    export.add_argument("--no-negatives", dest="negatives", action="store_const", const="none",
                        help="the same as --negatives none")
    export.add_argument("--resize", type=int, default=0, metavar="PIXELS",
                        help="shrink images whose longest side is larger to this size (default 0: as stored)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty --out folder whole (written beside it, then renamed: a failed "
                             "export leaves the old one as it was); without it a non-empty folder is refused")
    export.add_argument("--link", choices=LINK_MODES, default="hardlink",
                        help="how images are placed: hardlink (default; a copy where the filesystem cannot link), "
                             "copy, or symlink into the image store (the export then works on this machine only)")
    export.set_defaults(handler=command_export)
    add_examples(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args, Settings.from_env())
    except BrokenPipeError:
        # The reader went away (`autoannotate review list | head`): stop quietly, as a tool killed by SIGPIPE does.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - stays open until the process exits
        return 128 + signal.SIGPIPE
    except (UserError, OSError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"autoannotate: {message}", file=sys.stderr)
        return 1
    except RuntimeError as error:  # DatabaseLockedError and failed Dagster runs
        print(f"autoannotate: {error}", file=sys.stderr)
        return 1
    return 0


def entry() -> None:
    """Console-script entry: exit without interpreter teardown, where DuckDB's bindings print
    reference-leak noise (nanobind) after the command has already finished."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
