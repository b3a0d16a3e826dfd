"""Human review: the JSON API through FastAPI's test client, a locked database, and the page in Chromium."""

import json
import re
import shutil
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import (
    BROWSER_AVAILABLE,
    BYPASS_CSP,
    autoannotate,
    hold_lock,
    launch_chromium,
    query,
    review_server,
    sign_in,
    write_task_file,
)

from apps.demo_scenes import write_demo_images
from apps.review_desk import STALE_LINK
from apps.review_server import create_app
from apps.runner import run_pipeline
from core.settings import Settings
from resources import build_resources
from store.history import CURRENT as CURRENT_ANNOTATIONS


@pytest.fixture(scope="module")
def reviewed_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home where the demo task, with a wide review band (0.3 to 0.99), ran over 16 demo scenes
    (built once, copied per test), so that most boxes wait for a reviewer."""
    home = tmp_path_factory.mktemp("review-home")
    task = write_task_file(home, thresholds={"upper": 0.99, "lower": 0.3})
    write_demo_images(home / "inbox", 16, seed=31)
    run_pipeline(Settings(home=home, task_files=(str(task),)))
    return home


@pytest.fixture
def resources(reviewed_home: Path, tmp_path: Path) -> dict:
    home = tmp_path / "home"
    shutil.copytree(reviewed_home, home, ignore=shutil.ignore_patterns("dagster"))
    return build_resources(Settings(home=home, task_files=(str(home / "demo-shapes.yaml"),)))


@pytest.fixture
def client(resources: dict) -> Callable[[str], TestClient]:
    """`client(name)`: the API as the reviewer `name`, signed in with the token `review invite` gives."""
    app = create_app(resources["store"], resources["images"], resources["tasks"].load())
    clients: dict[str, TestClient] = {}

    def signed_in_as(reviewer: str) -> TestClient:
        if reviewer not in clients:
            token = app.state.desk.invite(reviewer)
            clients[reviewer] = TestClient(app, headers={"Authorization": f"Bearer {token}"})
        return clients[reviewer]

    return signed_in_as


def pending(resources: dict, count: int = 1, reviewer: str | None = None) -> list[dict]:
    """Annotations awaiting review, with the reviewer whose queue holds their image (`reviewer`)."""
    rows = query(resources["store"],
        f"SELECT c.*, r.reviewer FROM ({CURRENT_ANNOTATIONS}) c JOIN review_assignments r USING (task, input_id) "
        "WHERE c.status = 'AWAITING_REVIEW' AND ($reviewer IS NULL OR r.reviewer = $reviewer) "
        "ORDER BY c.annotation_id LIMIT $count", {"count": count, "reviewer": reviewer})
    assert len(rows) == count
    return rows.to_dict("records")


def events_of(resources: dict, annotation_id: str) -> list[tuple[str, str, str]]:
    rows = query(resources["store"], "SELECT status, source, annotator FROM annotations WHERE annotation_id = ? "
                                       "ORDER BY event_at, seq", [annotation_id])
    return list(rows.itertuples(index=False, name=None))


def test_accept_and_reject_are_events_and_a_double_submit_is_one(client: Callable, resources: dict) -> None:
    first, second = pending(resources, 1, "alice")[0], pending(resources, 1, "bob")[0]
    for _ in range(2):  # the button pressed twice, or two tabs
        response = client("alice").post(f"/api/annotations/{first['annotation_id']}/decision",
                                        json={"reviewer": "alice", "decision": "accept"})
        assert response.status_code == 200
    assert events_of(resources, first["annotation_id"]) == [("AWAITING_REVIEW", "auto", "autoannotate-demo-bot"),
                                                            ("SUCCESS", "review", "alice")]
    response = client("bob").post(f"/api/annotations/{second['annotation_id']}/decision", json={"decision": "reject"})
    assert response.json()["status"] == "REJECTED"
    assert events_of(resources, second["annotation_id"])[-1] == ("REJECTED", "review", "bob")


def test_correct_box_and_concept_retire_the_original(client: Callable, resources: dict) -> None:
    (item,) = pending(resources, 1, "carol")
    box = {"x1": item["x1"], "y1": item["y1"], "x2": min(1.0, item["x2"] + 0.05), "y2": item["y2"]}
    response = client("carol").post(f"/api/annotations/{item['annotation_id']}/correct",
                                    json={"reviewer": "carol", "box": box, "concept": "box"})
    assert response.status_code == 200, response.text
    corrected = response.json()["annotation_id"]
    assert events_of(resources, item["annotation_id"])[-1] == ("RETIRED", "review", "carol")
    row = query(resources["store"], f"SELECT * FROM ({CURRENT_ANNOTATIONS}) WHERE annotation_id = ?", [corrected])
    assert (row["status"][0], row["concept"][0], row["x2"][0]) == ("SUCCESS", "box", pytest.approx(box["x2"]))


def test_draw_a_missed_box_and_accept_all_above(client: Callable, resources: dict) -> None:
    (item,) = pending(resources, 1, "alice")
    drawn = client("alice").post(f"/api/inputs/{item['input_id']}/boxes", json={
        "reviewer": "alice", "task": "demo-shapes", "concept": "sign",
        "box": {"x1": 0.01, "y1": 0.01, "x2": 0.05, "y2": 0.05}})
    assert drawn.status_code == 200
    assert events_of(resources, drawn.json()["annotation_id"]) == [("SUCCESS", "review", "alice")]
    above = client("alice").post(f"/api/inputs/{item['input_id']}/accept-above",
                        json={"reviewer": "alice", "task": "demo-shapes", "threshold": 0.0})
    assert above.json()["accepted"] >= 1
    left = query(resources["store"], f"SELECT count(*) AS n FROM ({CURRENT_ANNOTATIONS}) WHERE input_id = ? "
                                       "AND status = 'AWAITING_REVIEW'", [item["input_id"]])
    assert left["n"][0] == 0


@pytest.mark.parametrize(("method", "url", "body", "status", "detail"), [
    ("post", "/api/annotations/0123456789abcdef0123456789abcdef/decision",
     {"decision": "accept"}, 404, "No annotation has the id"),
    ("get", "/images/" + "0" * 64, None, 404, "No stored image has the id"),
    ("get", "/images/..%2F..%2Fetc%2Fpasswd", None, 404, None),
    ("get", "/images/../../etc/passwd", None, 404, None),
    ("post", "/api/annotations/not-an-id/decision", {"decision": "accept"}, 404,
     "is not an annotation id"),
    ("post", "/api/inputs/{input}/boxes", {"task": "demo-shapes", "concept": "sign",
                                           "box": {"x1": 0.5, "y1": 0.5, "x2": 1.2, "y2": 0.6}}, 422,
     "less than or equal to 1"),
    ("post", "/api/inputs/{input}/boxes", {"task": "demo-shapes", "concept": "sign",
                                           "box": {"x1": 0.5, "y1": 0.5, "x2": 0.4, "y2": 0.6}}, 422, "x1 < x2"),
    ("post", "/api/annotations/{annotation}/decision", {"decision": "maybe"}, 422, None),
    ("post", "/api/annotations/{annotation}/decision", {"reviewer": "bob", "decision": "accept"}, 403,
     "You are signed in as alice; a decision as bob is refused."),
    ("post", "/api/undo", {"annotation_ids": ["{annotation}"]}, 409, "is not yours to undo"),
])
def test_bad_requests_get_a_4xx_and_a_message(client: Callable, resources: dict, method: str, url: str,
                                              body: dict | None, status: int, detail: str | None) -> None:
    (item,) = pending(resources, 1, "alice")
    url = url.format(input=item["input_id"], annotation=item["annotation_id"])
    if body and "annotation_ids" in body:
        body = {"annotation_ids": [item["annotation_id"]]}
    client = client("alice")
    response = client.request(method.upper(), url, json=body)
    assert response.status_code == status
    if detail:
        assert detail in str(response.json()["detail"])
    before = query(resources["store"], "SELECT count(*) AS n FROM annotations")["n"][0]
    malformed = client.post(f"/api/annotations/{item['annotation_id']}/decision", content=b"{not json",
                            headers={"Content-Type": "application/json"})
    assert malformed.status_code == 422
    assert query(resources["store"], "SELECT count(*) AS n FROM annotations")["n"][0] == before


def test_decisions_posted_while_a_pipeline_holds_the_lock_are_all_saved(client: Callable,
                                                                          resources: dict) -> None:
    items = pending(resources, 3, "alice")
    client = client("alice")
    holder = hold_lock(Path(resources["store"].path), seconds=3)
    responses = []
    threads = [threading.Thread(target=lambda a=item: responses.append(client.post(
        f"/api/annotations/{a['annotation_id']}/decision", json={"reviewer": "alice", "decision": "accept"})))
        for item in items]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    holder.wait(timeout=30)
    assert time.monotonic() - started > 1.5  # they really waited for the lock
    assert [r.status_code for r in responses] == [200, 200, 200]
    for item in items:
        assert events_of(resources, item["annotation_id"])[-1] == ("SUCCESS", "review", "alice")


def wait_for_row(page, annotation_id: str, status: str | None) -> None:
    """Wait until the page shows the box with that status (or, with None, no longer shows it)."""
    page.wait_for_function(
        "([id, status]) => { const row = document.querySelector(`#boxes .box[data-id='${id}']`);"
        " return status === null ? !row : !!row && row.innerText.includes(status); }",
        arg=[annotation_id, status], timeout=20_000)


@pytest.mark.skipif(not BROWSER_AVAILABLE, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_review_page_keyboard_mouse_and_drag(resources: dict, output_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    store = resources["store"]
    queue = query(store, f"""
        SELECT r.reviewer, r.input_id, count(*) AS n FROM review_assignments r
        JOIN ({CURRENT_ANNOTATIONS}) c ON c.input_id = r.input_id AND c.status = 'AWAITING_REVIEW'
        GROUP BY 1, 2 HAVING n >= 3 ORDER BY n DESC, 2 LIMIT 1""")
    assert len(queue) == 1, "the demo scenes should give an image with three boxes to review"
    reviewer, input_id = queue["reviewer"][0], queue["input_id"][0]
    with review_server(resources) as (port, app), sync_playwright() as playwright:
        token = app.state.desk.invite(reviewer)
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 800}, bypass_csp=BYPASS_CSP)
            sign_in(page, port, token)
            assert page.url == f"http://127.0.0.1:{port}/"  # the token left the address bar for a cookie
            assert page.locator("#me").inner_text() == reviewer
            page.locator(f'#queue-items div[data-input="{input_id}"]').click()
            page.locator(f'#canvas[data-input="{input_id}"]').wait_for(timeout=20_000)
            page.wait_for_function(
                "n => [...document.querySelectorAll('#boxes .box')].filter("
                "b => b.innerText.includes('AWAITING_REVIEW')).length >= n", arg=3, timeout=20_000)
            rows = page.locator("#boxes .box")
            pending_ids = [rows.nth(i).get_attribute("data-id") for i in range(rows.count())
                           if "AWAITING_REVIEW" in rows.nth(i).inner_text()]
            assert len(pending_ids) >= 3

            page.locator(f'#boxes .box[data-id="{pending_ids[0]}"]').click()
            page.keyboard.press("a")  # accept with the keyboard
            wait_for_row(page, pending_ids[0], "SUCCESS")
            page.locator(f'#boxes .box[data-id="{pending_ids[1]}"]').click()
            page.click("#reject")  # reject with the mouse
            wait_for_row(page, pending_ids[1], "REJECTED")

            page.locator(f'#boxes .box[data-id="{pending_ids[2]}"]').click()
            box = query(store, "SELECT x1, y1, x2, y2 FROM annotations WHERE annotation_id = ? LIMIT 1",
                                 [pending_ids[2]]).iloc[0]
            canvas = page.locator("#canvas").bounding_box()
            left, top, width, height = map(float, page.locator("#canvas").get_attribute("data-drawn").split(","))
            x = canvas["x"] + left + box["x2"] * width
            y = canvas["y"] + top + (box["y1"] + box["y2"]) / 2 * height
            page.mouse.move(x, y)
            page.mouse.down()
            page.mouse.move(x + 15, y, steps=5)  # drag the right edge outwards
            page.mouse.up()
            wait_for_row(page, pending_ids[2], None)  # the original is retired, its correction shown
            page.screenshot(path=str(output_dir / "review-page.png"))
            page.keyboard.press("d")  # image done: what is left awaiting review is accepted
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and query(store,
                    f"SELECT count(*) AS n FROM ({CURRENT_ANNOTATIONS}) WHERE input_id = ? "
                    "AND status = 'AWAITING_REVIEW'", [input_id])["n"][0]:
                time.sleep(0.2)

            # A link for someone else, opened in this signed-in browser, asks before it switches.
            other = next(name for name in ("alice", "bob") if name != reviewer)
            link = f"http://127.0.0.1:{port}/?token={app.state.desk.invite(other)}"
            page.goto(link)
            page.locator("#signin-choice").wait_for(state="visible", timeout=20_000)
            assert page.locator("#signin-sentence").inner_text() == (
                f"This browser is signed in as {reviewer}; the link you opened signs in as {other}. Switch to "
                f"{other}, or stay {reviewer}?")
            page.click("#stay")
            page.locator("#me").wait_for(timeout=20_000)
            assert page.locator("#me").inner_text() == reviewer
            page.goto(link)
            page.click("#switch")
            page.wait_for_selector("#signin-sentence", state="detached", timeout=20_000)
            assert page.locator("#me").inner_text() == other and page.url == f"http://127.0.0.1:{port}/"
        finally:
            browser.close()

    assert events_of(resources, pending_ids[0])[-1] == ("SUCCESS", "review", reviewer)
    assert events_of(resources, pending_ids[1])[-1] == ("REJECTED", "review", reviewer)
    assert events_of(resources, pending_ids[2])[-1] == ("RETIRED", "review", reviewer)
    corrected = query(store,
        f"SELECT x2 FROM ({CURRENT_ANNOTATIONS}) WHERE status = 'SUCCESS' AND annotation_id <> $original AND "
        "prediction_id = (SELECT prediction_id FROM annotations WHERE annotation_id = $original LIMIT 1)",
        {"original": pending_ids[2]})
    assert len(corrected) == 1
    assert corrected["x2"][0] > box["x2"] + 0.01
    left = query(store, f"SELECT count(*) AS n FROM ({CURRENT_ANNOTATIONS}) WHERE input_id = ? "
                          "AND status = 'AWAITING_REVIEW'", [input_id])
    assert left["n"][0] == 0


def test_queue_filters_combine_with_and_or(client: Callable, resources: dict) -> None:
    assigned = query(resources["store"], "SELECT reviewer, count(*) AS n FROM review_assignments GROUP BY 1 "
                                           "ORDER BY n DESC LIMIT 1")
    reviewer = assigned["reviewer"][0]
    client = client(reviewer)

    def inputs(**filters) -> set[str]:
        response = client.get("/api/queue", params={"task": "demo-shapes", "reviewer": reviewer, **filters})
        assert response.status_code == 200, response.text
        return {item["input_id"] for item in response.json()["items"]}

    everything = inputs()
    assert len(everything) == assigned["n"][0]
    current = query(resources["store"], f"SELECT input_id, concept, status FROM ({CURRENT_ANNOTATIONS})")
    mine = current[current["input_id"].isin(everything)]
    with_sign = set(mine[mine["concept"] == "sign"]["input_id"])
    accepted = set(mine[mine["status"] == "SUCCESS"]["input_id"])
    accepted_signs = set(mine[(mine["concept"] == "sign") & (mine["status"] == "SUCCESS")]["input_id"])
    assert inputs(concept="sign") == with_sign
    assert inputs(concept="sign", status="SUCCESS", combine="and") == accepted_signs
    assert inputs(concept="sign", status="SUCCESS", combine="or") == with_sign | accepted
    assert inputs(labeler="nobody") == set()
    assert client.get("/api/queue", params={"task": "demo-shapes", "reviewer": "mallory"}).status_code == 404


def test_the_next_version_holds_exactly_the_accepted_boxes(client: Callable, resources: dict,
                                                           tmp_path: Path) -> None:
    import dagster as dg

    from assets.versions import dataset_versions

    keep, drop = pending(resources, 2, "alice")
    for item, decision in ((keep, "accept"), (drop, "reject")):
        assert client("alice").post(f"/api/annotations/{item['annotation_id']}/decision",
                                    json={"decision": decision}).status_code == 200
    today = time.strftime("%Y-%m-%d", time.gmtime())
    dg.materialize([dataset_versions], partition_key=today, instance=dg.DagsterInstance.ephemeral(),
                   resources=resources)
    lines = resources["versions"].read_manifest("demo-shapes", today).splitlines()[1:]
    manifest = [line for line in lines if line.split("\t")[6] != "negative"]  # images with nothing kept
    expected = query(resources["store"],
        f"SELECT input_id, concept, x1 FROM ({CURRENT_ANNOTATIONS}) WHERE task = 'demo-shapes' AND status = 'SUCCESS'")
    assert len(manifest) == len(expected)
    lines = {(line.split("\t")[0], line.split("\t")[1], line.split("\t")[2]) for line in manifest}
    assert (keep["input_id"], keep["concept"], f"{keep['x1']:.6f}") in lines
    assert (drop["input_id"], drop["concept"], f"{drop['x1']:.6f}") not in lines
    assert any(line.split("\t")[6] == "review" for line in manifest)


def test_relabel_from_the_cli_refuses_a_concept_the_task_does_not_have(resources: dict) -> None:
    home = Path(resources["store"].path).parent
    item = pending(resources, 1, "alice")[0]
    env = {"AUTOANNOTATE_TASKS": str(home / "demo-shapes.yaml")}
    refused = autoannotate("review", "relabel", item["annotation_id"], "--concept", "cat", "--reviewer", "alice",
                           home=home, check=False, env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("autoannotate: 'cat' is not a concept of task 'demo-shapes' "
                                      "(concepts: ball, box, sign).")
    assert events_of(resources, item["annotation_id"]) == [("AWAITING_REVIEW", "auto", "autoannotate-demo-bot")]
    relabelled = autoannotate("review", "relabel", item["annotation_id"], "--concept", "sign", "--reviewer",
                              "alice", "--json", home=home, env=env)
    assert json.loads(relabelled.stdout)["status"] == "SUCCESS"


def test_boxes_drawn_a_millionth_apart_are_two_annotations(client: Callable, resources: dict) -> None:
    """Every annotation id rounds boxes to the same 6 decimals (drawn boxes once used 5)."""
    input_id = pending(resources, 1, "alice")[0]["input_id"]
    ids = []
    for x1 in (0.100001, 0.100004):
        response = client("alice").post(f"/api/inputs/{input_id}/boxes", json={
            "reviewer": "alice", "task": "demo-shapes", "concept": "ball",
            "box": {"x1": x1, "y1": 0.2, "x2": 0.3, "y2": 0.4}})
        assert response.status_code == 200, response.text
        assert response.json()["written"] == 1
        ids.append(response.json()["annotation_id"])
    assert ids[0] != ids[1]


def test_links_expire_and_can_be_revoked(resources: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import apps.review_desk

    home = Path(resources["store"].path).parent
    env = {"AUTOANNOTATE_TASKS": str(home / "demo-shapes.yaml")}
    app = create_app(resources["store"], resources["images"], resources["tasks"].load())
    invited = json.loads(autoannotate("review", "invite", "alice", "--days", "2", "--json", home=home, env=env).stdout)
    token = invited["url"].split("token=")[1]
    alice = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    assert alice.get("/api/tasks").status_code == 200
    refused = autoannotate("review", "invite", "alice", "--days", "0", home=home, env=env, check=False)
    assert (refused.returncode, refused.stderr) == (1, "autoannotate: --days 0 is not a link's lifetime: give 1 to "
                                                       "365 days.\n")
    assert alice.get("/api/tasks").status_code == 200  # a refused invite leaves the current link alone

    issued = apps.review_desk.utc_now()
    for days, answer in ((1.99, 200), (2.01, 401)):  # the clock moved on
        monkeypatch.setattr(apps.review_desk, "utc_now", lambda days=days: issued + timedelta(days=days))
        assert alice.get("/api/tasks").status_code == answer
    monkeypatch.undo()
    # A token issued before links had a lifetime lasts 30 days from when it was issued.
    store = resources["store"]
    store.write(lambda s: s.conn.execute("UPDATE reviewer_tokens SET expires_at = NULL, created_at = ? WHERE "
                                         "reviewer = 'alice'", [issued - timedelta(days=29)]))
    assert alice.get("/api/tasks").status_code == 200
    store.write(lambda s: s.conn.execute("UPDATE reviewer_tokens SET created_at = ? WHERE reviewer = 'alice'",
                                         [issued - timedelta(days=31)]))
    assert alice.get("/api/tasks").status_code == 401

    bob = TestClient(app, headers={"Authorization": f"Bearer {app.state.desk.invite('bob')}"})
    assert bob.get("/api/tasks").status_code == 200
    revoked = autoannotate("review", "revoke", "bob", home=home, env=env)
    assert revoked.stdout.startswith("bob's review link no longer signs in (revoked ")
    stale = bob.get("/api/tasks")
    assert (stale.status_code, stale.json()["detail"]) == (401, STALE_LINK)
    again = autoannotate("review", "revoke", "bob", home=home, env=env, check=False)
    assert (again.returncode, again.stderr) == (1, "autoannotate: 'bob' holds no review link that signs in (never "
                                                   "invited, expired or revoked already).\n")
    assert query(store, "SELECT count(*) AS n FROM reviewer_tokens WHERE reviewer = 'bob'")["n"][0] == 1  # kept


def test_decisions_are_bound_to_the_signed_in_reviewer_and_their_own_queue(client: Callable, resources: dict,
                                                                         tmp_path: Path) -> None:
    alices = pending(resources, 1, "alice")[0]
    url = f"/api/annotations/{alices['annotation_id']}/decision"
    before = query(resources["store"], "SELECT count(*) AS n FROM annotations")["n"][0]

    app = create_app(resources["store"], resources["images"], resources["tasks"].load())
    anonymous = TestClient(app)
    assert anonymous.post(url, json={"reviewer": "alice", "decision": "accept"}).status_code == 401
    page = anonymous.get("/")
    assert page.status_code == 401 and "`autoannotate review invite NAME` prints it" in page.text
    stale = app.state.desk.invite("alice")
    fresh = app.state.desk.invite("alice")  # a new invite replaces the earlier link
    assert TestClient(app, headers={"Authorization": f"Bearer {stale}"}).post(
        url, json={"decision": "accept"}).json()["detail"] == STALE_LINK
    browser = TestClient(app)
    link = browser.get(f"/?token={fresh}", follow_redirects=False)  # the link's page signs in by a POST
    assert link.status_code == 200 and "set-cookie" not in link.headers and "/static/signin.js" in link.text
    signed_in = browser.post("/api/session", json={"token": fresh})
    assert signed_in.status_code == 200 and signed_in.json()["person"] == "alice"
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert 30 * 86400 - 60 < int(re.search(r"max-age=(\d+)", cookie)[1]) <= 30 * 86400  # as long as the link lasts
    assert browser.get("/api/tasks").status_code == 200

    bob = client("bob").post(url, json={"decision": "accept"})
    assert (bob.status_code, bob.json()["detail"]) == (403, "This image is in alice's queue, and task 'demo-shapes' "
                                                            "does not let reviewers take over each other's images "
                                                            "(allow_takeover: true in the task file would).")
    assert client("bob").get("/api/queue", params={"task": "demo-shapes", "reviewer": "alice"}).status_code == 403
    forged = client("alice").post(url, json={"decision": "reject"}, headers={"Origin": "http://evil.example"})
    assert forged.status_code == 403 and "Requests from another site are refused" in forged.json()["detail"]
    assert "evil.example" not in forged.text and forged.headers["x-content-type-options"] == "nosniff"
    assert query(resources["store"], "SELECT count(*) AS n FROM annotations")["n"][0] == before  # nothing written
    same_site = client("alice").post(url, json={"decision": "accept"}, headers={"Origin": "http://testserver"})
    assert same_site.status_code == 200

    home = Path(resources["store"].path).parent
    env = {"AUTOANNOTATE_TASKS": str(home / "demo-shapes.yaml")}
    bobs = pending(resources, 1, "bob")[0]
    cli = autoannotate("review", "accept", bobs["annotation_id"], "--reviewer", "alice", home=home, env=env,
                       check=False)
    assert cli.returncode == 1 and "This image is in bob's queue" in cli.stderr
    outsider = autoannotate("review", "accept", bobs["annotation_id"], "--reviewer", "mallory", home=home, env=env,
                            check=False)
    # Someone outside the task is told what an unknown id is told: nothing says the annotation exists.
    assert outsider.returncode == 1 and outsider.stderr == (f"autoannotate: No annotation has the id "
                                                            f"{bobs['annotation_id']!r}.\n")

    takeover = write_task_file(tmp_path, allow_takeover=True, thresholds={"upper": 0.99, "lower": 0.3})
    taken = autoannotate("review", "accept", bobs["annotation_id"], "--reviewer", "alice", home=home,
                         env={"AUTOANNOTATE_TASKS": str(takeover)})
    assert "SUCCESS" in taken.stdout
    assert events_of(resources, bobs["annotation_id"])[-1] == ("SUCCESS", "review", "alice")


def test_undo_takes_back_the_last_decision(client: Callable, resources: dict) -> None:
    accepted, corrected = pending(resources, 2, "carol")
    carol = client("carol")
    carol.post(f"/api/annotations/{accepted['annotation_id']}/decision", json={"decision": "accept"})
    undone = carol.post("/api/undo", json={"annotation_ids": [accepted["annotation_id"]]})
    assert undone.json()["undone"] == [{"annotation_id": accepted["annotation_id"], "status": "AWAITING_REVIEW"}]
    assert [e[0] for e in events_of(resources, accepted["annotation_id"])] == [
        "AWAITING_REVIEW", "SUCCESS", "AWAITING_REVIEW"]

    new_id = carol.post(f"/api/annotations/{corrected['annotation_id']}/correct",
                        json={"concept": "box"}).json()["annotation_id"]
    carol.post("/api/undo", json={"annotation_ids": [corrected["annotation_id"], new_id]})
    state = query(resources["store"], f"SELECT annotation_id, status FROM ({CURRENT_ANNOTATIONS}) "
                                      "WHERE annotation_id IN (?, ?)", [corrected["annotation_id"], new_id])
    assert dict(zip(state["annotation_id"], state["status"])) == {corrected["annotation_id"]: "AWAITING_REVIEW",
                                                                  new_id: "RETIRED"}


@pytest.mark.skipif(not BROWSER_AVAILABLE, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("viewport", [(1280, 720), (1920, 1080)])
def test_review_page_on_real_screens(resources: dict, output_dir: Path, viewport: tuple[int, int]) -> None:
    """The image fills the stage beside the panels, keys act on undecided boxes and move on, and the empty,
    filtered-out and finished queues each say so in a sentence."""
    from playwright.sync_api import sync_playwright

    store = resources["store"]
    reviewer = "bob"
    mine = query(store, f"""
        SELECT r.input_id, count(*) FILTER (WHERE c.status = 'AWAITING_REVIEW') AS pending
        FROM review_assignments r JOIN ({CURRENT_ANNOTATIONS}) c USING (task, input_id)
        WHERE r.reviewer = ? GROUP BY 1""", [reviewer])
    assert len(mine) >= 2 and (mine["pending"] > 0).all()
    with review_server(resources) as (port, app), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, bypass_csp=BYPASS_CSP)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            sign_in(page, port, app.state.desk.invite(reviewer))
            page.wait_for_function("document.querySelector('#canvas').dataset.drawn")

            def drawn() -> list[float]:
                return [float(v) for v in page.locator("#canvas").get_attribute("data-drawn").split(",")]

            stage, side = page.locator("#stage").bounding_box(), page.locator("#side").bounding_box()
            left, top, width, height = drawn()
            assert stage["x"] + stage["width"] <= side["x"] + 1  # the stage does not run under the side panel
            assert stage["x"] + stage["width"] <= viewport[0] and stage["y"] + stage["height"] <= viewport[1]
            assert max(width / stage["width"], height / stage["height"]) == pytest.approx(1.0, abs=0.01)
            assert width * height >= 0.4 * stage["width"] * stage["height"]  # at 800x600 it was ~25 % at 1080p
            assert left >= -0.5 and top >= -0.5 and left + width <= stage["width"] + 0.5
            page.screenshot(path=str(output_dir / f"review-{viewport[0]}x{viewport[1]}.png"))

            files = set(query(store, "SELECT regexp_extract(uri, '[^/]*$') AS f FROM inputs WHERE input_id IN "
                                     "(SELECT unnest(?))", [list(mine["input_id"])])["f"])
            shown = page.locator("#queue-items .item").all_inner_texts()
            assert {text.splitlines()[0].strip() for text in shown} == files
            assert page.locator("#queue-head").inner_text() == f"1 / {len(mine)} images"

            page.mouse.move(stage["x"] + stage["width"] / 2, stage["y"] + stage["height"] / 2)
            page.mouse.wheel(0, -300)  # zoom in at the cursor, then back to fit
            page.wait_for_function(f"Number(document.querySelector('#canvas').dataset.drawn.split(',')[2]) > {width}")
            page.keyboard.press("f")
            assert drawn()[2] == pytest.approx(width, abs=0.5)

            first = page.locator("#canvas").get_attribute("data-input")
            awaiting = int(mine.set_index("input_id")["pending"][first])
            for _ in range(awaiting):  # `a` accepts the selected undecided box; the next one is selected
                selected = page.locator("#boxes .box.selected")
                assert "AWAITING_REVIEW" in selected.inner_text()
                box_id = selected.get_attribute("data-id")
                page.keyboard.press("a")
                wait_for_row(page, box_id, "SUCCESS")
            page.keyboard.press("r")  # nothing undecided is selected: nothing is rejected
            page.wait_for_function("document.querySelector('#message').innerText.includes('No box awaiting review')")
            assert query(store, f"SELECT count(*) AS n FROM ({CURRENT_ANNOTATIONS}) WHERE input_id = ? AND status = "
                                "'REJECTED' AND annotator = ?", [first, reviewer])["n"][0] == 0
            page.keyboard.press("u")  # undo the last accept
            wait_for_row(page, box_id, "AWAITING_REVIEW")
            page.keyboard.press("a")
            wait_for_row(page, box_id, "SUCCESS")
            page.keyboard.press("n")  # on to the next image that still has boxes to review
            page.wait_for_function(f"document.querySelector('#canvas').dataset.input !== '{first}'")
            assert page.locator("#canvas").get_attribute("data-input") in set(mine["input_id"]) - {first}

            page.fill("#f-labeler", "nobody")
            page.locator("#f-labeler").dispatch_event("change")
            page.wait_for_function("document.querySelector('#banner').innerText.startsWith('No images match')")
            page.fill("#f-labeler", "")
            page.locator("#f-labeler").dispatch_event("change")
            page.wait_for_function("document.querySelectorAll('#queue-items .item').length > 1")
            page.locator("#f-labeler").blur()  # keys go to the page again, not to the filter
            to_review = "[...document.querySelectorAll('#queue-items .item')].filter(i => i.innerText.includes(" \
                        "'to review')).length"
            for _ in range(2 * len(mine)):  # `d` finishes each image and moves on, until the queue is done
                if page.locator("#banner").inner_text().startswith("All done"):
                    break
                left, shown = page.evaluate(to_review), page.locator("#canvas").get_attribute("data-input")
                page.keyboard.press("d")  # then wait until it finished the image or moved on
                page.wait_for_function(f"([n, shown]) => document.querySelector('#banner').innerText.startsWith("
                                       f"'All done') || {to_review} < n || "
                                       "document.querySelector('#canvas').dataset.input !== shown",
                                       arg=[left, shown], timeout=30_000)
            assert page.locator("#banner").inner_text() == "All done: every image in your queue of demo-shapes is " \
                                                           "reviewed."
            assert page.locator("#progress").inner_text() == f"Your queue: {len(mine)} / {len(mine)} images reviewed"
            assert errors == [] and page.locator("#message").inner_text() == ""
        finally:
            browser.close()
    assert query(store, f"SELECT count(*) AS n FROM ({CURRENT_ANNOTATIONS}) c JOIN review_assignments r "
                        "USING (task, input_id) WHERE r.reviewer = ? AND c.status = 'AWAITING_REVIEW'",
                 [reviewer])["n"][0] == 0


def test_the_page_without_a_link_says_how_to_sign_in(resources: dict) -> None:
    page = TestClient(create_app(resources["store"], resources["images"], resources["tasks"].load())).get("/")
    assert page.status_code == 401
    assert '<p id="signin">Open your personal review link to sign in; `autoannotate review invite NAME` prints it.' \
           in page.text


def test_an_image_is_served_decoded_under_the_pixel_budget(resources: dict) -> None:
    """A stored image larger than what the server decodes (AUTOANNOTATE_MAX_PIXELS, lowered after ingestion, or an
    image an earlier release stored) is served from a reduced decode (a JPEG at 1/2 scale here, boxes being shares
    of it), or refused in one sentence when no reduced decode fits; the crop likewise; never decoded whole."""
    import io

    from PIL import Image

    (item,) = pending(resources, 1, "alice")
    width, height = (int(v) for v in query(resources["store"], "SELECT width, height FROM inputs WHERE input_id = ?",
                                           [item["input_id"]]).iloc[0])
    budget = width * height // 3  # a full decode is 3x over: half scale (1/4 of the pixels) fits

    def served(max_pixels: int, path: str) -> tuple[int, bytes]:
        app = create_app(resources["store"], resources["images"], resources["tasks"].load(), max_pixels=max_pixels)
        client = TestClient(app, headers={"Authorization": f"Bearer {app.state.desk.invite('alice')}"})
        response = client.get(path)
        return response.status_code, response.content

    status, body = served(budget, f"/images/{item['input_id']}")
    assert status == 200
    assert Image.open(io.BytesIO(body)).size == ((width + 1) // 2, (height + 1) // 2)
    status, body = served(100, f"/images/{item['input_id']}")  # below even 1/8 scale
    assert (status, json.loads(body)["detail"]) == (422, (
        f"{item['input_id']}: The image is {width} x {height} pixels, more than the 100 this server decodes to show "
        "one (AUTOANNOTATE_MAX_PIXELS)."))
    status, _ = served(100, f"/crops/{item['annotation_id']}")
    assert status == 422
    assert served(width * height, f"/images/{item['input_id']}")[0] == 200  # within the budget: whole, as before
