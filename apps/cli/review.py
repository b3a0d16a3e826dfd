"""The review queue from the shell: `review list|accept|reject|reopen|relabel|plan|invite|revoke|serve`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from apps.cli.common import UserError, configured_task, emit, print_table, verb, verbs
from core.access import MAX_TOKEN_DAYS, TOKEN_DAYS
from core.annotations import Role, Status
from core.settings import Settings

if TYPE_CHECKING:
    from apps.review_desk import ReviewDesk
    from core.task_config import LabelingTask

DECISIONS = {"accept": ("accept", "accept an annotation"), "reject": ("reject", "reject an annotation"),
             "reopen": ("reopen", "send an accepted annotation back to review"),
             "relabel": ("correct", "change an annotation's concept")}
EXAMPLE_ID = "5d41402abc4b2a76b9719d911017c592"


@contextlib.contextmanager
def review_errors() -> Iterator[None]:
    """A review rule's refusal is the user's sentence as it is."""
    from core.review_rules import ReviewError

    try:
        yield
    except ReviewError as error:
        raise UserError(str(error)) from None


def desk_of(settings: Settings) -> tuple[list[LabelingTask], ReviewDesk]:
    """The configured tasks and the review desk over them."""
    from apps.review_desk import ReviewDesk
    from resources import build_resources

    resources = build_resources(settings)
    tasks = resources["tasks"].load()
    return tasks, ReviewDesk(resources["store"], tasks, settings.weights)


def command_review_serve(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from apps.review_server import create_app
    from resources import build_resources

    resources = build_resources(settings)
    refuse_busy_port(args.host, args.port)
    print(f"review page on http://{args.host}:{args.port}/ (Ctrl-C stops it)", file=sys.stderr)
    uvicorn.run(create_app(resources["store"], resources["images"], resources["tasks"].load(), resources["versions"],
                           settings.dagster_url, resources["concept_models"], settings.weights, settings.max_pixels),
                host=args.host, port=args.port, log_level="warning")


def command_review_invite(args: argparse.Namespace, settings: Settings) -> None:
    _, desk = desk_of(settings)
    with review_errors():
        token = desk.invite(args.reviewer, Role(args.role), args.days)
        link = desk.signed_in(token)
    assert link is not None  # just issued
    emit(args, {"reviewer": args.reviewer, "role": args.role, "url": f"http://{args.host}:{args.port}/?token={token}",
                "expires_at": f"{link.expires_at:%Y-%m-%d %H:%M} UTC"}, lambda r: print(
        f"{r['url']}\n(personal to {r['reviewer']}, {r['role']}: whoever opens it acts as {r['reviewer']}, until "
        f"{r['expires_at']}; a new invite replaces it, `review revoke {r['reviewer']}` ends it)"))


def command_review_revoke(args: argparse.Namespace, settings: Settings) -> None:
    _, desk = desk_of(settings)
    with review_errors():
        ended = desk.revoke(args.reviewer)
    emit(args, {"reviewer": args.reviewer, "revoked_at": f"{ended:%Y-%m-%d %H:%M:%S} UTC"}, lambda r: print(
        f"{r['reviewer']}'s review link no longer signs in (revoked {r['revoked_at']}); their open pages are refused "
        "from their next request."))


def command_review_list(args: argparse.Namespace, settings: Settings) -> None:
    from core.review_rules import task_named

    tasks, desk = desk_of(settings)
    with review_errors():
        task = task_named(tasks, args.task)
        items = desk.queue(task.name, args.reviewer, [Status.AWAITING_REVIEW] if args.pending else None)
        undecided = desk.undecided(task.name, args.reviewer)
    emit(args, {"task": task.name, "reviewer": args.reviewer, "pending": args.pending, "items": items,
                "undecided": undecided}, render_queue)


def command_review_decide(args: argparse.Namespace, settings: Settings) -> None:
    _, desk = desk_of(settings)
    with review_errors():
        result = desk.decide(args.annotation_id, DECISIONS[args.action][0], args.reviewer,
                             concept=getattr(args, "concept", None))
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


def command_review_plan(args: argparse.Namespace, settings: Settings) -> None:
    from core.review_order import REVIEW_ORDERS
    from services.review_order import plan_review

    if args.budget < 1:
        raise UserError(f"--budget {args.budget} is not a number of images: give 1 or more.")
    if args.order is not None and args.order not in REVIEW_ORDERS:
        raise UserError(f"--order {args.order!r} is not one of {', '.join(REVIEW_ORDERS)}.")
    resources, task = configured_task(settings, args.task)
    plan = resources["store"].read(lambda s: plan_review(s, task, Path(settings.weights), args.budget, args.order))
    emit(args, plan, render_plan)


def render_plan(plan: dict) -> None:
    print(f"the next {len(plan['images'])} of {plan['open_images']} open images of task {plan['task']}, "
          f"{plan['order']} order (budget {plan['budget']}; {plan['labelled_images']} labelled images count as "
          "covered)")
    print_table([{**row, "image": row["input_id"][:12], "doubt": "-" if row["doubt"] is None else f"{row['doubt']:.3f}",
                  "distance": "-" if row["distance"] is None else f"{row['distance']:.3f}"} for row in plan["images"]],
                ["rank", "image", "file", "reviewer", "pending", "doubt", "distance", "why"])
    if plan["not_embedded"]:
        print(f"{plan['not_embedded']} open images have no embedding yet (the next run computes them): they follow "
              "by doubt")


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


def register(sub: argparse._SubParsersAction) -> None:
    review = verbs(verb(sub, "review", "the human review queue", "autoannotate review serve", json_option=False))
    listing = verb(review, "list", "a reviewer's images, most doubtful first, and every undecided item (box or "
                   "image-level concept) with its annotation id", "autoannotate review list --reviewer alice --pending",
                   command_review_list)
    listing.add_argument("--task", help="task name (default: the first configured task)")
    listing.add_argument("--reviewer", required=True)
    listing.add_argument("--pending", action="store_true", help="only images with boxes awaiting review")
    for action, (_, text) in DECISIONS.items():
        concept = " --concept ball" if action == "relabel" else ""
        decision = verb(review, action, text, f"autoannotate review {action} {EXAMPLE_ID}{concept} --reviewer alice",
                        command_review_decide)
        decision.add_argument("annotation_id")
        decision.add_argument("--reviewer", required=True)
        if action == "relabel":
            decision.add_argument("--concept", required=True)
    plan = verb(review, "plan", "which images to review next under a budget, in the task's review_order (doubt, "
                "diverse or mixed), and why each", "autoannotate review plan --task demo-shapes --budget 20 --order "
                "diverse", command_review_plan)
    plan.add_argument("--task", help="task name (default: the first configured task)")
    plan.add_argument("--budget", type=int, required=True, help="how many images")
    plan.add_argument("--order", help="doubt, diverse or mixed (default: the task's review_order)")
    invite = verb(review, "invite", "a reviewer's personal link to the review page",
                  "autoannotate review invite alice --host 192.168.1.20", command_review_invite)
    invite.add_argument("reviewer")
    invite.add_argument("--role", choices=[str(r) for r in Role], default=str(Role.REVIEWER),
                        help="reviewer: their tasks' queues (default); lead: every task, the tasks page and objects "
                        "gallery, versions, deleting inputs and annotations")
    invite.add_argument("--days", type=int, default=TOKEN_DAYS,
                        help=f"how long the link signs in (default {TOKEN_DAYS}, at most {MAX_TOKEN_DAYS})")
    revoke = verb(review, "revoke", "end a reviewer's personal link now", "autoannotate review revoke alice",
                  command_review_revoke)
    revoke.add_argument("reviewer")
    serve = verb(review, "serve", "the review page in the browser", "autoannotate review serve --port 8765",
                 command_review_serve, json_option=False)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    serve.add_argument("--port", type=int, default=8765)
    for option, default in (("--host", "127.0.0.1"), ("--port", 8765)):
        invite.add_argument(option, default=default, type=type(default), help="where `review serve` listens")
