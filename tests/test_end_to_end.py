"""The real Dagster daemon and webserver on loopback: the sensor annotates new files; lineage in GraphQL and
in headless Chromium. Every process is stopped at the end."""

import base64
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import BROWSER_AVAILABLE, free_port, launch_chromium, query
from PIL import Image

from apps.demo_scenes import write_demo_images
from pipelines.instance import prepare_dagster_home

REPO = Path(__file__).resolve().parents[1]
LOCATION = "pipelines.definitions:defs"


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}})
                                     .encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


def wait_for(predicate, timeout: float, interval: float = 2.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left after a bounded wait."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    home = tmp_path_factory.mktemp("e2e-home")
    (home / "inbox").mkdir()
    dagster_home = prepare_dagster_home(home / "dagster")
    port = free_port()
    env = {**os.environ, "AUTOANNOTATE_HOME": str(home), "DAGSTER_HOME": str(dagster_home),
           "AUTOANNOTATE_SENSOR_INTERVAL": "5", "AUTOANNOTATE_SETTLE_SECONDS": "2",
           "AUTOANNOTATE_VERSIONS_INTERVAL": "5"}
    log = (home / "dagster-dev.log").open("w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
         "-p", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                return True
        except OSError:
            return process.poll() is not None and pytest.fail((home / "dagster-dev.log").read_text()[-3000:])

    try:
        wait_for(answers, timeout=120, what="the webserver")
        yield url, home
    finally:
        stop_group(process)
        log.close()


def test_sensor_run_writes_annotations_and_graphql_shows_the_lineage(dagster_dev: tuple[str, Path]) -> None:
    url, home = dagster_dev
    started = graphql(url, """
        mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) {
            __typename ... on Sensor { sensorState { status } } ... on PythonError { message } } }""",
        {"s": {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "sensorName": "inbox_sensor"}})
    assert started["startSensor"]["sensorState"]["status"] == "RUNNING"

    staged = write_demo_images(home / "staging", 6, seed=21)
    for path in staged:  # copied in the way a user drops files into the folder
        shutil.copy(path, home / "inbox" / path.name)

    def finished_run(job: str) -> dict | None:
        runs = graphql(url, "{ runsOrError { ... on Runs { results { runId status jobName tags { key value } } } } }"
                       )["runsOrError"]["results"]
        assert all(run["status"] not in ("FAILURE", "CANCELED") for run in runs), runs
        return next((run for run in runs if run["status"] == "SUCCESS" and run["jobName"] == job), None)

    wait_for(lambda: finished_run("annotate_batch"), timeout=180, what="a successful sensor run")
    # The versions sensor (on by default) then builds today's versions, as a named job.
    versions_run = wait_for(lambda: finished_run("build_dataset_versions"), timeout=120,
                            what="today's versions after the batch")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert {"key": "dagster/partition", "value": today} in versions_run["tags"]

    from core.settings import Settings
    from resources import build_resources

    store = build_resources(Settings(home=home))["store"]
    assert query(store, "SELECT count(*) AS n FROM inputs")["n"].iloc[0] == 6
    assert query(store, "SELECT count(*) AS n FROM task_inputs")["n"].iloc[0] == 6
    assert query(store, "SELECT count(*) AS n FROM annotations")["n"].iloc[0] > 0
    version = query(store, "SELECT version_key, annotations FROM dataset_versions")
    assert list(version["version_key"]) == [f"demo-shapes@{today}"]
    accepted = query(store, "SELECT count(*) AS n FROM annotation_state WHERE status = 'SUCCESS'")["n"].iloc[0]
    assert version["annotations"].iloc[0] == accepted

    # What the asset page shows: column descriptions, the task's totals beside the batch's, a legible histogram.
    (node,) = graphql(url, """{ assetNodes(assetKeys: [{path: ["annotations"]}]) { assetMaterializations(limit: 1) {
        metadataEntries { label ... on TableSchemaMetadataEntry { schema { columns { name description } } }
                          ... on IntMetadataEntry { intValue } ... on MarkdownMetadataEntry { mdStr } } } } }""")[
        "assetNodes"]
    entries = {e["label"]: e for e in node["assetMaterializations"][0]["metadataEntries"]}
    columns = entries["dagster/column_schema"]["schema"]["columns"]
    assert len(columns) > 10 and all(c["description"] for c in columns)
    assert entries["demo-shapes: total accepted"]["intValue"] == accepted
    assert entries["demo-shapes: batch accepted"]["intValue"] + entries["demo-shapes: batch to review"]["intValue"] \
        == query(store, "SELECT count(*) AS n FROM annotation_state WHERE status <> 'RETIRED'")["n"].iloc[0]
    png = base64.b64decode(entries["demo-shapes confidence histogram"]["mdStr"].split("base64,")[1].rstrip(")"))
    assert Image.open(io.BytesIO(png)).size[0] >= 1500

    nodes = graphql(url, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")["assetNodes"]
    edges = {(dep["path"][-1], node["assetKey"]["path"][-1]) for node in nodes for dep in node["dependencyKeys"]}
    assert {("inputs", "predictions"), ("predictions", "annotations"), ("annotations", "dataset_versions"),
            ("dataset_versions", "detector_models")} <= edges


@pytest.mark.skipif(not BROWSER_AVAILABLE, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_asset_graph_page_in_headless_chromium(dagster_dev: tuple[str, Path], output_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, _ = dagster_dev
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1800, "height": 1000})
            # The first-visit community dialog can open at any moment and cover the graph: dismiss it when it does.
            page.add_locator_handler(page.get_by_role("button", name="Skip"), lambda skip: skip.click())
            page.goto(f"{url}/asset-groups", wait_until="networkidle")
            assets = {"ingestion": "inputs", "inference": "predictions", "triage": "annotations",
                      "versions": "dataset_versions"}
            for group, asset in assets.items():  # groups start collapsed: expand each one in the graph
                # Dagster renders a hidden copy of each label to measure it: look at visible ones only.
                if page.get_by_text(asset, exact=True).filter(visible=True).count():
                    continue
                page.get_by_text(group, exact=True).filter(visible=True).last.click()
                page.get_by_text(asset, exact=True).filter(visible=True).first.wait_for(timeout=60_000)
            page.screenshot(path=str(output_dir / "asset-graph.png"))
        finally:
            browser.close()
    assert (output_dir / "asset-graph.png").stat().st_size > 10_000
