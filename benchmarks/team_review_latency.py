"""Review decisions while batches land: how long does a reviewer's click take, embedded and in team mode?

A home is filled with one batch of demo scenes under a wide review band (0.05 to 0.99), so that most boxes wait
for a reviewer. Then four new batches run while one reviewer thread per reviewer posts decisions on their own
boxes through the review server's HTTP API (uvicorn, real sockets), 500 in all. Printed: decisions saved, their
latency (p50, p95, max) and the wall time of the four runs. Modes:

- embedded: the four batches as four concurrent `autoannotate run` processes; every click and every run take
  turns on the DuckDB file;
- postgres: the same four processes on a DuckLake whose catalog is a real PostgreSQL (started here from
  Debian's binaries); they write at once;
- celery: `make team-up` (PostgreSQL for the catalog and Dagster, Redis, two Celery workers, the daemon), the
  four batches launched as one backfill, their steps on the two workers.

Demo scenes are synthetic.

    PYTHONPATH=. .venv/bin/python benchmarks/team_review_latency.py [--mode embedded|postgres|celery|all]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
import yaml

from apps.demo_scenes import write_demo_images
from apps.review_server import create_app
from apps.runner import create_batch, instance_of, pending_files, run_pipeline
from apps.seaweedfs import free_port
from apps.team_services import (
    cluster_folder,
    free_team_ports,
    launch_backfill,
    read_team_env,
    run_statuses,
    start_postgres,
    stop_postgres,
    wait_for_webserver,
)
from core.settings import DEMO_TASK, DEMO_WEIGHTS, Settings
from resources import build_resources


def wide_band_task(folder: Path) -> Path:
    data = yaml.safe_load(DEMO_TASK.read_text())
    data["model"]["weights"] = str(DEMO_WEIGHTS)
    data["thresholds"] = {"upper": 0.99, "lower": 0.05}
    path = folder / "wide-band.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def four_cli_runs(home: Path, task: Path, catalog: str, images: int) -> Callable[[], tuple[int, list[str]]]:
    """Four concurrent `autoannotate run` processes, one batch each; returns what waits for them (how many
    succeeded, the sentences of those that failed)."""
    for index in range(4):
        write_demo_images(home / f"wave{index}", images, seed=600 + index, prefix=f"wave{index}")
    env = {**os.environ, "AUTOANNOTATE_HOME": str(home), "AUTOANNOTATE_TASKS": str(task),
           **({"AUTOANNOTATE_CATALOG": catalog} if catalog else {})}
    script = str(Path(sys.executable).parent / "autoannotate")
    logs = [(home / f"run{i}.log").open("w") for i in range(4)]
    runs = [subprocess.Popen([script, "run", "--inbox", str(home / f"wave{i}")], env=env,
                             stdout=subprocess.DEVNULL, stderr=log, text=True) for i, log in enumerate(logs)]

    def wait() -> tuple[int, list[str]]:
        codes = [run.wait(timeout=1800) for run in runs]
        return codes.count(0), [line for i, code in enumerate(codes) if code
                                for line in (home / f"run{i}.log").read_text().splitlines()
                                if line.startswith("autoannotate:")]
    return wait


def four_celery_batches(settings: Settings, url: str, images: int) -> Callable[[], tuple[int, list[str]]]:
    """Four batches launched as one backfill through the team's webserver: the daemon runs them, their steps
    on the Celery workers."""
    inbox, instance = build_resources(settings)["inbox"], instance_of(settings)
    batches = []
    for index in range(4):
        write_demo_images(settings.inbox_path, images, seed=600 + index, prefix=f"wave{index}")
        batches.append(create_batch(inbox, pending_files(inbox).ready, instance))
    before = len(run_statuses(url))
    launch_backfill(url, batches)

    def wait() -> tuple[int, list[str]]:
        while True:
            everything = run_statuses(url)  # newest first
            statuses = [r["status"] for r in everything[:len(everything) - before]]
            if len(statuses) == 4 and all(s in ("SUCCESS", "FAILURE", "CANCELED") for s in statuses):
                return statuses.count("SUCCESS"), [f"run {s}" for s in statuses if s != "SUCCESS"]
            time.sleep(1)
    return wait


def measure(mode: str, settings: Settings, task: Path, sizes: argparse.Namespace, url: str = "") -> dict:
    home = settings.home
    write_demo_images(home / "first", sizes.first, seed=500)
    run_pipeline(settings.with_run_options(home / "first"), progress=lambda _: None)
    resources = build_resources(settings)
    tasks = resources["tasks"].load()
    pending = resources["store"].read(lambda s: s.df(
        "SELECT c.annotation_id, r.reviewer FROM annotation_state c JOIN review_assignments r USING (task, input_id) "
        "WHERE c.status = 'AWAITING_REVIEW' ORDER BY c.annotation_id"))
    if len(pending) < sizes.decisions:
        raise SystemExit(f"only {len(pending)} boxes await review; {sizes.decisions} are needed")
    pending = pending.head(sizes.decisions)

    app = create_app(resources["store"], resources["images"], tasks)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    started = time.perf_counter()
    wait = (four_celery_batches(settings, url, sizes.batch_images) if url
            else four_cli_runs(home, task, settings.catalog, sizes.batch_images))
    latencies: list[float] = []
    failures: list[str] = []

    def review(reviewer: str, ids: list[str]) -> None:
        token = app.state.desk.invite(reviewer)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"},
                          timeout=120) as client:
            for annotation_id in ids:
                began = time.perf_counter()
                response = client.post(f"/api/annotations/{annotation_id}/decision", json={"decision": "accept"})
                latencies.append(time.perf_counter() - began)
                if response.status_code != 200:
                    failures.append(response.text[:200])

    reviewers = [threading.Thread(target=review, args=(name, list(group["annotation_id"])))
                 for name, group in pending.groupby("reviewer")]
    for thread in reviewers:
        thread.start()
    for thread in reviewers:
        thread.join()
    runs_ok, errors = wait()
    runs_s = time.perf_counter() - started
    server.should_exit = True
    saved = resources["store"].read(lambda s: s.scalar(
        "SELECT count(*) FROM annotation_state WHERE status = 'SUCCESS' AND source = 'review'"))
    ordered = sorted(latencies)
    return {"mode": mode, "decisions": len(latencies), "saved": saved, "failed": len(failures),
            "p50_ms": round(1000 * statistics.median(ordered)),
            "p95_ms": round(1000 * ordered[int(0.95 * (len(ordered) - 1))]), "max_ms": round(1000 * ordered[-1]),
            "runs_ok": runs_ok, "runs_wall_s": round(runs_s, 1), "run_errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "postgres", "celery", "all"], default="all")
    parser.add_argument("--first", type=int, default=220, help="demo scenes of the first batch (the review queue)")
    parser.add_argument("--decisions", type=int, default=500)
    parser.add_argument("--batch-images", type=int, default=25, help="demo scenes in each of the four batches")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="autoannotate-latency-"))
    root.chmod(0o755)
    task = wide_band_task(root)
    results = []
    postgres = root / "postgres-server"
    team_home = root / "celery"
    team_environment = {**os.environ, "AUTOANNOTATE_HOME": str(team_home), "AUTOANNOTATE_TASKS": str(task),
                        **free_team_ports()}
    try:
        if args.mode in ("embedded", "all"):
            results.append(measure("embedded", Settings(home=root / "embedded", task_files=(str(task),)), task, args))
        if args.mode in ("postgres", "all"):
            catalog = "postgres:" + start_postgres(postgres, free_port())
            results.append(measure("postgres", Settings(home=root / "postgres", task_files=(str(task),),
                                                        catalog=catalog), task, args))
        if args.mode in ("celery", "all"):
            subprocess.run([sys.executable, "-m", "apps.team_services", "up"], env=team_environment, check=True)
            settings = Settings.from_env(team_environment | read_team_env(team_home))
            url = f"http://127.0.0.1:{team_environment['AUTOANNOTATE_TEAM_WEB_PORT']}"
            wait_for_webserver(url)
            results.append(measure("celery", settings, task, args, url))
    finally:
        stop_postgres(postgres)
        if team_home.exists():
            subprocess.run([sys.executable, "-m", "apps.team_services", "down"], env=team_environment, check=False)
            shutil.rmtree(cluster_folder(Settings(home=team_home)), ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)
    print(f"{args.decisions} review decisions (one thread per reviewer) while 4 batches of {args.batch_images} demo "
          "scenes each run "
          "(synthetic scenes; this machine)")
    print(f"{'mode':<10} {'saved':>6} {'failed':>6} {'p50 ms':>7} {'p95 ms':>7} {'max ms':>7} {'runs ok':>8} "
          f"{'runs wall s':>12}")
    for r in results:
        print(f"{r['mode']:<10} {r['saved']:>6} {r['failed']:>6} {r['p50_ms']:>7} {r['p95_ms']:>7} {r['max_ms']:>7} "
              f"{r['runs_ok']:>8} {r['runs_wall_s']:>12}")
        for error in r["run_errors"]:
            print(f"  {r['mode']} run failed: {error}")


if __name__ == "__main__":
    main()
