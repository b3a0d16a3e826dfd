"""Route and write 1,000,000 synthetic predictions for one task into DuckDB.

    python benchmarks/routing_throughput.py [--rows 1000000]

Times the `annotations` asset's write path (read the batch's predictions, route them
by the task's thresholds, derive ids, validate with pandera, append events, split the
review queue among reviewers) in one transaction, as the asset runs it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from core.settings import DEMO_TASK
from core.task_config import load_task
from resources.store import DuckDBStore
from services.routing import annotate_task

CLASSES = np.array(["circle", "square", "triangle", "cross"])


def synthetic_predictions(rows: int, images: int, model_id: str, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, y1 = rng.uniform(0, 0.8, rows), rng.uniform(0, 0.8, rows)
    input_ids = np.array([f"{i:064x}" for i in range(images)])
    return pd.DataFrame({
        "prediction_id": [f"{i:032x}" for i in range(rows)],
        "batch": "bench", "input_id": input_ids[rng.integers(0, images, rows)], "model_id": model_id,
        "class_name": CLASSES[rng.integers(0, len(CLASSES), rows)], "confidence": rng.uniform(0.05, 1.0, rows),
        "x1": x1, "y1": y1, "x2": x1 + rng.uniform(0.01, 0.2, rows), "y2": y1 + rng.uniform(0.01, 0.2, rows),
        "polygon": None, "predicted_at": datetime(2026, 1, 1),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=50_000)
    args = parser.parse_args()
    store = DuckDBStore(path=str(Path(tempfile.mkdtemp(prefix="bench-routing-")) / "bench.duckdb"))
    model_id = "f" * 64
    frame = synthetic_predictions(args.rows, args.images, model_id)
    store.write(lambda s: s.insert("predictions", frame))
    task = load_task(DEMO_TASK)

    started = time.perf_counter()
    result = store.write(lambda s: annotate_task(s, task, "bench", model_id, datetime.now()))
    seconds = time.perf_counter() - started
    print(f"{args.rows:,} predictions routed and written in {seconds:.2f} s = {args.rows / seconds:,.0f} rows/s")
    print(f"  accepted {result.accepted:,}, to review {result.to_review:,}, discarded {result.discarded:,}, "
          f"unmapped {result.unmapped_predictions:,}; {result.appended_events:,} events appended, "
          f"{result.newly_assigned:,} inputs assigned to reviewers")


if __name__ == "__main__":
    main()
