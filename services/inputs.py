"""Deleting inputs: a person takes images out of every task from now on; earlier versions still reproduce."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from core.results import DeletedInputs
from services.ports import StoredImages, UnitsOfWork
from store import Session


def resolve_inputs(s: Session, references: list[str]) -> list[str]:
    """The input ids that `references` name (ids, or files by path or name), in order, each once; a reference
    naming no input, or a file name that several inputs had, is one sentence."""
    ids: list[str] = []
    for reference in references:
        matched = s.inputs.matching(reference)
        if not matched:
            raise ValueError(f"No input is named {reference!r}: give an input id, or the path or file name an image "
                             "was ingested from (`autoannotate status` lists the inputs).")
        if len(matched) > 1:
            raise ValueError(f"{reference!r} names {len(matched)} different inputs ({', '.join(matched)}): give "
                             "their ids or full paths instead.")
        if matched[0] not in ids:
            ids.append(matched[0])
    return ids


def delete_inputs(store: UnitsOfWork, images: StoredImages, references: list[str], by: str, purge: bool = False,
                  now: datetime | None = None) -> DeletedInputs:
    """Delete the inputs `references` name: every live annotation of them in every task is retired (one event
    each, by `by`), they leave every review queue, no task routes them again and no version built from now on
    holds them. With `purge`, also their stored bytes, embeddings and cached crops, unless a frozen version still
    holds them (those are named instead). Deleting again changes nothing and says so."""
    now = now or datetime.now(UTC).replace(tzinfo=None)

    def work(s: Session) -> tuple[DeletedInputs, list[str]]:
        ids = resolve_inputs(s, references)
        already = s.inputs.deleted(ids)
        fresh = [i for i in ids if i not in already]
        retired = s.history.retire_inputs(fresh, by, now)
        places = s.reviews.unassign_inputs(fresh)
        s.inputs.record_deleted(fresh, by, now)
        purged: list[str] = []
        kept: dict[str, list[str]] = {}
        removed: dict[str, int] = {}
        if purge:
            for input_id in ids:
                holding = s.versions.frozen_holding(input_id)
                if holding:
                    kept[input_id] = holding
                else:
                    purged.append(input_id)
            removed = s.inputs.record_purged(purged, now)
        return DeletedInputs(deleted=fresh, already_deleted=[i for i in ids if i in already],
                             annotations_retired=retired, queue_places=places, purged=purged, kept=kept,
                             removed=removed), purged

    result, purged = store.write(work)
    # The files go once the database no longer points at them; purging again removes what a crash left.
    removed = dict(result.removed)
    for input_id in purged:
        for kind, n in images.remove(input_id).items():
            removed[kind] = removed.get(kind, 0) + n
    return replace(result, removed=removed)
