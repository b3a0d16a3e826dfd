"""Stage 1: the `inputs` asset turns a batch of inbox files into content-addressed inputs."""


import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from assets.image_checks import InspectedImage, Rejection, inspect_image_file
from assets.schemas import (
    InputSourcesSchema,
    InputsSchema,
    RejectedInputsSchema,
    column_schema,
    table_schema_check,
)
from pipelines.partitions import batch_partitions
from resources.image_store import ImageStore
from resources.inbox import Inbox
from resources.store import DuckDBStore, insert_frame, scalar, write_or_retry

PROGRESS_EVERY = 100


def inspect_batch(files: list[Path], images: ImageStore, max_pixels: int,
                  log=None) -> tuple[list[tuple[Path, InspectedImage]], list[tuple[Path, Rejection]]]:
    """Check every file and store the good ones; one bad file never stops the others."""
    accepted, rejected = [], []
    for done, path in enumerate(files, start=1):
        result = inspect_image_file(path, max_pixels)
        if isinstance(result, Rejection):
            rejected.append((path, result))
        else:
            images.put(result.input_id, result.data)
            accepted.append((path, result))
        if log and done % PROGRESS_EVERY == 0:
            log(f"inspected {done}/{len(files)} files")
    return accepted, rejected


def write_batch_rows(conn: duckdb.DuckDBPyConnection, batch: str, accepted: list[tuple[Path, InspectedImage]],
                     rejected: list[tuple[Path, Rejection]], images: ImageStore, now: datetime) -> dict[str, int]:
    """Replace this batch's rows for the files seen now; inputs already stored stay as they are."""
    uris = [str(path) for path, _ in accepted] + [str(path) for path, _ in rejected]
    known = dict(
        conn.execute(
            "SELECT input_id, batch FROM inputs WHERE input_id IN (SELECT unnest(?::VARCHAR[]))",
            [[image.input_id for _, image in accepted]],
        ).fetchall()
    )
    for table in ("input_sources", "rejected_inputs"):
        conn.execute(f"DELETE FROM {table} WHERE batch = ? AND uri IN (SELECT unnest(?::VARCHAR[]))", [batch, uris])

    new_inputs, sources, seen_here = [], [], set()
    for path, image in accepted:
        earlier = image.input_id in seen_here or known.get(image.input_id, batch) != batch
        seen_here.add(image.input_id)
        sources.append({"uri": str(path), "batch": batch, "input_id": image.input_id,
                        "duplicate_of_earlier": earlier, "seen_at": now})
        if image.input_id not in known and not earlier:
            new_inputs.append({
                "input_id": image.input_id, "uri": str(path), "batch": batch, "width": image.width,
                "height": image.height, "format": image.format, "byte_size": len(image.data),
                "stored_path": str(images.path_for(image.input_id)), "ingested_at": now,
            })
    rejections = [{"uri": str(path), "batch": batch, "reason_code": r.code, "reason": r.reason, "detected_at": now}
                  for path, r in rejected]
    insert_frame(conn, "inputs", pd.DataFrame(new_inputs), InputsSchema)
    insert_frame(conn, "input_sources", pd.DataFrame(sources), InputSourcesSchema)
    insert_frame(conn, "rejected_inputs", pd.DataFrame(rejections), RejectedInputsSchema)
    total = scalar(conn, "SELECT count(*) FROM inputs WHERE batch = ?", [batch])
    return {"new": len(new_inputs), "duplicates": sum(s["duplicate_of_earlier"] for s in sources),
            "batch_inputs": total}


@dg.asset(
    partitions_def=batch_partitions,
    group_name="ingestion",
    kinds={"duckdb", "python"},
    pool="duckdb",
    metadata={"dagster/column_schema": column_schema(InputsSchema), "table": "inputs"},
    description="Validated, deduplicated, content-addressed images of one inbox batch (DuckDB table `inputs`).",
)
def inputs(context: dg.AssetExecutionContext, store: DuckDBStore, images: ImageStore,
           inbox: Inbox) -> dg.MaterializeResult:
    batch = context.partition_key
    pinned = inbox.batch_files(batch)
    # A file removed from the inbox since the batch was made keeps the rows it already has.
    files = [path for path in pinned if os.path.lexists(path)]
    context.log.info(f"batch {batch}: {len(files)} files ({len(pinned) - len(files)} no longer in the inbox)")
    accepted, rejected = inspect_batch(files, images, inbox.max_pixels, log=context.log.info)
    now = datetime.now(UTC).replace(tzinfo=None)
    counts = write_or_retry(store, lambda conn: write_batch_rows(conn, batch, accepted, rejected, images, now))
    by_reason = Counter(r.code for _, r in rejected)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": counts["batch_inputs"],
        "files": len(files),
        "files_gone_from_inbox": len(pinned) - len(files),
        "new_inputs": counts["new"],
        "duplicates": counts["duplicates"],
        "rejected": len(rejected),
        "rejected_by_reason": dict(sorted(by_reason.items())),
    })


inputs_schema_check = table_schema_check(inputs.key, "inputs", InputsSchema)
rejected_inputs_schema_check = table_schema_check(inputs.key, "rejected_inputs", RejectedInputsSchema)
