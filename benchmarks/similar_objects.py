""""More like this" in the objects gallery: does it find objects of the same concept on real photographs, and how
fast is the nearest-neighbour query on 100 000 objects, by exact scan and by the `vss` extension's HNSW index?

1. Real photographs: scenes are composed from `skimage.data` photographs (astronaut, coffee, chelsea, rocket,
   retina, hubble_deep_field, immunohistochemistry, colorwheel, coins, camera, horse, clock: 12 concepts), each
   scene holding 2-3 of them pasted at random sizes (0.5x-1.5x of 96-160 px) and positions on a noisy background
   of mixed size (480-800 px wide), saved as JPEG; the boxes are imported as labels (`import --format yolo`),
   every object is embedded by the task's detector backbone (the bundled demo detector) at 128 px, and for every
   object its 10 nearest objects on other images are asked through the review server's API. Printed: the share
   of those neighbours with the object's concept (and that share by chance).
2. 100 000 objects: embeddings of that dimension (synthetic: 500 clusters plus noise) in `object_embeddings`;
   printed: an exact scan in SQL through the store, the gallery's exact search (`services.similar.NearestObjects`:
   the vectors read from DuckDB once, then one matrix product per query), and a query on an HNSW index
   (`duckdb-ext-vss`, cosine) over the same vectors, with the index's build time and its recall@10 against the
   exact search.

    PYTHONPATH=. .venv/bin/python benchmarks/similar_objects.py [--scenes 120] [--objects 100000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import skimage.data
import yaml
from fastapi.testclient import TestClient
from PIL import Image

from apps.review_server import create_app
from core.annotations import Role
from core.settings import DEMO_WEIGHTS, Settings
from resources import build_resources
from services.datasets import import_labels
from services.similar import NearestObjects, object_backbone
from store.database import LAKE_CONFIG

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "retina", "hubble_deep_field", "immunohistochemistry",
          "colorwheel", "coins", "camera", "horse", "clock"]
TASK = "photos"


def photo(name: str) -> Image.Image:
    pixels = getattr(skimage.data, name)()
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    return Image.fromarray(pixels).convert("RGB")


def write_scenes(root: Path, count: int, seed: int = 3) -> None:
    """A YOLO dataset of scenes composed from the photographs, one label line per pasted photograph."""
    rng = np.random.default_rng(seed)
    sources = {name: photo(name) for name in PHOTOS}
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for index in range(count):
        width, height = int(rng.integers(480, 801)), int(rng.integers(360, 601))
        noise = rng.integers(60, 200, size=(height, width, 3), dtype=np.uint8)
        scene = Image.fromarray(noise)
        lines, taken = [], []
        for concept in rng.choice(len(PHOTOS), size=int(rng.integers(2, 4)), replace=False):
            side = int(rng.integers(96, 161) * rng.uniform(0.5, 1.5))
            patch = sources[PHOTOS[concept]].copy()
            patch.thumbnail((side, side))
            for _ in range(20):  # a place that overlaps no earlier patch
                x, y = int(rng.integers(0, width - patch.width)), int(rng.integers(0, height - patch.height))
                if all(x + patch.width <= a or a2 <= x or y + patch.height <= b or b2 <= y for a, b, a2, b2 in taken):
                    break
            taken.append((x, y, x + patch.width, y + patch.height))
            scene.paste(patch, (x, y))
            lines.append(f"{concept} {(x + patch.width / 2) / width:.6f} {(y + patch.height / 2) / height:.6f} "
                         f"{patch.width / width:.6f} {patch.height / height:.6f}")
        scene.save(root / "images" / "train" / f"scene{index:04d}.jpg", quality=90)
        (root / "labels" / "train" / f"scene{index:04d}.txt").write_text("\n".join(lines) + "\n")
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(PHOTOS))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames:\n{names}\n")


def write_task(home: Path) -> Path:
    path = home / "photos.yaml"
    path.write_text(yaml.safe_dump({"name": TASK, "concepts": PHOTOS, "reviewers": ["alice"],
                                    "thresholds": {"upper": 0.9, "lower": 0.3},
                                    "model": {"weights": str(DEMO_WEIGHTS)}}))
    return path


def real_photos(folder: Path, scenes: int) -> int:
    home = folder / "home"
    home.mkdir()
    task_file = write_task(home)
    write_scenes(folder / "dataset", scenes)
    resources = build_resources(Settings(home=home, task_files=(str(task_file),)))
    import_labels(resources["store"], resources["images"], "yolo", folder / "dataset", TASK, "labeller",
                  50_000_000, PHOTOS)
    app = create_app(resources["store"], resources["images"], resources["tasks"].load(), resources["versions"],
                     "", resources["concept_models"])
    lead = TestClient(app, headers={"Authorization": f"Bearer {app.state.desk.invite('lena', Role.LEAD)}"})
    objects = resources["store"].read(lambda s: s.df(
        "SELECT annotation_id, concept FROM annotation_state WHERE task = ? ORDER BY 1", [TASK]))
    start = time.perf_counter()
    first = lead.get(f"/api/objects/{objects['annotation_id'][0]}/similar", params={"task": TASK}).json()
    print(f"real photographs: {scenes} scenes, {len(objects)} objects of {len(PHOTOS)} concepts; embedded "
          f"{first['embedded_now']} objects in {time.perf_counter() - start:.1f} s (demo detector backbone, 128 px)")
    shares, times = [], []
    for row in objects.to_dict("records"):
        start = time.perf_counter()
        near = lead.get(f"/api/objects/{row['annotation_id']}/similar", params={"task": TASK, "limit": 10}).json()
        times.append((time.perf_counter() - start) * 1000)
        shares.append(sum(o["concept"] == row["concept"] for o in near["similar"]) / len(near["similar"]))
    chance = float((objects["concept"].value_counts(normalize=True) ** 2).sum())
    print(f"  top-10 neighbours sharing the object's concept: {statistics.mean(shares):.3f} (chance {chance:.3f}); "
          f"every neighbour shares it for {sum(s == 1.0 for s in shares) / len(shares):.1%} of objects; query "
          f"median {statistics.median(times):.1f} ms")
    probe = resources["store"].read(lambda s: s.scalar("SELECT len(vector) FROM object_embeddings LIMIT 1"))
    backbone = object_backbone(resources["concept_models"], resources["tasks"].load()[0], DEMO_WEIGHTS)
    return int(probe), backbone.model_id


def at_scale(folder: Path, objects: int, dimension: int, model_id: str) -> None:
    home = folder / "scale"
    home.mkdir()
    task_file = write_task(home)
    resources = build_resources(Settings(home=home, task_files=(str(task_file),)))
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(500, dimension)).astype(np.float32)
    vectors = centers[rng.integers(0, 500, objects)] + rng.normal(scale=0.8, size=(objects, dimension)).astype(
        np.float32)
    import pyarrow as pa

    table = pa.table({"i": np.arange(objects), "vector": pa.array(list(vectors), type=pa.list_(pa.float32()))})
    inputs = max(1, objects // 10)

    def fill(s) -> None:
        s.conn.register("synthetic", table)
        s.conn.execute(f"""
            INSERT INTO inputs SELECT sha256('input' || i), '/inbox/photo_' || i || '.jpg', 'b0', 640, 480, 'jpeg',
                50000, '/images/x', TIMESTAMP '2026-12-01' FROM range({inputs}) t(i)""")
        s.conn.execute(f"""
            INSERT INTO annotation_state BY NAME SELECT substr(md5('event' || i), 1, 32) AS event_id, i + 1 AS seq,
                substr(md5('annotation' || i), 1, 32) AS annotation_id, '{TASK}' AS task,
                sha256('input' || (i % {inputs})) AS input_id, 'coffee' AS concept, 0.1 AS x1, 0.1 AS y1,
                0.3 AS x2, 0.3 AS y2, 0.9 AS confidence, 'SUCCESS' AS status, 'bot' AS annotator, 'auto' AS source,
                TIMESTAMP '2026-12-01' AS event_at, 'box' AS kind FROM range({objects}) t(i)""")
        s.conn.execute(f"""
            INSERT INTO object_embeddings SELECT substr(md5('annotation' || i), 1, 32), '{model_id}', '{TASK}',
                sha256('input' || (i % {inputs})), vector, TIMESTAMP '2026-12-01' FROM synthetic""")

    resources["store"].write(fill)
    probes = [f"{i:d}" for i in rng.integers(0, objects, 20)]
    ids = resources["store"].read(lambda s: [s.scalar("SELECT substr(md5('annotation' || ?), 1, 32)", [p])
                                             for p in probes])
    # A scan in SQL, through the store's unit of work (it opens the file afresh, as every request does).
    sql_ms = []
    for annotation_id in ids[:5]:
        start = time.perf_counter()
        resources["store"].read(lambda s, a=annotation_id: s.conn.execute(
            "WITH probe AS (SELECT vector, input_id FROM object_embeddings WHERE annotation_id = ?) "
            "SELECT e.annotation_id, 1 - list_cosine_distance(e.vector, p.vector) AS similarity "
            "FROM object_embeddings e CROSS JOIN probe p WHERE e.input_id <> p.input_id "
            "ORDER BY similarity DESC LIMIT 10", [a]).fetchall())
        sql_ms.append((time.perf_counter() - start) * 1000)
    # The gallery's way: the matrix read once into memory, then one product per query (exact).
    nearest = NearestObjects()
    start = time.perf_counter()
    nearest.matrix(resources["store"], TASK, model_id)
    loaded = time.perf_counter() - start
    exact_ms, exact = [], {}
    for annotation_id in ids:
        start = time.perf_counter()
        exact[annotation_id] = [o["annotation_id"] for o in nearest.nearest(resources["store"], TASK, model_id,
                                                                             annotation_id, 10)]
        exact_ms.append((time.perf_counter() - start) * 1000)
    print(f"{objects} objects, {dimension}-dimensional embeddings (synthetic vectors):")
    print(f"  exact scan in SQL (a unit of work per query): median {statistics.median(sql_ms):.1f} ms, "
          f"max {max(sql_ms):.1f} ms")
    print(f"  the gallery's exact search (NearestObjects): matrix read in {loaded:.1f} s once, then median "
          f"{statistics.median(exact_ms):.1f} ms, max {max(exact_ms):.1f} ms per query (with the live check)")

    # The HNSW index on a copy of the vectors in DuckDB's own memory (the index is not part of the store: see
    # docs/benchmarks.md for why the gallery scans exactly).
    embedded = resources["store"].read(lambda s: s.pl("SELECT annotation_id, input_id, vector FROM object_embeddings"))
    index = duckdb.connect(config=LAKE_CONFIG)
    index.execute("LOAD vss")
    index.register("embedded", embedded.to_arrow())
    index.execute(f"CREATE TABLE indexed AS SELECT annotation_id, input_id, vector::FLOAT[{dimension}] AS vector "
                  "FROM embedded")
    start = time.perf_counter()
    index.execute("CREATE INDEX nearest ON indexed USING HNSW (vector) WITH (metric = 'cosine')")
    built = time.perf_counter() - start
    times, recalls = [], []
    for annotation_id, truth in exact.items():
        start = time.perf_counter()
        own, vector = index.execute("SELECT input_id, vector FROM indexed WHERE annotation_id = ?",
                                    [annotation_id]).fetchone()
        # The index answers the nearest vectors; objects on the probe's own image are dropped after.
        nearest = index.execute(f"SELECT annotation_id, input_id FROM indexed ORDER BY array_cosine_distance("
                                f"vector, ?::FLOAT[{dimension}]) LIMIT 30", [vector]).fetchall()
        found = [a for a, i in nearest if i != own][:10]
        times.append((time.perf_counter() - start) * 1000)
        recalls.append(len(set(found) & set(truth)) / 10)
    recall = statistics.mean(recalls)
    print(f"  HNSW index (vss): built in {built:.1f} s; query median {statistics.median(times):.1f} ms, max "
          f"{max(times):.1f} ms; recall@10 against the exact scan {recall:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=120)
    parser.add_argument("--objects", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        dimension, model_id = real_photos(Path(folder), args.scenes)
        at_scale(Path(folder), args.objects, dimension, model_id)


if __name__ == "__main__":
    main()
