"""The pipeline's verbs: `demo`, `run`, `status`, `dry-run`."""

from __future__ import annotations

import argparse
from pathlib import Path

from apps.cli.common import UserError, configured_task, deprecated_task_file, emit, print_table, verb
from core.annotations import Status
from core.locations import is_remote
from core.settings import Settings

SHOWN_REJECTIONS = 20


def command_demo(args: argparse.Namespace, settings: Settings) -> None:
    from apps.demo_scenes import write_demo_images
    from storage.inbox import list_inbox_files

    inbox = Path(args.inbox) if args.inbox else settings.inbox_path
    if args.if_empty and inbox.is_dir() and list_inbox_files(inbox):
        paths = []
    else:
        paths = write_demo_images(inbox, args.count, seed=args.seed)
    emit(args, {"inbox": str(inbox), "written": len(paths)},
         lambda p: print(f"wrote {p['written']} demo images into {p['inbox']}"))


def run_task_files(args: argparse.Namespace) -> list[str] | None:
    """The task files of `run`: `--task-file`, and `--task FILE` as earlier releases spelled it."""
    files = list(args.task_file or [])
    for name in args.task or []:
        if deprecated_task_file(name) is None:
            raise UserError(f"--task {name}: `run` annotates with every configured task; choose the tasks it runs "
                            "with --task-file FILE (repeatable).")
        files.append(name)
    return files or None


def command_run(args: argparse.Namespace, settings: Settings) -> None:
    from apps.runner import run_pipeline
    from core.digests import file_sha256
    from resources import build_resources
    from storage.inbox import place_in_inbox
    from storage.urls import is_url_list

    # A bucket prefix (--inbox, or AUTOANNOTATE_INBOX when --inbox is not given) is the run's inbox as a folder is.
    inbox: Path | str | None = None
    if args.inbox and is_remote(args.inbox):
        inbox = args.inbox
    elif args.inbox:
        inbox = Path(args.inbox).resolve()
        if not inbox.is_dir():
            raise UserError(f"The inbox {inbox} is not a folder.")
    task_files = run_task_files(args)
    run_settings = settings.with_run_options(inbox, task_files)
    if task_files:
        if "task_files" in settings.from_environment:
            raise UserError("AUTOANNOTATE_TASKS is set, and it decides the tasks of every command; unset it to "
                            "use --task-file, or list the files there.")
        from resources.tasks import check_task_models

        # A broken file, missing weights or a class the model lacks is refused before the files are remembered.
        resources = build_resources(run_settings)
        check_task_models(resources["tasks"].load(), resources["detector"])
        run_settings.remember_task_files()
    if args.urls:  # the list joins the inbox, as if dropped there: it is pinned and fetched with the batch
        if run_settings.inbox_url:
            raise UserError(f"--urls joins a folder inbox, and this run's inbox is the bucket prefix "
                            f"{run_settings.inbox_url}: give the list to a run on a folder (--inbox FOLDER).")
        listed = Path(args.urls)
        if not listed.is_file():
            raise UserError(f"The URL list {listed} is not a file.")
        if not is_url_list(listed):
            raise UserError(f"{listed} is not a URL list: name it *.urls (one URL a line) or give a CSV with a "
                            "`url` column.")
        suffix = ".csv" if listed.suffix.lower() == ".csv" else ".urls"
        place_in_inbox(run_settings.inbox_path, f"{listed.stem}-{file_sha256(listed)[:8]}{suffix}",
                       listed.read_bytes())
    summary = run_pipeline(run_settings, progress=None if args.json else print, build_version=args.version,
                           reroute=args.reroute, rescore=args.rescore, retry_refused=args.retry_refused)
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
    status = collect_status(resources["store"], task=args.task, batches=resources["inbox"].pinned_batches(),
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


def command_dry_run(args: argparse.Namespace, settings: Settings) -> None:
    from apps.dry_run import dry_run
    from core.task_config import load_task

    task_file = args.task_file or deprecated_task_file(args.task)
    task = load_task(task_file) if task_file else configured_task(settings, args.task)[1]
    emit(args, dry_run(settings, task, [Path(p) for p in args.images]), render_dry_run)


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


def register(sub: argparse._SubParsersAction) -> None:
    demo = verb(sub, "demo", "write generated demo images into the inbox", "autoannotate demo --count 40",
                command_demo)
    demo.add_argument("--inbox", help="folder to write into (default: $AUTOANNOTATE_HOME/inbox)")
    demo.add_argument("--count", type=int, default=40, help="how many scenes (default 40)")
    demo.add_argument("--seed", type=int, default=1, help="seed of the generated scenes (default 1)")
    demo.add_argument("--if-empty", action="store_true", help="write nothing when the inbox already holds files")

    run = verb(sub, "run", "ingest and annotate the files not yet ingested, as one batch",
               "autoannotate run --inbox ~/photos --task-file tasks/demo.yaml --version", command_run)
    run.add_argument("--inbox", help="folder to ingest (default: $AUTOANNOTATE_HOME/inbox), or a bucket prefix "
                     "s3://bucket/prefix whose new and changed objects (by ETag) the run takes")
    run.add_argument("--task-file", action="append",
                     help="labeling task file (repeatable; default: the configured tasks, tasks/demo.yaml at first); "
                          "the files are remembered for the commands that follow")
    run.add_argument("--task", action="append", help=argparse.SUPPRESS)  # deprecated: --task FILE
    run.add_argument("--urls", metavar="FILE", help="also ingest the images and videos a URL list names (*.urls, "
                     "one URL a line, or a CSV with a url column): copied into the inbox and fetched with the batch")
    run.add_argument("--retry-refused", action="store_true",
                     help="first fetch again every URL whose latest word is a refusal (a server that answered 404, "
                          "timed out or was down may have been fixed); URLs refused for a loopback or private "
                          "address are fetched again by any run once AUTOANNOTATE_ALLOW_PRIVATE_URLS=1")
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

    status = verb(sub, "status", "counts of inputs, rejections, predictions, annotations",
                  "autoannotate status --task demo-shapes", command_status)
    status.add_argument("--task", help="only this task's annotations and review progress")

    dry = verb(sub, "dry-run", "what a task would write for these images; writes nothing",
               "autoannotate dry-run --task-file tasks/demo.yaml ~/photos/IMG_0001.jpg ~/photos/IMG_0002.jpg",
               command_dry_run)
    which = dry.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", help="a configured task's name")
    which.add_argument("--task-file", help="a labeling task file (configured or not)")
    dry.add_argument("images", nargs="+", help="image files")
