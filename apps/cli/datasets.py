"""Datasets in and out: `import`, `version create|list`, `export`."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime
from pathlib import Path

from apps.cli.common import UserError, configured_task, emit, print_table, verb, verbs
from core.annotations import Kind
from core.formats import EXPORT_FORMATS, FORMATS, IMPORT_FORMATS, LINK_MODES
from core.manifests import NEGATIVE_CHOICES, SPLITS
from core.settings import Settings


def command_import(args: argparse.Namespace, settings: Settings) -> None:
    from services.datasets import import_labels

    resources, task = configured_task(settings, args.task)
    path = Path(args.path)
    if not path.exists():
        raise UserError(f"{path} does not exist.")
    result = import_labels(resources["store"], resources["images"], args.format, path, task.name, args.user,
                           resources["inbox"].max_pixels, task.concepts,
                           suggestions_for=task if args.as_what == "suggestions" else None,
                           match_iou=task.match_iou, inbox=resources["inbox"], trust_sizes=args.trust_sizes,
                           as_people=args.as_people)
    emit(args, {"task": task.name, **result.as_dict()}, render_import)


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
        from resources import build_resources
        from services.datasets import create_named_version

        resources = build_resources(settings)
        versions = create_named_version(resources["store"], resources["versions"], resources["images"], args.name,
                                        args.task)
        payload = {"name": args.name, "versions": {key: built.as_dict() for key, built in versions.items()}}
        emit(args, payload, lambda r: print_table(
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


def command_export(args: argparse.Namespace, settings: Settings) -> None:
    from resources import build_resources
    from services.exports import default_negatives, export_version_to

    resources = build_resources(settings)
    configured = {t.name: t for t in resources["tasks"].load()}
    negatives, why = args.negatives, "as --negatives says"
    if negatives is None:
        negatives, why = default_negatives(resources["store"], configured.get(args.version.split("@")[0]))
    exported = export_version_to(resources["store"], resources["images"], resources["versions"], args.version,
                                 args.format, args.out, negatives=negatives, longest_side=args.resize,
                                 overwrite=args.overwrite, kept=settings.kept_locations, link=args.link,
                                 tracker_of={name: t.tracker for name, t in configured.items() if t.tracker})
    result = {**exported.as_dict(), "negatives_chosen": why}
    splits = ", ".join(f"{split} {result[split]}" for split in SPLITS if split in result)
    emit(args, result, lambda r: print(
        f"exported {r['version']} as {r['format']} ({r['labels']} labels): {r['out']}\n"
        f"images: {splits}; {r['annotations']} annotations"
        + (f"; {r['image_concepts']} image-level concepts" if r.get("image_concepts") else "")
        + (f"; {r['negatives']} negative images (no objects) of the version's {r['person_negatives']} made by a "
           f"person and {r['model_negatives']} by the model alone"
           + (f" ({r['negatives_left_out']} left out; --negatives all takes every one)"
              if r["negatives_left_out"] else "") + f"; {r['negatives_chosen']}" if "negatives" in r else "")))


def register(sub: argparse._SubParsersAction) -> None:
    importer = verb(sub, "import", "existing labels in, as human annotations",
                    "autoannotate import --format voc ~/datasets/VOCdevkit/VOC2012 --user alice --task demo-shapes",
                    command_import)
    importer.add_argument("--format", required=True, choices=IMPORT_FORMATS,
                          help="; ".join(f"{name}: {FORMATS[name].summary}" for name in IMPORT_FORMATS))
    importer.add_argument("--task", help="task the labels belong to (default: the first configured task)")
    importer.add_argument("--user", required=True, help="user id the annotations are attributed to")
    importer.add_argument("--as", dest="as_what", choices=["labels", "suggestions"], default="labels",
                          help="labels (default): accepted as they are; suggestions: awaiting review in the task's "
                               "reviewers' queues, with the file's confidences (YOLO save_conf, COCO score)")
    importer.add_argument("--trust-sizes", action="store_true",
                          help="COCO/VOC: accept labels whose stated image size differs from the image's (made on a "
                               "resized copy): their boxes are rescaled to the image, and the summary names them")
    importer.add_argument("--as-people", action="store_true",
                          help="import a folder holding this home's own export (autoannotate_export.json) all the "
                               "same, its labels recorded as --user's (refused otherwise: the model's boxes would "
                               "become people's reference labels)")
    importer.add_argument("path", help="YOLO dataset folder (data.yaml), COCO JSON file, VOC folder, concepts CSV "
                                       "file or concept folders")

    version = verbs(verb(sub, "version", "dataset versions", "autoannotate version create --date 2026-11-22",
                         json_option=False))
    create = verb(version, "create", "build every task's version of a day, or freeze a named version",
                  "autoannotate version create --date 2026-11-22", command_version_create)
    when = create.add_mutually_exclusive_group()
    when.add_argument("--date", help="YYYY-MM-DD (default: today, UTC)")
    when.add_argument("--name", help="freeze the current annotations as TASK@NAME (e.g. release-3): never rebuilt, "
                                     "refused if it exists")
    create.add_argument("--task", action="append", help="with --name: only this task (repeatable; default: all)")
    listed = verb(version, "list", "the stored versions, newest day first: counts, manifest, frozen or not",
                  "autoannotate version list --task demo-shapes --json", command_version_list)
    listed.add_argument("--task", help="only this task's versions")

    export = verb(sub, "export", "write a dataset version as YOLO, classify or COCO",
                  "autoannotate export --version demo-shapes@2026-11-22 --format yolo --out exports/yolo",
                  command_export)
    export.add_argument("--version", required=True, help="version key, e.g. demo-shapes@2026-11-22")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS,
                        help="; ".join(f"{name}: {FORMATS[name].summary}" for name in EXPORT_FORMATS))
    export.add_argument("--out", required=True, help="output folder, or a bucket prefix s3://bucket/prefix")
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
    export.add_argument("--link", choices=LINK_MODES, default="copy",
                        help="how images are placed: copy (default: files of the export's own, reflinks where the "
                             "filesystem has them), hardlink (the stored files are made read-only; a copy where "
                             "the filesystem cannot link) or symlink into the image store (the export then works "
                             "on this machine only)")
