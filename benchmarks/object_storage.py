"""The image store in a folder against the same store in an S3 bucket (SeaweedFS on loopback, started here).

Real-photo JPEGs (as `realistic_pipeline.py` makes them) are stored as ingestion stores them (`storing_ahead`:
in a bucket eight puts at a time), then read back one after another: MB/s and images/s for each store. Then the
same inbox runs through `autoannotate run` (the bundled demo detector) with the images in the home and in the
bucket: wall time and the row counts of every table, which must be equal.

    PYTHONPATH=. .venv/bin/python benchmarks/object_storage.py --photos 200
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

from apps.seaweedfs import create_bucket, free_port_run, start_seaweedfs, stop_seaweedfs
from benchmarks.realistic_pipeline import make_photos
from storage.blobs import blob_store
from storage.images import ContentStore
from store.tables import TABLES


def store_and_read(store: ContentStore, photos: list[bytes]) -> tuple[float, float]:
    """Seconds to store every photo (new ids), and to read every one back."""
    ids = [hashlib.sha256(data).hexdigest() for data in photos]
    started = time.perf_counter()
    with store.storing_ahead() as put:  # as ingestion stores them
        for input_id, data in zip(ids, photos, strict=True):
            put(input_id, data)
    stored = time.perf_counter() - started
    started = time.perf_counter()
    for input_id in ids:
        store.read(input_id)
    return stored, time.perf_counter() - started


def run_counts(inbox: Path, home: Path, env: dict[str, str]) -> tuple[float, dict[str, int]]:
    cli = Path(sys.executable).parent / "autoannotate"
    started = time.perf_counter()
    subprocess.run([str(cli), "run", "--inbox", str(inbox), "--json"], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "AUTOANNOTATE_HOME": str(home), **env})
    wall = time.perf_counter() - started
    with duckdb.connect(str(home / "autoannotate.duckdb"), read_only=True) as conn:
        counts = {name: conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for name in TABLES}
    return wall, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--scenes", type=int, default=100, help="demo scenes for the two `autoannotate run`s")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-objects-") as work_name:
        work = Path(work_name)
        paths = make_photos(work / "photos", args.photos, seed=5)
        photos = [path.read_bytes() for path in paths]
        megabytes = sum(map(len, photos)) / 1e6
        server = start_seaweedfs(work / "seaweedfs", free_port_run())
        try:
            os.environ.update(server.env())
            create_bucket(server, "bench")
            # A new SeaweedFS allocates its volumes on its first writes (~100 ms a put for the first 50): a cost
            # of a new server, measured apart, so that the figures below are a running store's.
            warm_up = [path.read_bytes() for path in make_photos(work / "warm-up", 50, seed=6)]
            started = time.perf_counter()
            store_and_read(ContentStore(blob_store("s3://bench/warm-up")), warm_up)
            print(f"a new SeaweedFS's first 50 photos (its volumes allocated): {time.perf_counter() - started:.1f} s")
            stores = {"folder": ContentStore(blob_store(work / "images")),
                      "bucket (SeaweedFS, loopback)": ContentStore(blob_store("s3://bench/images"))}
            print(f"{len(photos)} real-photo JPEGs, {megabytes:.0f} MB, stored as ingestion stores them, then read "
                  "back one after another:")
            for name, store in stores.items():
                stored, read = store_and_read(store, photos)
                print(f"    {name:<30} store {megabytes / stored:7.1f} MB/s ({len(photos) / stored:6.1f} images/s), "
                      f"read {megabytes / read:7.1f} MB/s ({len(photos) / read:6.1f} images/s)")
            from apps.demo_scenes import write_demo_images

            write_demo_images(work / "inbox", args.scenes, seed=17)
            local = run_counts(work / "inbox", work / "home-folder", {})
            remote = run_counts(work / "inbox", work / "home-bucket", {"AUTOANNOTATE_IMAGES": "s3://bench/run"})
            print(f"autoannotate run, {args.scenes} demo scenes: {local[0]:.1f} s with the images in the home, "
                  f"{remote[0]:.1f} s in the bucket ({remote[0] / local[0]:.2f}x)")
            differing = {t: (local[1][t], remote[1][t]) for t in TABLES if local[1][t] != remote[1][t]}
            print(f"row counts equal in all {len(TABLES)} tables: {not differing}"
                  + (f" (differ: {json.dumps(differing)})" if differing else ""))
        finally:
            stop_seaweedfs(work / "seaweedfs")


if __name__ == "__main__":
    main()
