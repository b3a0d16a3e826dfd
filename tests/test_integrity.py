"""`autoannotate check` names each kind of damage to what a home keeps (folder, bucket, DuckDB file, DuckLake),
exits 1 when there is any, and changes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
from helpers import autoannotate

from apps.demo_scenes import write_demo_images
from storage.blobs import blob_store
from store.tables import TABLES

BLOCK, HEADER = 262_144, 3 * 4096  # DuckDB's storage blocks, after its three header blocks


def checked(home: Path, env: dict | None = None) -> tuple[int, dict]:
    result = autoannotate("check", "--json", home=home, env=env, check=False)
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def damaged(report: dict) -> list[tuple[str, str]]:
    return sorted((d["kind"], d["where"]) for d in report["damaged"])


def test_check_names_each_damage_in_a_home_folder(tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    write_demo_images(inbox, 6, seed=301)
    autoannotate("run", "--inbox", str(inbox), "--version", home=home)
    code, report = checked(home)
    assert (code, report["damaged"]) == (0, [])
    assert report["checked"]["stored images and videos"] == 6 and report["checked"]["version manifests"] == 1
    assert report["checked"]["tables"] == len(TABLES) == 31 and report["checked"]["rows"] > 50
    assert autoannotate("check", home=home).stdout.startswith("Checked 31 tables, ")

    database = home / "autoannotate.duckdb"
    with duckdb.connect(str(database), read_only=True) as conn:
        (changed, _), (missing, missing_uri) = conn.execute(
            "SELECT input_id, uri FROM inputs ORDER BY input_id LIMIT 2").fetchall()
        version_key, task = conn.execute("SELECT version_key, task FROM dataset_versions").fetchone()
    changed_file = home / "images" / changed[:2] / changed
    changed_file.chmod(0o644)
    changed_file.write_bytes(changed_file.read_bytes() + b"\0")  # one byte more: the pixels read the same
    (home / "images" / missing[:2] / missing).unlink()
    manifest = home / "versions" / task / version_key.split("@", 1)[1] / "manifest.tsv"
    manifest.write_text(manifest.read_text() + "an\tedited\tline\n")
    with duckdb.connect(str(database)) as conn:  # a row written twice, past the writers that keep keys unique
        conn.execute("INSERT INTO review_assignments SELECT * FROM review_assignments LIMIT 1")

    result = autoannotate("check", home=home, check=False)
    assert result.returncode == 1
    assert result.stderr == ("autoannotate: 4 thing(s) the home keeps are damaged (listed above); nothing was "
                             "changed.\n")
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"stored bytes changed: {changed_file} hashes to ") for line in lines)
    assert f"stored bytes missing: input {missing_uri} names {missing[:16]}..., which the image store " \
           f"{home / 'images'} does not hold: put the file back under its name, or delete the input " \
           "(`autoannotate input delete`)." in lines
    assert any(line.startswith(f"manifest changed: Version {version_key}: its manifest {manifest} hashes to ")
               for line in lines)
    assert "keys held twice: Table review_assignments holds 1 row(s) whose key (task, input_id) an earlier row " \
           "holds: a write was repeated outside autoannotate's writers." in lines
    code, report = checked(home)
    assert code == 1 and damaged(report) == sorted([
        ("stored bytes changed", changed), ("stored bytes missing", missing), ("manifest changed", version_key),
        ("keys held twice", "review_assignments")])

    # A damaged block of one table names that table; the others still read.
    with duckdb.connect(str(database), read_only=True) as conn:
        [block] = conn.execute("SELECT DISTINCT block_id FROM pragma_storage_info('inputs') WHERE block_id >= 0 "
                               "ORDER BY 1 LIMIT 1").fetchone()
    copy = tmp_path / "copy"
    shutil.copytree(home, copy)
    with open(copy / "autoannotate.duckdb", "r+b") as file:
        file.seek(HEADER + block * BLOCK + 100)
        file.write(b"\xff" * 64)
    code, report = checked(copy)
    unreadable = [d for d in report["damaged"] if d["kind"] == "table unreadable"]
    assert code == 1 and [d["where"] for d in unreadable] == ["inputs"]
    assert unreadable[0]["sentence"].startswith("Table inputs cannot be read whole (IO Error: Corrupt database file")
    # Damaged headers: the database is named, the images are still checked.
    with open(copy / "autoannotate.duckdb", "r+b") as file:
        file.write(b"\xff" * HEADER)
    code, report = checked(copy)
    assert code == 1 and [d["kind"] for d in report["damaged"]] == ["database unreadable", "stored bytes changed"]
    assert report["damaged"][0]["where"] == str(copy / "autoannotate.duckdb")


def test_check_names_damage_in_a_bucket_and_a_ducklake(bucket: str, tmp_path: Path) -> None:
    home, inbox = tmp_path / "home", tmp_path / "inbox"
    write_demo_images(inbox, 4, seed=302)
    env = {"AUTOANNOTATE_CATALOG": "ducklake", "AUTOANNOTATE_DATA_PATH": bucket + "/lake",
           "AUTOANNOTATE_IMAGES": bucket + "/images"}
    autoannotate("run", "--inbox", str(inbox), "--version", home=home, env=env)
    code, report = checked(home, env)
    assert (code, report["damaged"]) == (0, []) and report["checked"]["stored images and videos"] == 4
    assert report["checked"]["lake files"] > 10

    images, lake = blob_store(bucket + "/images"), blob_store(bucket + "/lake")
    changed = next(info.key for info in images.listing() if "/" in info.key and not info.key.startswith("crops/"))
    images.put(changed, images.read(changed) + b"\0")
    data_files = sorted(info.key for info in lake.listing())
    lake.delete(data_files[0])
    lake.put(data_files[1], lake.read(data_files[1])[:-1])
    code, report = checked(home, env)
    kinds = [d["kind"] for d in report["damaged"]]
    assert code == 1 and ("stored bytes changed", changed.split("/")[1]) in damaged(report)
    assert kinds.count("lake file missing") == 1 and kinds.count("lake file size differs") == 1
    wheres = {d["kind"]: d["where"] for d in report["damaged"]}
    assert wheres["lake file missing"] == lake.url(data_files[0])
    assert wheres["lake file size differs"] == lake.url(data_files[1])
