"""Test helpers that run real Dagster materializations against a test's own home."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import dagster as dg
import pandas as pd
from PIL import Image

from apps.demo_scenes import SHAPE_CLASSES, generate_scene
from assets.partitions import batch_partitions
from storage.inbox import list_inbox_files


def new_batch(resources: dict, instance: dg.DagsterInstance, files: list[Path] | None = None) -> str:
    """Pin files of the inbox (all of them by default) as a batch partition."""
    inbox = resources["inbox"]
    files = files if files is not None else list_inbox_files(Path(inbox.path))
    key = inbox.write_batch([str(Path(f).relative_to(inbox.path)) for f in files])
    instance.add_dynamic_partitions(batch_partitions.name, [key])
    return key


def materialize_batch(assets: list, resources: dict, instance: dg.DagsterInstance, batch: str,
                      checks: list | None = None) -> dg.ExecuteInProcessResult:
    result = dg.materialize([*assets, *(checks or [])], partition_key=batch, instance=instance, resources=resources)
    assert result.success
    return result


def query(store, sql: str, params: list | dict | None = None) -> pd.DataFrame:
    """What a user checking the database by hand would see."""
    return store.read(lambda s: s.df(sql, params))


def table_count(resources: dict, table: str, where: str = "TRUE", params: list | None = None) -> int:
    return int(query(resources["store"], f"SELECT count(*) FROM {table} WHERE {where}", params).iloc[0, 0])


def copy_home(source: Path, target: Path, *task_files: str) -> Path:
    """A copy of a home built once per module (its Dagster instance left out), its `tasks.txt` naming the copy's
    task files `task_files` (file names in the home)."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("dagster"))
    (target / "tasks.txt").write_text("".join(f"{target / name}\n" for name in task_files))
    return target


# A checkpoint whose pickle runs a shell command when it is unpickled: `touch` of a marker file.
EVIL = """
import os, sys, torch
class Payload:
    def __reduce__(self):
        return (os.system, ("touch " + sys.argv[2],))
torch.save({"model": Payload(), "train_args": {}}, sys.argv[1])
"""


def malicious_weights(folder: Path) -> tuple[Path, Path]:
    weights, marker = folder / "best.pt", folder / "ran"
    subprocess.run([sys.executable, "-c", EVIL, str(weights), str(marker)], check=True)
    assert weights.stat().st_size > 0 and not marker.exists()
    return weights, marker


def write_task_file(folder: Path, **overrides: object) -> Path:
    """The demo task with some fields replaced (`model=None` drops the task's own weights)."""
    import yaml

    from core.settings import DEMO_TASK, DEMO_WEIGHTS

    data = yaml.safe_load(DEMO_TASK.read_text())
    data["model"]["weights"] = str(DEMO_WEIGHTS)
    data.update(overrides)
    if data.get("model") is None:
        data.pop("model", None)
    path = folder / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


DAGSTER_URL = "http://127.0.0.1:3999"  # what the tasks page links to in the tests (nothing listens there)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# CI (.ci/run) installs Chromium and sets this, so a missing browser fails there instead of skipping.
BROWSER_AVAILABLE = Path(CHROMIUM).exists() or bool(os.environ.get("AUTOANNOTATE_REQUIRE_BROWSER"))


# Tests that drive the page wait on it with `page.wait_for_function`, which Playwright evaluates from a string: the
# page's Content-Security-Policy forbids exactly that, so those tests let Playwright bypass it. The policy itself is
# tested with it enforced (tests/test_hostile_input.py drives the page under it).
BYPASS_CSP = True


def launch_chromium(playwright):
    """Debian's Chromium through Playwright, headless, with nothing reaching for the network."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"])


HOLD_LOCK = """
import duckdb, sys, time
conn = duckdb.connect(sys.argv[1])
conn.execute("CREATE TABLE IF NOT EXISTS holder (x INTEGER)")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.close()
"""


def hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)], stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def autoannotate(*args: str, home: Path, check: bool = True, env: dict | None = None,
                 console: bool = False) -> subprocess.CompletedProcess:
    """The CLI as a user runs it, with AUTOANNOTATE_HOME (and any `env`) set. In this process by default (the
    console script's own `main`, with its environment, stdout and stderr swapped in and restored after), which
    spares each call the 4-5 s a new interpreter takes to import torch and Dagster; with `console`, or
    AUTOANNOTATE_TEST_CONSOLE=1 for the whole suite, the installed console script in a new process."""
    if console or os.environ.get("AUTOANNOTATE_TEST_CONSOLE") == "1":
        script = Path(sys.executable).parent / "autoannotate"
        result = subprocess.run([str(script), *args], env={**os.environ, "AUTOANNOTATE_HOME": str(home), **(env or {})},
                                capture_output=True, text=True, timeout=600)
    else:
        result = _in_process(list(args), {"AUTOANNOTATE_HOME": str(home), **(env or {})})
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _in_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`apps.cli.main(args)` as the console script runs it: exit codes of argparse and of uncaught errors (1, with
    the traceback on stderr) as the interpreter gives them."""
    from apps.cli import main

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(env)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
            except Exception:  # what the interpreter prints for an uncaught error
                traceback.print_exc()
                code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(["autoannotate", *args], code, out.getvalue(), err.getvalue())


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB", exif_orientation: int | None = None,
                colour: tuple = (200, 30, 30)) -> bytes:
    """Encode a small image in memory, optionally with an EXIF orientation tag."""
    fill = colour[0] if mode in ("L", "P", "I;16") else colour[: len(mode)]
    image = Image.new(mode, size, fill)
    buffer = io.BytesIO()
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = exif_orientation
        image.save(buffer, format=fmt, exif=exif)
    else:
        image.save(buffer, format=fmt)
    return buffer.getvalue()


@contextlib.contextmanager
def review_server(resources: dict) -> Iterator[tuple[int, object]]:
    """`autoannotate review serve` in a thread: its port and app."""
    import uvicorn

    port = free_port()
    from apps.review_server import create_app

    app = create_app(resources["store"], resources["images"], resources["tasks"].load(), resources["versions"],
                     DAGSTER_URL, resources["concept_models"])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.05)
        yield port, app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def write_labels_csv(truth: dict[Path, set[str]], csv_path: Path) -> int:
    """`file,concept` rows for labelled scenes; a scene with no concept gets one row with an empty concept (a
    person labelled it: it has none)."""
    rows = [f"{path.name},{concept}" for path, concepts in truth.items() for concept in sorted(concepts) or [""]]
    csv_path.write_text("file,concept\n" + "".join(row + "\n" for row in rows))
    return len(rows)


def yolo_dataset(root: Path, count: int, seed: int = 7_000_000) -> dict[str, list]:
    """A YOLO dataset of generated scenes; returns the truth per image name in pixels."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    truth = {}
    for index in range(count):
        image, objects = generate_scene(seed + index)
        name = f"img{index:03d}"
        image.save(root / "images" / "train" / f"{name}.png")
        lines = []
        for obj in objects:
            cx, cy = (obj.x1 + obj.x2) / 2 / image.width, (obj.y1 + obj.y2) / 2 / image.height
            w, h = (obj.x2 - obj.x1) / image.width, (obj.y2 - obj.y1) / image.height
            lines.append(f"{SHAPE_CLASSES.index(obj.class_name)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
        (root / "labels" / "train" / f"{name}.txt").write_text("\n".join(lines) + "\n")
        truth[name] = sorted((o.class_name, o.x1, o.y1, o.x2, o.y2) for o in objects)
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(SHAPE_CLASSES))
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/train\nnames:\n{names}\n")
    return truth


def ap_against_itself(truth) -> float:
    """COCO AP of a pycocotools `COCO` file's own boxes scored against it: 1.0 when the file is consistent."""
    from pycocotools.cocoeval import COCOeval

    evaluation = COCOeval(truth, truth.loadRes([{**a, "score": 1.0} for a in truth.dataset["annotations"]]), "bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return float(evaluation.stats[0])


def sign_in(page, port: int, token: str) -> None:
    """Open a personal link as a reviewer does, and wait until its page has signed in and moved on."""
    page.goto(f"http://127.0.0.1:{port}/?token={token}")
    page.wait_for_selector("#signin-sentence", state="detached", timeout=20_000)
    page.wait_for_load_state("networkidle")


def open_review_page(browser, port: int, app, reviewer: str, input_id: str, viewport: tuple[int, int] = (1500, 800)):
    """The review page signed in as `reviewer` (the personal link), showing the image `input_id`."""
    page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, bypass_csp=BYPASS_CSP)
    sign_in(page, port, app.state.desk.invite(reviewer))
    page.locator(f'#queue-items div[data-input="{input_id}"]').click()
    page.locator(f'#canvas[data-input="{input_id}"]').wait_for(timeout=20_000)
    return page


# The demo task's concepts, and the generated shapes they stand for (crosses are not part of the task).
CONCEPT_OF = {"circle": "ball", "square": "box", "triangle": "sign"}
NAMES = ["ball", "box", "sign"]


def suggestions_dataset(root: Path, count: int) -> dict[str, list[tuple[str, float]]]:
    """A YOLO dataset whose label lines carry a confidence (Ultralytics' save_conf): 0.9, 0.8, ... for the
    objects of an image in order. Returns each image's (concept, confidence) pairs."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    truth = {}
    for index in range(count):
        image, objects = generate_scene(5_500_000 + index, width=480, height=360, min_objects=3)
        name = f"suggest{index:02d}"
        image.save(root / "images" / "train" / f"{name}.png")
        lines, pairs = [], []
        for obj in [o for o in objects if o.class_name in CONCEPT_OF]:
            confidence = round(0.9 - 0.1 * len(pairs), 2)
            cx, cy = (obj.x1 + obj.x2) / 2 / 480, (obj.y1 + obj.y2) / 2 / 360
            w, h = (obj.x2 - obj.x1) / 480, (obj.y2 - obj.y1) / 360
            concept = CONCEPT_OF[obj.class_name]
            lines.append(f"{NAMES.index(concept)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f} {confidence}")
            pairs.append((concept, confidence))
        (root / "labels" / "train" / f"{name}.txt").write_text("\n".join(lines) + "\n")
        truth[name] = pairs
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [ball, box, sign]\n")
    return truth


def exported_input_ids(out: Path) -> dict[str, str]:
    """Image file stem -> input id, from an export's record (exported images are named by their original file)."""
    record = json.loads((out / "autoannotate_export.json").read_text())
    return {Path(name).stem: input_id for name, input_id in record["images"].items()}


TEAM_TABLES = ("inputs", "input_sources", "rejected_inputs", "models", "predictions", "processed_inputs",
               "annotations", "annotation_state", "task_inputs", "task_classes", "routing_rules", "review_assignments",
               "dataset_versions")


def in_home(home: Path, env: dict, expression: str) -> object:
    """The JSON value of `expression` (over `store`) computed by a fresh process in that home and mode."""
    code = ("import json; from core.settings import Settings; from resources import build_resources; "
            "from apps.runner import instance_of; "
            f"store = build_resources(Settings.from_env())['store']; print(json.dumps({expression}))")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "AUTOANNOTATE_HOME": str(home), **env},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def table_counts(home: Path, env: dict) -> dict[str, int]:
    """Rows per team-mode table, read by a fresh process in that home and mode."""
    return in_home(home, env,
                   f"store.read(lambda s: {{t: s.scalar('SELECT count(*) FROM ' + t) for t in {TEAM_TABLES}}})")


def exactly_once(home: Path, variables: dict) -> int:
    """How many events and inputs are stored more than once (0 when every one is there exactly once)."""
    return in_home(home, variables, "store.read(lambda s: s.scalar('SELECT count(*) - count(DISTINCT event_id) + "
                   "(SELECT count(*) - count(DISTINCT input_id) FROM inputs) FROM annotations'))")


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_benchmark_at_a_tiny_size(script: str, arguments: list[str], figure: str, tmp_path: Path) -> None:
    """A script under benchmarks/ run as a user runs it: it must finish and print the line its figures are on
    (matching the regular expression `figure`); nothing is timed."""
    import re

    env = {**os.environ, "PYTHONPATH": str(BENCHMARKS.parent), "AUTOANNOTATE_HOME": str(tmp_path / "home"),
           "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), *arguments], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert re.search(figure, done.stdout, re.MULTILINE), f"{script} printed no figure /{figure}/:\n{done.stdout}"


def image_handler(body: bytes, seen: Callable[[BaseHTTPRequestHandler], object] | None = None
                  ) -> type[BaseHTTPRequestHandler]:
    """A request handler answering every GET with the JPEG `body` (`seen` is told of each request first)."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if seen:
                seen(self)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
