"""Stage 1: the `inputs` asset turns a batch of inbox files into content-addressed inputs."""

import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
from pydantic import Field

from assets.checks import column_schema, table_metadata, table_schema_check
from assets.partitions import batch_partitions
from core.faults import pause_point
from resources.image_store import ImageStore
from resources.inbox import Inbox
from resources.store import DuckDBStore, write_or_retry
from services.ingestion import inspect_batch
from storage.inbox import InboxGoneError
from store import Session


class BatchFiles(dg.Config):
    """The files (relative to the inbox) of a batch the sensor requested. The run pins them when it starts, so
    that evaluating a tick, or previewing one in the UI, writes nothing."""

    files: list[str] = Field(default_factory=list)


@dg.asset(
    partitions_def=batch_partitions,
    group_name="ingestion",
    kinds={"duckdb", "python"},
    pool="duckdb",
    metadata=table_metadata("inputs"),
    description="Validated, deduplicated, content-addressed images of one inbox batch (DuckDB table `inputs`).",
)
def inputs(context: dg.AssetExecutionContext, config: BatchFiles, store: DuckDBStore, images: ImageStore,
           inbox: Inbox) -> dg.MaterializeResult:
    batch = context.partition_key
    if config.files and not inbox.has_batch(batch):
        inbox.write_batch(config.files, key=batch)
    pinned, objects = inbox.batch_files(batch)
    # A file removed from the inbox since the batch was made keeps the rows it already has.
    files = [path for path in pinned if os.path.lexists(path)]
    context.log.info(f"batch {batch}: {len(files) + len(objects)} files ({len(pinned) - len(files)} no longer in "
                     "the inbox)")
    pause_point("inputs.read")
    with images.storing_ahead() as put:  # every image stored before a row names it
        batch_files = inspect_batch(files, inbox.max_pixels, inbox.video_rule,
                                    keep=lambda image: put(image.input_id, image.data),
                                    keep_video=lambda path, video_id: images.put_file(video_id, path),
                                    log=context.log.info, fetcher=inbox.url_fetcher,
                                    downloads=Path(inbox.downloads_dir), objects=objects)
    accepted, rejected, videos = batch_files.accepted, batch_files.rejected, batch_files.videos
    # A folder unmounted or removed while it was read makes its files unreadable, not bad: write nothing.
    for folder in sorted({path.parent for path in files}):
        if not folder.is_dir():
            raise InboxGoneError(f"The inbox folder {folder} disappeared while batch {batch} was read; nothing "
                                 "of the batch was written. Put it back and run again.")
    now = datetime.now(UTC).replace(tzinfo=None)
    stored = {image.input_id: images.location_of(image.input_id) for _, image in accepted}
    video_paths = {v.video_id: images.location_of(v.video_id) for _, v in videos}

    def record(s: Session) -> dict[str, int]:
        s.inputs.record_videos(batch, videos, video_paths, now)
        return s.inputs.record_batch(batch, accepted, rejected, stored, now)

    counts = write_or_retry(store, record)
    by_reason = Counter(r.code for _, r in rejected)
    return dg.MaterializeResult(metadata={
        "dagster/column_schema": column_schema("inputs"),  # the Columns tab reads the latest event
        "dagster/row_count": counts["batch_inputs"],
        "files": len(files) + len(objects),
        "files_gone_from_inbox": len(pinned) - len(files),
        "new_inputs": counts["new"],
        "duplicates": counts["duplicates"],
        "rejected": len(rejected),
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "videos": len(videos),
        "video_frames_kept": sum(len(v.frames) for _, v in videos),
        "videos_stopped_early": [v.stopped for _, v in videos if v.stopped],
    })


inputs_schema_check = table_schema_check(inputs, "inputs", "batch = $partition")
rejected_inputs_schema_check = table_schema_check(inputs, "rejected_inputs", "batch = $partition")
