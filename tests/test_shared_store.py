"""What every machine of a deployment must see, in one shared store (AUTOANNOTATE_SHARED=s3://bucket/prefix): the
inbox sensor on a bucket prefix, batch manifests, promoted detectors and trained weights; another home on the same
store runs a batch it never saw pinned and loads the promoted detector, with the first home gone. Against a real
SeaweedFS (the session's)."""

import json
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from apps.demo_scenes import write_demo_images
from assets.ingestion import inputs
from assets.partitions import batch_partitions
from core.settings import REPO_ROOT, Settings
from pipelines.sensors import evaluate_inbox
from resources import build_resources
from resources.inbox import Inbox
from storage.blobs import blob_store

pytestmark = pytest.mark.team


def test_the_sensor_on_a_bucket_prefix_takes_settled_objects_by_etag_and_the_run_ingests_them(
        bucket: str, tmp_path: Path, instance: dg.DagsterInstance) -> None:
    """Objects just written wait a tick (unchanged ETag and size then: settled); hidden and partial names never
    count; the run pins the keys with their ETags in the bucket's batch manifests (none in the home) and ingests
    the objects; the next tick takes nothing; an object rewritten with other bytes is taken again, once."""
    scenes = tmp_path / "scenes"
    write_demo_images(scenes, 4, seed=171)
    paths = sorted(scenes.iterdir())
    camera = blob_store(bucket + "/camera")
    for path in paths[:3]:
        camera.put(f"day1/{path.name}", path.read_bytes())
    camera.put("day1/.hidden.png", paths[3].read_bytes())
    camera.put("day1/upload.png.part", paths[3].read_bytes())
    camera.put("day1/notes.txt", b"not an image")
    settings = Settings(home=tmp_path / "home", shared=bucket + "/team", inbox_url=bucket + "/camera",
                        settle_seconds=3600)
    resources = build_resources(settings)
    inbox = resources["inbox"]
    assert inbox.is_bucket and inbox.batches == f"{bucket}/team/batches"

    first = evaluate_inbox(inbox, None)
    assert isinstance(first, dg.SensorResult) and first.run_requests == []  # young: watched for a tick
    assert "4 file(s) still being written" in first.skip_reason.skip_message
    second = evaluate_inbox(inbox, first.cursor)
    [request] = second.run_requests
    etags = {info.key: info.etag for info in camera.listing()}
    names = ["day1/notes.txt", *(f"day1/{p.name}" for p in paths[:3])]
    assert request.run_config["ops"]["inputs"]["config"]["files"] == sorted(f"{k}#etag={etags[k]}" for k in names)

    instance.add_dynamic_partitions(batch_partitions.name, [request.partition_key])
    dg.materialize([inputs], partition_key=request.partition_key, run_config=request.run_config,
                   instance=instance, resources=resources)
    assert [info.key for info in blob_store(inbox.batches).listing()] == [f"{request.partition_key}.json"]
    assert not (settings.home / "batches").exists()
    with duckdb.connect(str(settings.database_path), read_only=True) as conn:
        sources = sorted(u for (u,) in conn.execute("SELECT uri FROM input_sources").fetchall())
        rejected = conn.execute("SELECT uri, reason FROM rejected_inputs").fetchall()
    assert sources == sorted(f"{bucket}/camera/day1/{p.name}#etag={etags[f'day1/{p.name}']}" for p in paths[:3])
    assert [uri for uri, _ in rejected] == [f"{bucket}/camera/day1/notes.txt#etag={etags['day1/notes.txt']}"]

    third = evaluate_inbox(inbox, second.cursor)
    assert isinstance(third, dg.SkipReason) and third.skip_message == f"No new files in {bucket}/camera."
    camera.put(f"day1/{paths[0].name}", paths[3].read_bytes())  # the same key, other bytes: a new ETag
    fourth = evaluate_inbox(inbox, evaluate_inbox(inbox, second.cursor).cursor)
    [again] = fourth.run_requests
    assert again.run_config["ops"]["inputs"]["config"]["files"] == [
        f"day1/{paths[0].name}#etag={next(camera.listing('day1/' + paths[0].name)).etag}"]
    assert isinstance(evaluate_inbox(inbox, fourth.cursor), dg.SkipReason)


def test_a_tick_on_a_bucket_that_does_not_answer_says_so_in_one_sentence(seaweedfs: object, bucket: str,
                                                                         tmp_path: Path) -> None:
    inbox = Inbox(path="s3://no-such-bucket-for-the-sensor/camera", batches=str(tmp_path / "batches"))
    skipped = evaluate_inbox(inbox, None)
    assert isinstance(skipped, dg.SkipReason)
    assert skipped.skip_message.startswith("The inbox s3://no-such-bucket-for-the-sensor/camera cannot be listed "
                                           "(the bucket no-such-bucket-for-the-sensor does not exist at http://")


def test_another_home_on_the_same_shared_store_runs_a_pinned_batch_and_loads_the_promoted_detector(
        bucket: str, tmp_path: Path) -> None:
    """Home A pins a batch of a bucket inbox and promotes trained weights; home A is then deleted, and home B, which
    shares nothing with it but the bucket, ingests the batch by its key alone (as a backfill's run does) and runs
    its task on the promoted weights (fetched once into B's cache, the same bytes)."""
    from engines.base import model_ref

    scenes = tmp_path / "scenes"
    write_demo_images(scenes, 3, seed=172)
    camera = blob_store(bucket + "/camera")
    for path in sorted(scenes.iterdir()):
        camera.put(path.name, path.read_bytes())
    shared = {"shared": bucket + "/team", "inbox_url": bucket + "/camera", "settle_seconds": 0.0}
    home_a = Settings(home=tmp_path / "a", **shared)
    a = build_resources(home_a)
    request = evaluate_inbox(a["inbox"], None).run_requests[0]
    batch = a["inbox"].write_batch(request.run_config["ops"]["inputs"]["config"]["files"], key=request.partition_key)
    trained = tmp_path / "a" / "models" / "trained" / "v2.pt"
    trained.parent.mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "models" / "demo_detector_v2.pt", trained)
    location = a["training"].publish(trained)
    assert location == f"{bucket}/team/models/trained/v2.pt"
    [task] = a["tasks"].load()
    v2 = model_ref(trained).model_id
    a["tasks"].change_model(a["store"], task, v2, location, "promote", "alice", "by hand")
    shutil.rmtree(tmp_path / "a")

    home_b = Settings(home=tmp_path / "b", **shared)
    b = build_resources(home_b)
    assert b["inbox"].pinned_batches() == [batch]
    [task_b] = b["tasks"].load()
    assert task_b.weights_path() == tmp_path / "b" / "cache" / "models" / bucket.removeprefix("s3://") / \
        "team" / "models" / "trained" / "v2.pt"
    assert model_ref(task_b.weights_path()).model_id == v2
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(batch_partitions.name, [batch])
    from pipelines.definitions import build_definitions

    job = build_definitions(home_b).resolve_job_def("annotate_batch")
    assert job.execute_in_process(partition_key=batch, instance=instance).success
    with duckdb.connect(str(home_b.database_path), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM inputs").fetchone()[0] == 3
        models = {m for (m,) in conn.execute("SELECT DISTINCT model_id FROM predictions").fetchall()}
    assert models == {v2}
    assert not (tmp_path / "a").exists() and not (tmp_path / "b" / "batches").exists()

    # Someone who can write the bucket replaces the promoted weights: a home fetching them refuses them unread.
    blob_store(bucket + "/team").put("models/trained/v2.pt", (REPO_ROOT / "models" / "demo_detector.pt").read_bytes())
    c = build_resources(Settings(home=tmp_path / "c", **shared))
    [task_c] = c["tasks"].load()
    assert task_c.model.sha256 == v2
    from engines.base import DetectorError
    from resources.tasks import check_task_models

    with pytest.raises(DetectorError) as refused:
        check_task_models([task_c], c["detector"])
    assert str(refused.value) == (f"Detector weights {task_c.weights_path()} were refused unread: their sha256 is "
                                  f"{model_ref(REPO_ROOT / 'models' / 'demo_detector.pt').model_id[:16]}..., not the "
                                  f"pinned {v2[:16]}... (the file changed since it was pinned or published).")


def test_a_bucket_inbox_object_whose_server_stops_answering_is_waited_for_the_store_wait_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch's objects are fetched with the deployment's AUTOANNOTATE_STORE_WAIT_S (as the image store waits),
    then one sentence naming the endpoint and the wait."""
    import time

    from helpers import free_port

    from storage.blobs import BlobStoreError
    from storage.s3_blobs import BucketObject

    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for variable, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                            "AWS_REGION": "us-east-1"}.items():
        monkeypatch.setenv(variable, value)
    fetcher = Inbox(path="s3://camera", batches=str(tmp_path / "batches"), store_wait_s=1.5).url_fetcher
    started = time.monotonic()
    with pytest.raises(BlobStoreError, match=rf"the object store at {endpoint} does not answer .* within 1.5 s"):
        fetcher.fetch_all([], tmp_path / "downloads", [BucketObject("camera", "a.png", "abc")])
    assert time.monotonic() - started < 20


def test_a_run_with_a_shared_bucket_keeps_batches_versions_and_images_there_and_exports_from_it(
        bucket: str, tmp_path: Path) -> None:
    """`AUTOANNOTATE_SHARED=s3://...` alone: the batch manifest, the version manifest (its row names its URL), the
    images and nothing else of the team's leave the home; an export reads them back into the home's cache."""
    import hashlib
    from datetime import UTC, datetime

    from helpers import autoannotate

    home, inbox = tmp_path / "home", tmp_path / "inbox"
    write_demo_images(inbox, 4, seed=173)
    env = {"AUTOANNOTATE_SHARED": bucket + "/team"}
    summary = autoannotate("run", "--inbox", str(inbox), "--version", "--json", home=home, env=env).stdout
    day = datetime.now(UTC).date().isoformat()
    shared = blob_store(bucket + "/team")
    keys = [info.key for info in shared.listing()]
    [batch] = [key for key in keys if key.startswith("batches/")]
    assert batch.removeprefix("batches/").removesuffix(".json") in summary
    assert f"versions/demo-shapes/{day}/manifest.tsv" in keys
    assert len([key for key in keys if key.startswith("images/")]) == 4
    assert not {"batches", "versions", "images", "models", "lake"} & {p.name for p in home.iterdir()}
    with duckdb.connect(str(home / "autoannotate.duckdb"), read_only=True) as conn:
        [(location, sha, labelled)] = conn.execute(
            "SELECT manifest_path, manifest_sha256, inputs FROM dataset_versions").fetchall()
    assert location == f"{bucket}/team/versions/demo-shapes/{day}/manifest.tsv"
    assert hashlib.sha256(shared.read(f"versions/demo-shapes/{day}/manifest.tsv")).hexdigest() == sha
    out = tmp_path / "yolo"
    autoannotate("export", "--version", f"demo-shapes@{day}", "--format", "yolo", "--out", str(out), home=home,
                 env=env)
    assert len(list(out.glob("images/*/*"))) == labelled > 0  # model negatives are left out by default
    # The same export into a bucket prefix: the same files, byte for byte; a second one only with --overwrite.
    export = ["export", "--version", f"demo-shapes@{day}", "--format", "yolo", "--out", bucket + "/exports/v1"]
    told = json.loads(autoannotate(*export, "--json", home=home, env=env).stdout)
    assert told["out"] == f"{bucket}/exports/v1/data.yaml"  # its main file, as for a folder
    exported = blob_store(bucket + "/exports/v1")
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert {info.key: exported.read(info.key) for info in exported.listing()} == files
    refused = autoannotate(*export, home=home, env=env, check=False)
    assert refused.returncode == 1 and f"--out {bucket}/exports/v1 already holds {len(files)} objects" in refused.stderr
    exported.put("stale.txt", b"from before")
    autoannotate(*export, "--overwrite", home=home, env=env)
    assert sorted(info.key for info in exported.listing()) == sorted(files)
    # The bucket's root, the shared store and its image store are never an export's to replace.
    everything = {(info.key, info.etag) for info in blob_store(bucket).listing()}
    for out, why in ((bucket, f"holds the shared store ({bucket}/team)"), (f"{bucket}/team", "is the shared store"),
                     (f"{bucket}/team/images/x", "lies inside the image store")):
        refused = autoannotate(*export[:-1], out, "--overwrite", home=home, env=env, check=False)
        assert refused.returncode == 1 and f"--out {out} {why}" in refused.stderr, refused.stderr
    assert {(info.key, info.etag) for info in blob_store(bucket).listing()} == everything
