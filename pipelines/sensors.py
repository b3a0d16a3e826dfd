"""The inbox sensor: new, settled files (in a folder, or objects under a bucket prefix) become one batch partition
and one run.

It never opens DuckDB. Its cursor (kept by Dagster, so it survives daemon restarts)
holds every file it has requested and the files it saw still changing last tick: by size and
modification time in a folder, by ETag (and size) in a bucket, whose listing has no reliable mtimes.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from assets.partitions import batch_partitions
from core.settings import Settings
from pipelines.jobs import ANNOTATE_BATCH, build_dataset_versions_job
from pipelines.recovery import release_abandoned_runs
from resources.inbox import Inbox
from storage.blobs import BlobInfo, BlobStoreError, blob_store
from storage.inbox import batch_key_for, file_signature, is_ignored_name, is_taken, list_inbox_files
from storage.s3_blobs import pinned_name


def settled_files(inbox: Path, cursor: dict, settle_seconds: float, now: float
                  ) -> tuple[list[str], dict[str, list[int]]]:
    """Files to take now, and the ones to look at again next tick.

    A file is taken when it was not requested before (same path, size and mtime) and
    either its size and mtime did not change since the previous tick or it is older
    than the settle time; anything still changing waits.
    """
    requested, previous = cursor.get("requested", {}), cursor.get("pending", {})
    ready, pending = [], {}
    for path in list_inbox_files(inbox):
        try:
            signature = file_signature(path)
        except OSError:
            continue  # vanished between listing and stat: a later tick sees what is there
        name = str(path.relative_to(inbox))
        if requested.get(name) == signature:
            continue
        old_enough = now - signature[1] / 1e9 >= settle_seconds
        if old_enough or previous.get(name) == signature:
            ready.append(name)
        else:
            pending[name] = signature
    return ready, pending


def batch_key(written: dict[str, float]) -> str:
    """The key depends only on the files (name -> when it was written, epoch seconds), so a tick evaluated twice
    (a daemon restart before the cursor was saved) asks for the same run key, which Dagster launches once."""
    return batch_key_for(list(written), datetime.fromtimestamp(max(written.values()), UTC))


def written_at(signatures: dict[str, list[int]]) -> dict[str, float]:
    """Name -> modification time in seconds, from files' signatures (size, mtime in ns)."""
    return {name: signature[1] / 1e9 for name, signature in signatures.items()}


def settled_objects(listing: list[BlobInfo], cursor: dict, settle_seconds: float, now: float
                    ) -> tuple[list[BlobInfo], dict[str, list]]:
    """`settled_files` for a bucket prefix: objects to take now, and the ones to look at again next tick (key ->
    ETag and size). An object is new unless it was requested with the ETag it has now (a rewritten object is new
    again); it is settled when written longer ago than the settle time, or unchanged since the previous tick."""
    requested, previous = cursor.get("requested", {}), cursor.get("pending", {})
    ready, pending = [], {}
    for info in listing:
        if is_ignored_name(info.key.rsplit("/", 1)[-1]) or requested.get(info.key) == info.etag:
            continue
        if now - info.modified >= settle_seconds or previous.get(info.key) == [info.etag, info.size]:
            ready.append(info)
        else:
            pending[info.key] = [info.etag, info.size]
    return ready, pending


def batch_request(written: dict[str, float], cursor: dict) -> dg.SensorResult:
    """One run for the files of `written` (`batch_key`), and the cursor that remembers them. The files travel in
    the run's config and the run pins them: a tick (or its preview in the UI) writes nothing."""
    key, files = batch_key(written), list(written)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(partition_key=key, run_key=key, tags={"autoannotate/files": str(len(files))},
                                    run_config={"ops": {"inputs": {"config": {"files": sorted(files)}}}})],
        dynamic_partitions_requests=[batch_partitions.build_add_request([key])],
        cursor=json.dumps(cursor, sort_keys=True),
    )


def still_changing(where: str, cursor: dict, pending: dict) -> dg.SensorResult | dg.SkipReason:
    """A tick that takes nothing: the files still being written are remembered, so the next tick can tell they
    have settled."""
    if not pending:
        return dg.SkipReason(f"No new files in {where}.")
    return dg.SensorResult(
        skip_reason=dg.SkipReason(f"No settled new files in {where}; {len(pending)} file(s) still being written, "
                                  "taken once they stop changing."),
        cursor=json.dumps({**cursor, "pending": pending}, sort_keys=True))


def evaluate_bucket_inbox(inbox: Inbox, cursor_text: str | None, now: float | None = None
                          ) -> dg.SensorResult | dg.SkipReason:
    """The sensor's decision for one tick on a bucket prefix: its settled new objects become a batch whose files
    are their keys, each with the ETag it was listed with (ingestion refuses an object whose bytes changed since:
    the next tick takes it as it is then)."""
    now = time.time() if now is None else now
    cursor = json.loads(cursor_text) if cursor_text else {}
    try:
        listing = list(blob_store(inbox.path, wait_s=0).listing())
    except BlobStoreError as error:
        return dg.SkipReason(f"The inbox {inbox.path} cannot be listed ({error}); {error.advice}.")
    ready, pending = settled_objects(listing, cursor, inbox.settle_seconds, now)
    if not ready:
        return still_changing(inbox.path, cursor, pending)
    requested = {**cursor.get("requested", {}), **{info.key: info.etag for info in ready}}
    return batch_request({pinned_name(info.key, info.etag): info.modified for info in ready},
                         {"requested": requested, "pending": pending})


def evaluate_inbox(inbox: Inbox, cursor_text: str | None, now: float | None = None
                   ) -> dg.SensorResult | dg.SkipReason:
    """The sensor's decision for one tick, as a plain function of the inbox and the cursor."""
    if inbox.is_bucket:
        return evaluate_bucket_inbox(inbox, cursor_text, now)
    now = time.time() if now is None else now
    cursor = json.loads(cursor_text) if cursor_text else {}
    folder = Path(inbox.path)
    if not folder.is_dir():
        return dg.SkipReason(f"The inbox {folder} does not exist yet.")
    ready, pending = settled_files(folder, cursor, inbox.settle_seconds, now)
    # Files a CLI run or an earlier tick already made a batch of are taken; the batch this very tick would
    # make does not count (a tick evaluated twice must ask for the same run again).
    signatures = {name: file_signature(folder / name) for name in ready}
    pinned = inbox.pinned_signatures(except_batch=batch_key(written_at(signatures))) if ready else {}
    signatures = {name: signature for name, signature in signatures.items()
                  if not is_taken(pinned, folder / name, signature)}
    if not signatures:
        return still_changing(str(folder), cursor, pending)
    requested = {**cursor.get("requested", {}), **signatures}
    return batch_request(written_at(signatures), {"requested": requested, "pending": pending})


def versions_request(latest_annotations: int | None, cursor_text: str | None, day: str
                     ) -> dg.SensorResult | dg.SkipReason:
    """Today's versions once batches were annotated since the last request (`latest_annotations`: the storage id
    of the newest `annotations` materialization); many batches in one interval make one run."""
    seen = int(cursor_text) if cursor_text else 0
    if latest_annotations is None or latest_annotations <= seen:
        return dg.SkipReason("No batch was annotated since today's versions were last requested.")
    return dg.SensorResult(run_requests=[dg.RunRequest(partition_key=day, run_key=f"{day}-{latest_annotations}")],
                           cursor=str(latest_annotations))


def dataset_versions_tick(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
    records = context.instance.fetch_materializations(dg.AssetKey("annotations"), limit=1).records
    return versions_request(records[0].storage_id if records else None, context.cursor,
                            datetime.now(UTC).date().isoformat())


def inbox_tick(context: dg.SensorEvaluationContext, inbox: Inbox) -> dg.SensorResult | dg.SkipReason:
    # The daemon's turn to notice run workers that died: their slot of the duckdb pool would block every run.
    for sentence in release_abandoned_runs(context.instance):
        context.log.warning(sentence)
    return evaluate_inbox(inbox, context.cursor)


def build_sensors(settings: Settings) -> list[dg.SensorDefinition]:
    """The sensors, at the deployment's intervals (AUTOANNOTATE_SENSOR_INTERVAL, AUTOANNOTATE_VERSIONS_INTERVAL)."""
    return [
        dg.sensor(name="inbox_sensor", job_name=ANNOTATE_BATCH, minimum_interval_seconds=settings.sensor_interval_s,
                  default_status=dg.DefaultSensorStatus.STOPPED,
                  description="Turns new, settled files in the inbox (a folder, or a bucket prefix) into a batch and "
                              "runs the pipeline on it."
                  )(inbox_tick),
        dg.sensor(name="dataset_versions_sensor", job=build_dataset_versions_job,
                  minimum_interval_seconds=settings.versions_interval_s, default_status=dg.DefaultSensorStatus.RUNNING,
                  description="Rebuilds today's dataset versions after batches were annotated (at most once per "
                              "AUTOANNOTATE_VERSIONS_INTERVAL seconds).")(dataset_versions_tick),
    ]
