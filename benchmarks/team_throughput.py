"""Team mode's throughput with one Celery worker and with two, on the same inbox.

For each worker count: a fresh home, `make team-up` (PostgreSQL, SeaweedFS, Redis, N Celery workers of one
process each, each with a home of its own, the daemon, the webserver) on free ports, the same real photographs
(scikit-image's, 0.3-12 MP, as in `realistic_pipeline.py`) put under the bucket's `inbox/` prefix and pinned as
the sensor pins them, split into batches, launched as one backfill through the webserver (what the UI's
backfill button does): the workers share no folder, only PostgreSQL, Redis and the bucket. Timed: from the
launch to the last run's end. Printed: images/s for each count, their ratio, and each home's row counts against
one embedded run of the same photos. The model is YOLOv8n's layout at
640 px (random, calibrated weights: speed does not depend on them).

On one machine both workers share its cores, and inference already uses every core (ONNX Runtime's threads),
so a second worker gains only what one worker leaves idle: decoding, ingestion, the store's writes and each
step's start. Across machines each worker brings its own cores.

    PYTHONPATH=. .venv/bin/python benchmarks/team_throughput.py --images 200 --batches 4
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

from apps.runner import create_batch, create_bucket_batch, instance_of, pending_files
from apps.team_services import (
    cluster_folder,
    free_team_ports,
    launch_backfill,
    read_team_env,
    run_statuses,
    wait_for_webserver,
)
from benchmarks.realistic_pipeline import build_yolov8n, make_photos, photo_task
from core.settings import Settings
from resources import build_resources
from storage.blobs import blob_store


def team(action: str, environment: dict) -> None:
    result = subprocess.run([sys.executable, "-m", "apps.team_services", action], env=environment,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise SystemExit(f"team {action} failed: {result.stderr}")


COUNT_ROWS = ("import json; from core.settings import Settings; from resources import build_resources; "
              "from store.tables import TABLES; store = build_resources(Settings.from_env())['store']; "
              "print(json.dumps(store.read(lambda s: {t: s.scalar(f'SELECT count(*) FROM {t}') for t in TABLES})))")


def stored_rows(environment: dict[str, str]) -> dict[str, int]:
    """Rows per table, read by a new process in that home and mode."""
    done = subprocess.run([sys.executable, "-c", COUNT_ROWS], env=environment, capture_output=True, text=True,
                          check=True)
    return json.loads(done.stdout)


def embedded_rows(photos: list[Path], task: Path, work: Path) -> dict[str, int]:
    """The rows the same photos give one `autoannotate run` in an embedded home (no team variables)."""
    home, inbox = work / "home-embedded", work / "inbox-embedded"
    shutil.rmtree(home, ignore_errors=True)
    inbox.mkdir(parents=True, exist_ok=True)
    for photo in photos:
        shutil.copy2(photo, inbox / photo.name)
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOANNOTATE_", "AWS_"))}
    environment.update({"AUTOANNOTATE_HOME": str(home), "AUTOANNOTATE_TASKS": str(task)})
    subprocess.run([str(Path(sys.executable).parent / "autoannotate"), "run", "--inbox", str(inbox), "--json"],
                   env=environment, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return stored_rows(environment)


def measure(workers: int, photos: list[Path], batches: int, task: Path, work: Path, inbox_kind: str = "bucket"
            ) -> tuple[float, dict[str, int]]:
    """Seconds from launching the backfill to the end of its last run, and the rows it stored. `inbox_kind`
    "folder": the photos in the coordinator's inbox folder instead (which workers on this machine can read)."""
    home = work / f"home-{workers}"
    shutil.rmtree(home, ignore_errors=True)
    variables = {"AUTOANNOTATE_HOME": str(home), "AUTOANNOTATE_TASKS": str(task),
                 "AUTOANNOTATE_TEAM_WORKERS": str(workers), **free_team_ports()}
    environment = {**os.environ, **variables}
    team("up", environment)
    try:
        url = f"http://127.0.0.1:{variables['AUTOANNOTATE_TEAM_WEB_PORT']}"
        wait_for_webserver(url)
        shared = read_team_env(home)
        os.environ.update({k: v for k, v in shared.items() if k.startswith("AWS_")})  # this process pins batches
        inbox_at = f"{shared['AUTOANNOTATE_SHARED']}/inbox" if inbox_kind == "bucket" else str(home / "inbox")
        settings = Settings.from_env({**variables, **shared, "AUTOANNOTATE_INBOX": inbox_at})
        inbox, instance = build_resources(settings)["inbox"], instance_of(settings)
        camera, keys, cursor = blob_store(inbox.path), [], None
        for part in range(batches):
            for photo in photos[part::batches]:
                camera.put_file(photo.name, photo)
            if inbox_kind == "bucket":
                key, cursor = create_bucket_batch(inbox, instance, cursor)
            else:
                key = create_batch(inbox, pending_files(inbox).ready, instance)
            keys.append(key)
        started = time.perf_counter()
        launch_backfill(url, keys)
        while True:
            statuses = [r["status"] for r in run_statuses(url)]
            if len(statuses) == batches and all(s in ("SUCCESS", "FAILURE", "CANCELED") for s in statuses):
                break
            time.sleep(1)
        elapsed = time.perf_counter() - started
        if statuses != ["SUCCESS"] * batches:
            raise SystemExit(f"{workers} worker(s): runs ended {statuses}; see {home / 'team'}")
        return elapsed, stored_rows({**environment, **read_team_env(home)})
    finally:
        team("down", environment)
        shutil.rmtree(cluster_folder(Settings(home=home)), ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--work", type=Path, default=None, help="folder for photos and homes (default: a temp dir)")
    parser.add_argument("--inbox", choices=("bucket", "folder"), default="bucket",
                        help="where the photos arrive: the bucket's inbox/ prefix (the default: workers share no "
                             "folder), or the coordinator's inbox folder (what the bucket inbox costs)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-team-throughput-"))
    photos = make_photos(work / "photos", args.images, seed=5)
    weights = build_yolov8n(work / "yolov8n-random.pt", photos)
    task = photo_task(work, weights)
    print(f"{len(photos)} photos in {args.batches} batches from the {args.inbox} inbox, {os.cpu_count()} cores, "
          "YOLOv8n (random) at 640, DuckLake on PostgreSQL with its Parquet files and the images in SeaweedFS, "
          "Dagster on PostgreSQL, Celery on Redis")
    rates, rows = {}, {}
    for workers in (1, 2):
        elapsed, rows[workers] = measure(workers, photos, args.batches, task, work, args.inbox)
        rates[workers] = len(photos) / elapsed
        print(f"{workers} worker(s): {elapsed:7.1f} s, {rates[workers]:6.2f} images/s")
    print(f"2 workers / 1 worker: {rates[2] / rates[1]:.2f}x")
    # `write_turns` exists to serialize a lake's writers: its rows are the lake's own, not data.
    embedded = {t: n for t, n in embedded_rows(photos, task, work).items() if t != "write_turns"}
    for workers, counted in rows.items():
        differing = {t: (embedded[t], counted.get(t)) for t in embedded if embedded[t] != counted.get(t)}
        print(f"{workers} worker(s): row counts equal to one embedded run of the same photos in "
              f"{len(embedded) - len(differing)} of {len(embedded)} tables"
              + (f"; differ: {json.dumps(differing)}" if differing else ""))


if __name__ == "__main__":
    main()
