"""Does a batch cost more when the home already holds months of history? It should not.

Two homes get the same first run (40 demo scenes: Dagster instance, tables, a real model row). One of
them is then filled with synthetic history, written straight into DuckDB: 100 000 inputs, 3 000 000
predictions and 1 200 000 annotation events (1 000 000 auto annotations, 70 % accepted and 30 % awaiting
review, plus 200 000 review decisions), their review assignments and task progress. Then both homes run
the same 40 new scenes with `autoannotate run` (the bundled demo detector and task), and the times are
compared. The synthetic rows are synthetic; the 40-image runs are real.

    PYTHONPATH=. .venv/bin/python benchmarks/history_cost.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb

from apps.demo_scenes import write_demo_images
from store.tables import TABLES

FILL = """
INSERT INTO inputs SELECT sha256('synthetic-input-' || i), '/synthetic/' || i || '.jpg',
       'synthetic-' || (i // 1000), 640, 480, 'JPEG', 50000, '/synthetic/store/' || i,
       TIMESTAMP '2026-09-01' + to_seconds(i) FROM range($inputs) t(i);
INSERT INTO processed_inputs (input_id, model_id, batch, prediction_count, processed_at)
SELECT sha256('synthetic-input-' || i), $model, 'synthetic-' || (i // 1000),
       $per_input, TIMESTAMP '2026-09-01' + to_seconds(i) FROM range($inputs) t(i);
INSERT INTO predictions
SELECT substr(sha256('synthetic-prediction-' || j), 1, 32), 'synthetic-' || (j // $per_input // 1000),
       sha256('synthetic-input-' || (j // $per_input)), $model,
       ['circle', 'square', 'triangle', 'cross'][CAST(j % 4 AS BIGINT) + 1],
       0.5 + (j % 500) / 1000.0, x, y, x + 0.05, y + 0.05, NULL, TIMESTAMP '2026-09-01' + to_seconds(j // $per_input)
FROM (SELECT j, (j % 19) / 20.0 AS x, (j % 17) / 20.0 AS y FROM range($predictions) t(j));
CREATE TEMP TABLE synthetic_auto AS
SELECT substr(sha256($task || '|' || prediction_id), 1, 32) AS annotation_id, $task AS task, input_id,
       prediction_id, model_id, batch, ['ball', 'box', 'sign'][CAST(hash(prediction_id) % 3 AS BIGINT) + 1]
       AS concept,
       x1, y1, x2, y2, polygon, confidence,
       CASE WHEN hash(prediction_id) % 10 < 7 THEN 'SUCCESS' ELSE 'AWAITING_REVIEW' END AS status,
       'autoannotate-demo-bot' AS annotator, 'auto' AS source, predicted_at AS event_at
FROM predictions WHERE batch LIKE 'synthetic-%' LIMIT $auto;
INSERT INTO annotations BY NAME
SELECT substr(sha256(annotation_id || status || event_at), 1, 32) AS event_id,
       (SELECT coalesce(max(seq), 0) FROM annotations) + row_number() OVER (ORDER BY event_at, annotation_id) AS seq,
       * FROM synthetic_auto;
INSERT INTO annotations BY NAME
SELECT substr(sha256(annotation_id || 'review'), 1, 32) AS event_id,
       (SELECT coalesce(max(seq), 0) FROM annotations) + row_number() OVER (ORDER BY event_at, annotation_id) AS seq,
       * REPLACE (
       CASE WHEN hash(annotation_id) % 2 = 0 THEN 'SUCCESS' ELSE 'REJECTED' END AS status,
       'reviewer-' || hash(input_id) % 3 AS annotator, 'review' AS source, event_at + INTERVAL 1 DAY AS event_at)
FROM synthetic_auto WHERE status = 'AWAITING_REVIEW' LIMIT $decisions;
INSERT INTO review_assignments SELECT DISTINCT ON (input_id) $task, input_id,
       ['alice', 'bob', 'carol'][CAST(hash(input_id) % 3 AS BIGINT) + 1], TIMESTAMP '2026-09-02'
FROM synthetic_auto WHERE status = 'AWAITING_REVIEW';
INSERT INTO task_inputs BY NAME SELECT $task AS task, input_id, batch, model_id,
       prediction_count AS annotation_count, processed_at
FROM processed_inputs WHERE batch LIKE 'synthetic-%';
"""


def run(cli: Path, home: Path, inbox: Path) -> tuple[float, dict[str, float]]:
    """Wall seconds of one `autoannotate run`, and the seconds of each of its Dagster steps (from the run's own
    step statistics in the home's instance): the profile of what grows with the history."""
    started = time.perf_counter()
    subprocess.run([str(cli), "run", "--inbox", str(inbox), "--json"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**os.environ, "AUTOANNOTATE_HOME": str(home)})
    wall = time.perf_counter() - started
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        last = instance.get_runs(limit=1)[0]
        steps = {stats.step_key: stats.end_time - stats.start_time
                 for stats in instance.get_run_step_stats(last.run_id) if stats.end_time and stats.start_time}
    return wall, steps


def fill(database: Path, predictions: int, events: int) -> dict:
    with duckdb.connect(str(database)) as conn:
        model = conn.execute("SELECT model_id FROM models LIMIT 1").fetchone()[0]
        auto, decisions = events * 5 // 6, events // 6
        per_input = 30
        params = {"inputs": predictions // per_input, "per_input": per_input, "predictions": predictions,
                  "model": model, "task": "demo-shapes", "auto": auto, "decisions": decisions}
        for statement in filter(str.strip, FILL.split(";")):
            used = {k: v for k, v in params.items() if f"${k}" in statement}
            conn.execute(statement, used)
        conn.execute("DELETE FROM annotation_state")  # current state, derived as a home's first open does
        conn.execute(TABLES["annotation_state"].backfill)
        return {table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("inputs", "predictions", "annotations", "review_assignments", "task_inputs")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=3_000_000)
    parser.add_argument("--events", type=int, default=1_200_000)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=None, help="keep the homes in this folder (default: a temp dir)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-history-"))
    cli = Path(sys.executable).parent / "autoannotate"
    empty, full = work / "home-empty", work / "home-full"
    write_demo_images(work / "first", args.images, seed=901)
    for home in (empty, full):
        run(cli, home, work / "first")
    started = time.perf_counter()
    counts = fill(full / "autoannotate.duckdb", args.predictions, args.events)
    print(f"filled in {time.perf_counter() - started:.0f} s: {json.dumps(counts)}")
    times: dict[str, list[tuple[float, dict[str, float]]]] = {"empty": [], "full": []}
    for repeat in range(args.repeats):  # each repeat: new scenes, same for both homes
        inbox = work / f"new-{repeat}"
        write_demo_images(inbox, args.images, seed=902 + repeat)
        for name, home in (("empty", empty), ("full", full)):
            times[name].append(run(cli, home, inbox))
    for name, values in times.items():
        print(f"{args.images} new images, {name} home: " + ", ".join(f"{t:.1f}" for t, _ in values) + " s")
    best = {name: min(values, key=lambda value: value[0]) for name, values in times.items()}
    print(f"ratio full/empty (best of {args.repeats}): {best['full'][0] / best['empty'][0]:.2f}x")
    print("per step of the best runs (s), the most grown first:")
    steps = sorted(best["full"][1], key=lambda step: best["empty"][1].get(step, 0) - best["full"][1][step])
    for step in steps:
        before, after = best["empty"][1].get(step, 0.0), best["full"][1][step]
        print(f"    {step:<45} {before:6.2f} {after:6.2f}  {after - before:+6.2f}")
    outside = [best[name][0] - sum(best[name][1].values()) for name in ("empty", "full")]
    print(f"    {'outside the steps (process, instance, run)':<45} {outside[0]:6.2f} {outside[1]:6.2f}  "
          f"{outside[1] - outside[0]:+6.2f}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
