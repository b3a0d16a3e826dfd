"""The objects gallery on a large store: how long do its first page, next page and filtered pages take?

A home is filled with 100 000 object annotations (default) of one task over 10 000 inputs, with the history a
run and a review leave (one auto event per annotation, a second, a person's decision, on every fifth), then the
gallery's JSON API is asked through the review server (FastAPI's test client, so HTTP parsing and JSON are in the
figures, sockets are not) as a lead: the first page, the next page by its key, a page deep in the order, and
pages filtered by concept and status (and / or) and by a confidence range. Printed: the median and the slowest of
repeated calls. The rows are synthetic (inserted with SQL; their values spread like a run's), which a gallery page
does not tell from a run's: it reads the same tables.

    PYTHONPATH=. .venv/bin/python benchmarks/objects_gallery.py [--objects 100000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from apps.review_server import create_app
from core.annotations import Role
from core.settings import Settings
from resources import build_resources

TASK = "gallery"
CONCEPTS = ["ball", "box", "sign"]


def fill(resources: dict, objects: int) -> None:
    inputs = max(1, objects // 10)
    sha = "sha256(CAST({} AS VARCHAR))"
    digest = "substr(md5(CAST({} AS VARCHAR)), 1, 32)"

    def insert(s) -> None:
        s.conn.execute(f"""
            INSERT INTO inputs SELECT {sha.format("'input' || i")}, '/inbox/photo_' || i || '.jpg', 'b0', 640, 480,
                'jpeg', 50000, '/images/x', TIMESTAMP '2026-12-01 00:00:00' FROM range({inputs}) t(i)""")
        s.conn.execute("""
            INSERT INTO input_sources SELECT uri, 'b0', input_id, false, ingested_at FROM inputs""")
        # Auto events: confidence spread over (0.3, 1), a status by band; every fifth decided by a person after.
        s.conn.execute(f"""
            CREATE TEMP TABLE synthetic AS SELECT
                {digest.format("'event' || i")} AS event_id, i + 1 AS seq, {digest.format("'annotation' || i")}
                    AS annotation_id, '{TASK}' AS task, {sha.format(f"'input' || (i % {inputs})")} AS input_id,
                {digest.format("'prediction' || i")} AS prediction_id, {sha.format("'model'")} AS model_id,
                'b0' AS batch, ['ball', 'box', 'sign'][1 + (i % 3)] AS concept,
                0.1 + (i % 7) * 0.1 AS x1, 0.1 + (i % 5) * 0.1 AS y1, 0.15 + (i % 7) * 0.1 AS x2,
                0.2 + (i % 5) * 0.1 AS y2, NULL::DOUBLE[] AS polygon,
                0.3 + 0.7 * ((i * 7919) % 10007) / 10007.0 AS confidence,
                CASE WHEN 0.3 + 0.7 * ((i * 7919) % 10007) / 10007.0 > 0.9 THEN 'SUCCESS' ELSE 'AWAITING_REVIEW' END
                    AS status,
                'autoannotate' AS annotator, 'auto' AS source, TIMESTAMP '2026-12-01 01:00:00' AS event_at,
                NULL AS rules, 'box' AS kind, NULL AS original_concept
            FROM range({objects}) t(i)""")
        s.conn.execute("INSERT INTO annotations BY NAME SELECT * FROM synthetic")
        s.conn.execute(f"""
            INSERT INTO annotations BY NAME SELECT * REPLACE (
                {digest.format("'decision' || seq")} AS event_id, seq + {objects} AS seq,
                CASE WHEN seq % 2 = 0 THEN 'SUCCESS' ELSE 'REJECTED' END AS status,
                CASE WHEN seq % 4 = 0 THEN 'alice' ELSE 'bob' END AS annotator, 'review' AS source,
                TIMESTAMP '2026-12-01 02:00:00' AS event_at) FROM synthetic WHERE seq % 5 = 0""")
        s.conn.execute("INSERT INTO annotation_state BY NAME SELECT * FROM annotations "
                       "QUALIFY row_number() OVER (PARTITION BY annotation_id ORDER BY event_at DESC, seq DESC) = 1")

    resources["store"].write(insert)


def timed(call, repeat: int) -> tuple[float, float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder)
        task_file = home / "gallery.yaml"
        task_file.write_text(f"name: {TASK}\nconcepts: [ball, box, sign]\nreviewers: [alice, bob]\n"
                             "thresholds: {upper: 0.9, lower: 0.3}\n")
        resources = build_resources(Settings(home=home, task_files=(str(task_file),)))
        start = time.perf_counter()
        fill(resources, args.objects)
        history = resources["store"].read(lambda s: s.scalar("SELECT count(*) FROM annotations"))
        print(f"store: {args.objects} object annotations, {history} events, over {max(1, args.objects // 10)} "
              f"inputs (synthetic rows, filled in {time.perf_counter() - start:.1f} s)")
        app = create_app(resources["store"], resources["images"], resources["tasks"].load(), resources["versions"])
        lead = TestClient(app, headers={"Authorization": f"Bearer {app.state.desk.invite('lena', Role.LEAD)}"})

        def page(**params) -> dict:
            answer = lead.get("/api/objects", params={"task": TASK, **params})
            answer.raise_for_status()
            return answer.json()

        first = page()
        deep = first
        for _ in range(20):
            deep = page(after=deep["next"])
        cases = {
            "first page (60 objects)": {},
            "next page (by its key)": {"after": first["next"]},
            "page 22 (by its key)": {"after": deep["next"]},
            "concept ball AND status AWAITING_REVIEW": {"concept": "ball", "status": "AWAITING_REVIEW"},
            "concept ball OR status REJECTED": {"concept": "ball", "status": "REJECTED", "combine": "or"},
            "labeler alice": {"labeler": "alice"},
            "confidence 0.5 to 0.6": {"min_confidence": 0.5, "max_confidence": 0.6},
        }
        print(f"{'request':42s} {'median ms':>10s} {'max ms':>8s} {'matching':>9s}")
        for name, params in cases.items():
            median, slowest, result = timed(lambda params=params: page(**params), args.repeat)
            print(f"{name:42s} {median:10.1f} {slowest:8.1f} {result['total']:9d}")


if __name__ == "__main__":
    main()
