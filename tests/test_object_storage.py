"""Blobs in a folder and in a real S3 bucket (SeaweedFS on loopback, started for the session): one interface, the
image store on it, and what a run does when the bucket is missing."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from helpers import autoannotate

from apps.demo_scenes import write_demo_images
from core.faults import PAUSE_VARIABLE, RESUME_VARIABLE
from storage.blobs import BlobStore, BlobStoreError, blob_store
from storage.s3_blobs import S3Blobs

pytestmark = pytest.mark.team


@pytest.fixture(params=["folder", "bucket"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "folder":
        return blob_store(tmp_path / "blobs")
    return blob_store(request.getfixturevalue("bucket") + "/some/prefix")


def test_every_backend_keeps_reads_lists_and_removes_blobs_alike(blobs: BlobStore, tmp_path: Path) -> None:
    assert list(blobs.listing()) == [] and not blobs.exists("ab/one")
    blobs.put("ab/one", b"first bytes")
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * 40_000)  # 10 MB, streamed from the file
    blobs.put_file("cd/two", big)
    blobs.put("ab/one", b"replaced")  # a write replaces, whole
    assert blobs.read("ab/one") == b"replaced"
    with blobs.open("cd/two") as stream:
        assert stream.read(4) == bytes([0, 1, 2, 3])
    assert blobs.read("cd/two") == big.read_bytes()
    listed = list(blobs.listing())
    assert [(info.key, info.size) for info in listed] == [("ab/one", 8), ("cd/two", 10_240_000)]
    assert [info.key for info in blobs.listing("cd/")] == ["cd/two"]
    assert len({info.etag for info in listed}) == 2
    blobs.put("ab/one", b"changed again")
    assert next(blobs.listing("ab/")).etag != listed[0].etag  # the tag moves when the bytes do
    assert blobs.delete("ab/one") and not blobs.delete("ab/one")
    with pytest.raises(KeyError, match="holds no ab/one"):
        blobs.read("ab/one")
    for bad in ("", "/abs", "a/../b"):
        with pytest.raises(KeyError, match="is not a key"):
            blobs.put(bad, b"x")
    assert [info.key for info in blobs.listing()] == ["cd/two"]


def test_a_bucket_url_keeps_its_prefix_and_a_missing_bucket_is_one_sentence(bucket: str) -> None:
    store = blob_store(bucket + "/team/images/")
    assert isinstance(store, S3Blobs) and store.location == bucket + "/team/images"
    assert store.url("ab/cd") == bucket + "/team/images/ab/cd"
    missing = blob_store("s3://no-such-bucket-anywhere/images")
    with pytest.raises(BlobStoreError, match=r"^the bucket no-such-bucket-anywhere does not exist at http://"):
        missing.put("ab/cd", b"x")
    with pytest.raises(BlobStoreError, match="is not a store autoannotate can use: give a folder path or one of s3://"):
        blob_store("ftp://somewhere/images")


def test_a_run_keeps_its_images_in_the_bucket_and_nothing_in_the_home(bucket: str, tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    write_demo_images(inbox, 6, seed=61)
    env = {"AUTOANNOTATE_IMAGES": bucket + "/images"}
    first = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=home, env=env).stdout)
    assert first["ingestion"] == {"inputs": 6, "duplicates": 0, "rejected": 0}
    store = blob_store(bucket + "/images")
    keys = sorted(info.key for info in store.listing())
    with duckdb.connect(str(home / "autoannotate.duckdb"), read_only=True) as conn:
        stored = dict(conn.execute("SELECT input_id, stored_path FROM inputs").fetchall())
        predicted = conn.execute("SELECT count(DISTINCT input_id) FROM processed_inputs").fetchone()[0]
    assert keys == sorted(f"{i[:2]}/{i}" for i in stored)  # every image once, by its hash
    assert stored == {i: f"{bucket}/images/{i[:2]}/{i}" for i in stored}
    assert predicted == 6  # read back from the bucket by the detector
    assert not (home / "images").exists()
    more = tmp_path / "more"
    write_demo_images(more, 2, seed=62)
    autoannotate("run", "--inbox", str(more), "--json", home=home, env=env)
    autoannotate("run", "--inbox", str(more), "--json", home=home, env=env)  # nothing new: nothing uploaded
    assert len(list(store.listing())) == 8


def test_a_missing_bucket_fails_the_run_with_one_sentence_and_writes_nothing(seaweedfs: object, bucket: str,
                                                                            tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    write_demo_images(inbox, 3, seed=63)
    result = autoannotate("run", "--inbox", str(inbox), "--json", home=home, check=False,
                          env={"AUTOANNOTATE_IMAGES": "s3://not-made-yet/images"})
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("autoannotate: ")]
    assert len(lines) == 1
    assert ("The image store s3://not-made-yet/images cannot take another image (the bucket not-made-yet does not "
            "exist at http://127.0.0.1:") in lines[0]
    with duckdb.connect(str(home / "autoannotate.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM inputs").fetchone()[0] == 0


def test_review_pages_and_exports_read_the_images_from_the_bucket(bucket: str, tmp_path: Path) -> None:
    """The review server serves a stored image and its cut-outs through itself (the bucket stays private: no
    public or presigned link reaches the browser), and an export fetches each image once into the home's cache."""
    from fastapi.testclient import TestClient

    from apps.review_server import create_app
    from core.image_checks import load_oriented_rgb
    from core.settings import Settings
    from resources import build_resources

    home, inbox = tmp_path / "home", tmp_path / "inbox"
    write_demo_images(inbox, 6, seed=64)
    env = {"AUTOANNOTATE_IMAGES": bucket + "/images"}
    summary = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", "--version", home=home,
                                      env=env).stdout)
    resources = build_resources(Settings(home=home, images=bucket + "/images"))
    with duckdb.connect(str(home / "autoannotate.duckdb"), read_only=True) as conn:
        reviewer, input_id, annotation_id = conn.execute(
            "SELECT r.reviewer, r.input_id, s.annotation_id FROM review_assignments r JOIN annotation_state s "
            "USING (task, input_id) WHERE s.status = 'AWAITING_REVIEW' ORDER BY 1, 2, 3 LIMIT 1").fetchone()
    app = create_app(resources["store"], resources["images"], resources["tasks"].load())
    client = TestClient(app, headers={"Authorization": f"Bearer {app.state.desk.invite(reviewer)}"})
    store = blob_store(bucket + "/images")
    image = client.get(f"/images/{input_id}")
    upright = io.BytesIO()  # what the page shows: the stored bytes, upright, as JPEG
    load_oriented_rgb(store.read(f"{input_id[:2]}/{input_id}")).save(upright, format="JPEG", quality=90)
    assert image.status_code == 200 and image.content == upright.getvalue()
    assert image.history == []  # served, not redirected to the bucket
    crop = client.get(f"/crops/{annotation_id}")
    assert crop.status_code == 200 and crop.headers["content-type"] == "image/jpeg"
    assert [info.key.split("/")[:3] for info in store.listing("crops/")] == [["crops", input_id[:2], input_id]]
    version = next(iter(summary["versions"]))
    out = tmp_path / "export"
    autoannotate("export", "--version", version, "--format", "yolo", "--out", str(out), home=home, env=env)
    exported = sorted((out / "images").rglob("*.*"))
    assert exported and not (home / "images").exists()
    cached = {path.name: path for path in (home / "cache" / "images").rglob("*") if path.is_file()}
    built = summary["versions"][version]
    # The version's build fetched (and hashed) each image it holds, the model's negatives too; the export then
    # linked its own from those copies, fetching none again.
    assert len(cached) == built["inputs"] + built["negatives"] > len(exported)
    for path in exported:
        assert any(path.read_bytes() == c.read_bytes() for c in cached.values())


def test_a_lake_in_the_bucket_holds_the_rows_of_the_embedded_store_and_is_maintained_there(
        bucket: str, tmp_path: Path) -> None:
    """AUTOANNOTATE_DATA_PATH=s3://...: the DuckLake's Parquet files in the bucket (httpfs from its wheel), the
    same rows as a DuckDB file in the home gets from the same inbox, and merge, expire and clean-up run there."""
    from helpers import table_counts

    from core.settings import Settings
    from resources import build_resources

    inbox = tmp_path / "inbox"
    write_demo_images(inbox, 6, seed=65)
    lake = {"AUTOANNOTATE_CATALOG": "ducklake", "AUTOANNOTATE_DATA_PATH": bucket + "/lake",
            "AUTOANNOTATE_IMAGES": bucket + "/images"}
    for home, env in ((tmp_path / "embedded", {}), (tmp_path / "lake", lake)):
        autoannotate("run", "--inbox", str(inbox), "--version", home=home, env=env)
    expected = table_counts(tmp_path / "embedded", {})
    assert table_counts(tmp_path / "lake", lake) == expected and expected["predictions"] > 20
    files = [info.key for info in blob_store(bucket + "/lake").listing()]
    assert files and all(key.endswith(".parquet") for key in files)
    assert not (tmp_path / "lake" / "lake").exists()
    store = build_resources(Settings(home=tmp_path / "lake", catalog="ducklake", data_path=bucket + "/lake"))["store"]
    done = store.maintain(keep_days=0)
    assert done["snapshots_expired"] > 5 and done["files_removed"] >= 0
    assert table_counts(tmp_path / "lake", lake) == expected


@pytest.fixture
def own_seaweedfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, int]]:
    """A SeaweedFS of this test alone (it is stopped and started again), with the bucket `faults` and AWS_*
    pointing at it: its folder and S3 port."""
    from apps.seaweedfs import create_bucket, free_port_run, start_seaweedfs, stop_seaweedfs

    folder, port = tmp_path / "seaweedfs", free_port_run()
    store = start_seaweedfs(folder, port)
    create_bucket(store, "faults")
    for variable, value in store.env().items():
        monkeypatch.setenv(variable, value)
    yield folder, port
    stop_seaweedfs(folder)


def run_losing_its_store(folder: Path, tmp_path: Path, seed: int, wait_s: int) -> tuple[subprocess.Popen, Path, Path]:
    """`autoannotate run` of four new scenes storing its images in the bucket `faults`, with SeaweedFS stopped
    while the run reads the batch's files: the running process, its home and its inbox."""
    from apps.seaweedfs import stop_seaweedfs

    home, inbox, resume = tmp_path / "home", tmp_path / "inbox", tmp_path / "resume"
    write_demo_images(inbox, 4, seed=seed)
    script = Path(sys.executable).parent / "autoannotate"
    process = subprocess.Popen([str(script), "run", "--inbox", str(inbox), "--json"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "AUTOANNOTATE_HOME": str(home), PAUSE_VARIABLE: "inputs.read",
                                    RESUME_VARIABLE: str(resume), "AUTOANNOTATE_IMAGES": "s3://faults/images",
                                    "AUTOANNOTATE_STORE_WAIT_S": str(wait_s)})
    assert process.stderr is not None
    for line in process.stderr:
        if line.strip() == "paused at inputs.read":
            break
    stop_seaweedfs(folder)
    resume.touch()
    return process, home, inbox


def stored_counts(home: Path) -> dict[str, int]:
    with duckdb.connect(str(home / "autoannotate.duckdb"), read_only=True) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("inputs", "input_sources")}


def test_an_object_store_stopped_mid_batch_fails_in_one_sentence_and_the_next_run_finishes_the_batch(
        own_seaweedfs: tuple[Path, int], tmp_path: Path) -> None:
    from apps.seaweedfs import start_seaweedfs

    folder, port = own_seaweedfs
    process, home, inbox = run_losing_its_store(folder, tmp_path, seed=66, wait_s=2)
    assert process.stderr is not None
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 1
    lines = [line for line in stderr.splitlines() if line.startswith("autoannotate: ")]
    assert len(lines) == 1, stderr
    assert (f"The image store s3://faults/images cannot take another image (the object store at "
            f"http://127.0.0.1:{port} does not answer (EndpointConnectionError) and did not within 2 s); start it, "
            "or point AWS_ENDPOINT_URL at one that answers, then run again: nothing of this batch was written to "
            "the database.") in lines[0]
    assert stored_counts(home) == {"inputs": 0, "input_sources": 0}
    start_seaweedfs(folder, port)
    summary = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=home,
                                      env={"AUTOANNOTATE_IMAGES": "s3://faults/images"}).stdout)
    assert [r["stage"] for r in summary["resumed"]] == ["not ingested"]
    assert stored_counts(home) == {"inputs": 4, "input_sources": 4}
    assert len(list(blob_store("s3://faults/images").listing())) == 4


def test_an_object_store_restarted_during_a_batch_is_waited_for(own_seaweedfs: tuple[Path, int],
                                                                 tmp_path: Path) -> None:
    from apps.seaweedfs import start_seaweedfs

    folder, port = own_seaweedfs
    process, home, _ = run_losing_its_store(folder, tmp_path, seed=67, wait_s=120)
    time.sleep(3)  # the run meets a store that does not answer, and waits
    assert process.poll() is None
    start_seaweedfs(folder, port)
    assert process.stderr is not None
    stderr = process.stderr.read()
    assert process.wait(timeout=300) == 0, stderr
    assert stored_counts(home) == {"inputs": 4, "input_sources": 4}
    assert len(list(blob_store("s3://faults/images").listing())) == 4


def test_an_upload_killed_midway_leaves_no_object_a_reader_sees(own_seaweedfs: tuple[Path, int],
                                                                tmp_path: Path) -> None:
    """A large file (a video) goes up in parts; a process killed before the last part leaves no object, and the
    bucket shows nothing of it."""
    big = tmp_path / "video.bin"
    with big.open("wb") as out:
        for _ in range(300):
            out.write(os.urandom(1 << 20))
    uploader = subprocess.Popen([sys.executable, "-c", "import sys; from storage.blobs import blob_store; "
                                 "blob_store('s3://faults/videos').put_file('ab/video', __import__('pathlib').Path("
                                 "sys.argv[1])); print('done')", str(big)], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    store = blob_store("s3://faults/videos")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and uploader.poll() is None:  # parts are arriving: the folder has data
        time.sleep(0.2)
        if sum(p.stat().st_size for p in (own_seaweedfs[0] / "data").rglob("*.dat")) > 80 << 20:
            break
    assert uploader.poll() is None, "the upload finished before it could be killed"
    uploader.send_signal(signal.SIGKILL)
    uploader.wait(timeout=30)
    assert not store.exists("ab/video") and list(store.listing()) == []
    with pytest.raises(KeyError):
        store.read("ab/video")


def test_a_bucket_prefix_as_the_inbox_takes_new_and_changed_objects_by_etag(bucket: str, tmp_path: Path) -> None:
    """`run --inbox s3://bucket/prefix`: objects settle by ETag and size (just written, they are watched for a
    moment), each is taken once as it is, one rewritten with other bytes is taken again, hidden and partial names
    never; a non-image is rejected with its sentence; the inputs' sources are the objects' URLs."""
    home = tmp_path / "home"
    scenes = tmp_path / "scenes"
    write_demo_images(scenes, 4, seed=68)
    inbox = blob_store(bucket + "/camera")
    paths = sorted(scenes.iterdir())
    for path in paths[:3]:
        inbox.put(f"day1/{path.name}", path.read_bytes())
    inbox.put("day1/.hidden.png", paths[3].read_bytes())
    inbox.put("day1/upload.png.part", paths[3].read_bytes())
    inbox.put("day1/notes.txt", b"not an image")
    first = json.loads(autoannotate("run", "--inbox", bucket + "/camera", "--json", home=home).stdout)
    assert first["ingestion"] == {"inputs": 3, "duplicates": 0, "rejected": 1}
    assert "notes.txt" in json.dumps(first["rejections"])
    again = json.loads(autoannotate("run", "--inbox", bucket + "/camera", "--json", home=home).stdout)
    assert (again["batch"], again["files"]) == (None, 0)  # nothing new: no batch
    inbox.put(f"day1/{paths[0].name}", paths[3].read_bytes())  # the same name, other bytes: a new ETag
    third = json.loads(autoannotate("run", "--inbox", bucket + "/camera", "--json", home=home).stdout)
    assert third["ingestion"] == {"inputs": 1, "duplicates": 0, "rejected": 0}
    with duckdb.connect(str(home / "autoannotate.duckdb"), read_only=True) as conn:
        sources = sorted(uri for (uri,) in conn.execute("SELECT uri FROM input_sources").fetchall())
        inputs = conn.execute("SELECT count(*) FROM inputs").fetchone()[0]
    assert inputs == 4
    assert not (home / "inbox").exists()  # the objects travel pinned in the batch, never as a list in a folder
    assert [uri.split("#")[0] for uri in sources] == sorted(
        [f"{bucket}/camera/day1/{p.name}" for p in paths[:3]] + [f"{bucket}/camera/day1/{paths[0].name}"])


def test_a_bucket_object_rewritten_while_the_run_watches_is_left_for_the_next_run(
        bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from storage.bucket_inbox import BucketInbox
    from storage.s3_blobs import pinned_name

    store = blob_store(bucket + "/camera")
    store.put("a.png", b"first")
    store.put("b.png", b"being written")
    monkeypatch.setattr("storage.bucket_inbox.time.sleep", lambda _: store.put("b.png", b"written on"))
    inbox = BucketInbox.in_home(bucket + "/camera", tmp_path)
    ready, changing = inbox.new_objects(settle_seconds=10)  # both just written: watched for a moment
    assert [info.key for info in ready] == ["a.png"] and [info.key for info in changing] == ["b.png"]
    inbox.record_taken([pinned_name(info.key, info.etag) for info in ready])
    assert inbox.handed_over() == {"a.png": ready[0].etag}
    monkeypatch.setattr("storage.bucket_inbox.time.sleep", lambda _: None)
    ready, changing = inbox.new_objects(settle_seconds=10)
    assert [info.key for info in ready] == ["b.png"] and changing == []


def test_a_url_list_cannot_name_a_bucket_object_the_pipeline_could_read(bucket: str, tmp_path: Path) -> None:
    """A `.urls` line `s3://bucket/private/...` is no way to read an object with the pipeline's credentials: it is
    refused as any scheme but http and https is, naming it, and the object is never read; a bucket inbox's own
    objects travel pinned in the batch instead, so `run --urls` on a bucket inbox is refused in one sentence."""
    home, inbox, scenes = tmp_path / "home", tmp_path / "inbox", tmp_path / "scenes"
    write_demo_images(scenes, 1, seed=69)
    [secret] = sorted(scenes.iterdir())
    blob_store(bucket + "/private").put("secret.png", secret.read_bytes())
    inbox.mkdir()
    (inbox / "hostile.urls").write_text(f"{bucket}/private/secret.png\n{bucket}/private/secret.png#etag=x\n")
    run = json.loads(autoannotate("run", "--inbox", str(inbox), "--json", home=home).stdout)
    assert run["ingestion"] == {"inputs": 0, "duplicates": 0, "rejected": 2}
    assert sorted(r["reason"] for r in run["rejections"]) == [
        f"{bucket}/private/secret.png is refused: s3:// is not http or https; a list names http or https URLs only.",
        f"{bucket}/private/secret.png#etag=x is refused: s3:// is not http or https; a list names http or https "
        "URLs only."]
    assert {r["reason_code"] for r in run["rejections"]} == {"url_refused"}
    refused = autoannotate("run", "--inbox", bucket + "/camera", "--urls", str(inbox / "hostile.urls"), home=home,
                           check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("autoannotate: --urls joins a folder inbox, and this run's inbox is the bucket "
                                      f"prefix {bucket}/camera: give the list to a run on a folder (--inbox FOLDER).")
