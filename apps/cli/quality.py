"""Label quality: `quality` (precision and recall of each band) and `calibrate` (thresholds for a target)."""

from __future__ import annotations

import argparse
import sys

from apps.cli.common import UserError, configured_task, emit, print_table, verb
from core.settings import Settings


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
    from services.consensus import reviewer_agreement

    resources, task = configured_task(settings, args.task)
    report = resources["store"].read(lambda s: s.quality.report(task, args.confidence))
    concepts = {c: {k: v for k, v in figures.items() if k != "curve"} for c, figures in report.items()}
    agreement = reviewer_agreement(resources["store"], task, args.confidence)
    emit(args, {"task": task.name, "confidence": args.confidence, "iou": task.match_iou, "concepts": concepts,
                **({"reviewer_agreement": agreement} if agreement is not None else {})}, render_quality)


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
    if "reviewer_agreement" in result:
        render_agreement(result["reviewer_agreement"], result["confidence"])
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
    target = args.target_precision if args.target_precision is not None else task.target_precision
    if target is None:
        raise UserError(f"Task {task.name!r} states no target_precision: give one, e.g. `autoannotate calibrate "
                        f"--task {task.name} --target-precision 0.95`, or set `target_precision` in its file.")
    args.target_precision = float(target)
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


def render_agreement(agreement: dict, confidence: float) -> None:
    print(f"\nconsensus: how often each reviewer agrees with the resolved outcome ([low, high]: {confidence:.0%} "
          "Wilson intervals)")
    print_table([{"reviewer": r, "items": f["items"], "agreement": f"{f['agreement']:.3f} [{f['low']:.3f}, "
                  f"{f['high']:.3f}]", "per concept": ", ".join(f"{c} {g['agreement']:.2f} ({g['items']})"
                                                              for c, g in f["per_concept"].items())}
                 for r, f in agreement["reviewers"].items()], ["reviewer", "items", "agreement", "per concept"])
    print("\nbetween reviewers: Cohen's kappa on accept/reject, mean IoU of boxes both accepted")
    print_table([{"pair": p, "items": f["items"], "kappa": "-" if f["kappa"] is None else
                  f"{f['kappa']:.3f} [{f['kappa_low']:.3f}, {f['kappa_high']:.3f}]",
                  "mean IoU": "-" if f["mean_iou"] is None else f"{f['mean_iou']:.3f} ({f['boxes_both_accepted']})"}
                 for p, f in agreement["pairs"].items()], ["pair", "items", "kappa", "mean IoU"])
    for reviewer in agreement["far_below"]:
        print(f"{reviewer} agrees with the outcome far less often than every other reviewer (the upper end of "
              f"{reviewer}'s interval is below their rates).")


def command_audit(args: argparse.Namespace, settings: Settings) -> None:
    from resources.tasks import detector_for
    from services.audit import audit_task, send_findings

    for flag, value in (("--top", args.top), ("--send", args.send)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value} is not a count: give 1 or more.")
    if args.folds is not None and args.folds < 2:
        raise UserError(f"--folds {args.folds} is not a number of folds: give 2 or more (each fold's detector "
                        "learns from the others).")
    if args.send and not args.user:
        raise UserError("--send puts labels back in review: say who sends them with --user USER.")
    resources, task = configured_task(settings, args.task)
    if not task.detects:
        raise UserError(f"Task {task.name!r} annotates whole images only: an audit judges boxes against a "
                        "detector's, and the task has none.")
    report = audit_task(resources["store"], resources["images"], resources["versions"], task,
                        detector_for(task, resources["detector"]), resources["training"], args.folds or 0,
                        log=lambda line: print(line, file=sys.stderr))
    if args.send:
        send_findings(resources["store"], task, report, args.send, args.user)
    emit(args, report.as_dict(args.top), render_audit)


def render_audit(result: dict) -> None:
    print(f"label audit of task {result['task']}: {result['labels']} labels people made on {result['images']} "
          f"images, in {result['seconds']:.1f} s")
    print_table([{"auditor": a["model_id"][:12], "which": a["role"], "images": a["audited_images"],
                  "of them it was trained on": a["saw_audited_images"]} for a in result["auditors"]],
                ["auditor", "which", "images", "of them it was trained on"])
    if any(a["saw_audited_images"] for a in result["auditors"]):
        print("an auditor trained on an image has learned its labels, errors too: run with --folds K for auditors "
              "that never saw the images they judge")
    print("\nfindings: " + ", ".join(f"{kind} {n}" for kind, n in result["counts"].items())
          + (f" ({result['already_sent']} sent to review by an earlier audit are left out)"
             if result["already_sent"] else ""))
    print_table([{"#": rank, "score": f"{f['score']:.3f}", "kind": f["kind"], "image": f["input_id"][:12],
                  "label": (f["annotation_id"] or "-")[:12], "concept": f["concept"], "evidence": f["evidence"]}
                 for rank, f in enumerate(result["findings"], 1)],
                ["#", "score", "kind", "image", "label", "concept", "evidence"])
    if result["shown"] < sum(result["counts"].values()):
        print(f"(the top {result['shown']} of {sum(result['counts'].values())})")
    if result["sent"]:
        print(f"\nsent {len(result['sent'])} to review as AWAITING_REVIEW, each with its reason on the review page")
    else:
        print("\nnothing written (add --send N --user USER to put the top N in review)")


def register(sub: argparse._SubParsersAction) -> None:
    quality = verb(sub, "quality", "precision and recall of each concept's bands, against the labels people "
                   "confirmed", "autoannotate quality --task demo-shapes", command_quality)
    quality.add_argument("--task", help="task name (default: the first configured task)")
    quality.add_argument("--confidence", type=float, default=0.95, help="level of the intervals (default 0.95)")

    audit = verb(sub, "audit", "rank people's labels by how likely each is wrong (missed object, wrong concept, bad "
                 "box, duplicate), judged by a detector that did not learn from them",
                 "autoannotate audit --task demo-shapes --top 20 --send 10 --user alice", command_audit)
    audit.add_argument("--task", help="task name (default: the first configured task)")
    audit.add_argument("--top", type=int, help="show only the N most likely errors")
    audit.add_argument("--send", type=int, help="put the N most likely errors in review (AWAITING_REVIEW, with the "
                       "reason on the review page)")
    audit.add_argument("--user", help="who sends them (with --send)")
    audit.add_argument("--folds", type=int, help="train K detectors, each on the other folds' labels, to audit "
                       "its fold (slow on a CPU: one fine-tuning per fold)")

    calibration = verb(sub, "calibrate", "thresholds that reach a target precision, from the labels people confirmed",
                       "autoannotate calibrate --task demo-shapes --target-precision 0.95 --target-recall 0.9 --write",
                       command_calibrate)
    calibration.add_argument("--task", help="task name (default: the first configured task)")
    calibration.add_argument("--target-precision", type=float,
                             help="the accepted band's precision to reach, at the interval's lower end (default: "
                                  "the task's target_precision)")
    calibration.add_argument("--confidence", type=float, default=0.95, help="level of that interval (default 0.95)")
    calibration.add_argument("--target-recall", type=float,
                             help="share of reference boxes accepted or sent to review (sets the lower threshold)")
    calibration.add_argument("--write", action="store_true",
                             help="write the calibrated task file beside the task's (NAME.calibrated.yaml)")
