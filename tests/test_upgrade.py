"""Upgrades keep everything: a home an earlier release built, opened by today's code.

The earlier release is a commit of this repository, checked out in a git worktree and run as its users ran it (its
own CLI, this environment's packages); today's code then opens the same home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import duckdb
import pytest
from helpers import autoannotate

from apps.review_desk import ReviewDesk
from resources.store import DuckDBStore
from store.tables import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[1]
# main when the third wave had landed: its homes have no schema version, no token expiry, no pinned weights.
PAST_RELEASE = "72bf6d4ebceab0a4034ddb1e6ad55d65e30eaf05"

# The earlier release's CLI, run in one interpreter: a user's day (ingest, review two boxes, freeze, export).
PAST_DAY = """
import contextlib, io, json, os, sys
from apps.cli import main

def cli(*args):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    assert code == 0, (args, code)
    return out.getvalue()

inbox, task_file, exports = sys.argv[1:4]
os.makedirs(exports)
cli("demo", "--count", "8", "--seed", "42", "--inbox", inbox)
cli("run", "--inbox", inbox, "--task-file", task_file)
undecided = json.loads(cli("--json", "review", "list", "--reviewer", "alice"))["undecided"]
cli("review", "accept", undecided[0]["annotation_id"], "--reviewer", "alice")
cli("review", "reject", undecided[1]["annotation_id"], "--reviewer", "alice")
link = json.loads(cli("--json", "review", "invite", "alice"))["url"]
open(f"{exports}/link.txt", "w").write(link)
cli("version", "create", "--name", "release-1")
for fmt in ("yolo", "coco"):
    cli("export", "--version", "demo-shapes@release-1", "--format", fmt, "--out", f"{exports}/{fmt}")
"""


def tables_rows(database: Path) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every table's columns and rows, sorted, read straight from the file."""
    with duckdb.connect(str(database), read_only=True) as conn:
        names = [n for (n,) in conn.execute("SELECT table_name FROM information_schema.tables "
                                            "WHERE table_type = 'BASE TABLE'").fetchall()]
        tables = {}
        for name in names:
            columns = [c for (c,) in conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                                                  "table_name = ? ORDER BY ordinal_position", [name]).fetchall()]
            tables[name] = (columns, read_rows(conn, name, columns))
        return tables


def read_rows(conn: duckdb.DuckDBPyConnection, table: str, columns: list[str]) -> list[tuple]:
    return conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY ALL").fetchall()


def yolo_boxes(folder: Path) -> dict[str, list[str]]:
    """What a trainer reads from a YOLO export: every label file's lines, by path."""
    return {str(p.relative_to(folder)): sorted(p.read_text().splitlines()) for p in folder.rglob("*.txt")}


def coco_boxes(folder: Path) -> list[tuple]:
    """Every COCO file's boxes: (file, image, concept, bbox)."""
    boxes = []
    for path in sorted(folder.rglob("*.json")):
        if path.name == "autoannotate_export.json":
            continue
        coco = json.loads(path.read_text())
        files = {image["id"]: image["file_name"] for image in coco["images"]}
        names = {category["id"]: category["name"] for category in coco["categories"]}
        boxes += [(path.name, files[a["image_id"]], names[a["category_id"]], tuple(round(v, 6) for v in a["bbox"]))
                  for a in coco["annotations"]]
    return sorted(boxes)


@pytest.fixture(scope="module")
def past_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The earlier release's source, in a worktree removed afterwards."""
    known = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{PAST_RELEASE}^{{commit}}"],
                           capture_output=True)
    if known.returncode != 0:
        pytest.skip(f"this checkout lacks the history holding {PAST_RELEASE[:7]} (a shallow clone)")
    tree = tmp_path_factory.mktemp("release") / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), PAST_RELEASE], check=True,
                   capture_output=True)
    yield tree
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True)


def test_a_home_an_earlier_release_built_keeps_every_row_and_exports_the_same_boxes(past_release: Path,
                                                                                   tmp_path: Path) -> None:
    home, inbox, exports = tmp_path / "home", tmp_path / "inbox", tmp_path / "past-exports"
    task_file = tmp_path / "demo.yaml"
    task_file.write_text((ROOT / "tasks/demo.yaml").read_text().replace("../models/", f"{ROOT}/models/"))
    env = {**os.environ, "AUTOANNOTATE_HOME": str(home), "PYTHONPATH": str(past_release)}
    past = subprocess.run([sys.executable, "-c", PAST_DAY, str(inbox), str(task_file), str(exports)],
                          cwd=past_release, env=env, capture_output=True, text=True, timeout=600)
    assert past.returncode == 0, past.stderr[-3000:]
    database = home / "autoannotate.duckdb"
    before = tables_rows(database)
    assert "schema_versions" not in before and "expires_at" not in before["reviewer_tokens"][0]
    assert len(before["inputs"][1]) == 8 and len(before["dataset_versions"][1]) == 1
    assert len(before["annotations"][1]) > 10 and len(before["reviewer_tokens"][1]) == 1

    # Today's code opens it: nothing is damaged, and every row of every table is there as it was.
    check = json.loads(autoannotate("--json", "check", home=home).stdout)
    assert check["damaged"] == []
    after = tables_rows(database)
    with duckdb.connect(str(database), read_only=True) as conn:
        for table, (columns, rows) in before.items():
            assert read_rows(conn, table, columns) == rows, table
        versions = conn.execute("SELECT version FROM schema_versions").fetchall()
    assert versions == [(SCHEMA_VERSION,)]
    assert after["reviewer_tokens"][0][-1] == "expires_at"  # the columns added since, empty for the old rows

    # The frozen version exports the same boxes, and the past reviewer's link still signs in until it expires.
    for fmt in ("yolo", "coco"):
        autoannotate("export", "--version", "demo-shapes@release-1", "--format", fmt, "--out",
                     str(tmp_path / "exports" / fmt), home=home)
    assert yolo_boxes(tmp_path / "exports/yolo") == yolo_boxes(exports / "yolo")
    frozen = dict(zip(before["dataset_versions"][0], before["dataset_versions"][1][0]))
    assert sum(len(lines) for lines in yolo_boxes(exports / "yolo").values()) == frozen["annotations"] > 0
    assert coco_boxes(tmp_path / "exports/coco") == coco_boxes(exports / "coco") != []
    token = parse_qs(urlparse((exports / "link.txt").read_text()).query)["token"][0]
    desk = ReviewDesk(DuckDBStore(path=str(database)), [])
    link = desk.signed_in(token)
    assert link is not None and link.person == "alice"
    assert link.expires_at == before["reviewer_tokens"][1][0][before["reviewer_tokens"][0].index("created_at")] \
        + timedelta(days=30)

    # And the home goes on: a new batch lands beside the old ones, which are not predicted again.
    autoannotate("demo", "--count", "3", "--seed", "43", "--inbox", str(inbox), home=home)
    autoannotate("run", "--inbox", str(inbox), home=home)
    with duckdb.connect(str(database), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM inputs").fetchall() == [(11,)]
        predictions = read_rows(conn, "predictions", before["predictions"][0])
        assert set(before["predictions"][1]) < set(predictions) and len(set(predictions)) == len(predictions)
        assert conn.execute("SELECT count(*) FROM schema_versions").fetchall() == [(1,)]
