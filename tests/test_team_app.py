"""The labeling team's web app beyond the review queue: roles (a lead and reviewers), the tasks page, the objects
gallery with bulk actions, and deleting inputs and annotations; through the API, the CLI and Chromium."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import (
    BROWSER_AVAILABLE,
    BYPASS_CSP,
    DAGSTER_URL,
    autoannotate,
    copy_home,
    launch_chromium,
    open_review_page,
    query,
    review_server,
    sign_in,
    write_task_file,
)
from PIL import Image

from apps.demo_scenes import write_demo_images
from apps.review_server import create_app
from core.settings import DEMO_WEIGHTS, Settings
from resources import build_resources
from services.routing import annotate_task

LEAD = "lena"
# yard's concepts: the three the detector finds and nine more, so that the keys for the 11th and 12th are used.
YARD_CONCEPTS = ["ball", "box", "sign", *(f"kind{n:02d}" for n in range(4, 13))]
# Gallery order: most doubtful first, people's boxes last, the id breaking ties.
GALLERY_ORDER = "coalesce(confidence, 2.0), annotation_id"
LIVE_BOXES = "task = 'shapes' AND coalesce(kind, 'box') = 'box' AND status <> 'RETIRED'"


@pytest.fixture(scope="module")
def team_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tasks over 16 demo scenes: `shapes` on every input (reviewers alice and bob, a wide review band) and
    `yard` on the 4 scenes under inbox/yard (reviewer carol)."""
    home = tmp_path_factory.mktemp("team-app-home")
    write_demo_images(home / "inbox", 12, seed=41)
    write_demo_images(home / "inbox" / "yard", 4, seed=42)
    shapes = write_task_file(home, name="shapes", thresholds={"upper": 0.99, "lower": 0.3}, reviewers=["alice", "bob"],
                             priority="high")
    yard = write_task_file(home, name="yard", thresholds={"upper": 0.9, "lower": 0.3}, reviewers=["carol"],
                           inputs={"paths": ["yard/*"]}, priority="low", concepts=YARD_CONCEPTS,
                           classifier={"backbone": str(DEMO_WEIGHTS), "concepts": ["kind11", "kind12"]})
    autoannotate("run", "--task-file", str(shapes), "--task-file", str(yard), home=home)
    return home


@pytest.fixture
def resources(team_home: Path, tmp_path: Path) -> dict:
    home = copy_home(team_home, tmp_path / "home", "shapes.yaml", "yard.yaml")
    return build_resources(Settings(home=home, task_files=(str(home / "shapes.yaml"), str(home / "yard.yaml"))))


@pytest.fixture
def client(resources: dict) -> Callable[..., TestClient]:
    """`client(name, role)`: the API as `name`, signed in with the token `review invite` gives."""
    app = create_app(resources["store"], resources["images"], resources["tasks"].load(), resources["versions"],
                     DAGSTER_URL, resources["concept_models"])

    def signed_in_as(name: str, role: str = "reviewer") -> TestClient:
        from core.annotations import Role

        return TestClient(app, headers={"Authorization": f"Bearer {app.state.desk.invite(name, Role(role))}"})

    signed_in_as.app = app
    return signed_in_as


def rows(resources: dict, sql: str, params: list | dict | None = None):
    return query(resources["store"], sql, params)


def home_of(resources: dict) -> Path:
    return Path(resources["store"].path).parent


def test_a_lead_sees_every_task_and_a_reviewer_only_their_own(resources: dict, client: Callable) -> None:
    lead, carol = client(LEAD, "lead"), client("carol")
    # A lead lands on the tasks page; a reviewer on their review page.
    assert lead.get("/", follow_redirects=False).headers["location"] == "/tasks"
    assert carol.get("/", follow_redirects=False).status_code == 200
    assert [t["name"] for t in lead.get("/api/tasks").json()] == ["shapes", "yard"]
    assert [t["name"] for t in carol.get("/api/tasks").json()] == ["yard"]

    overview = {row["name"]: row for row in lead.get("/api/overview").json()}
    assert list(overview) == ["shapes", "yard"]  # high priority first
    for name, inputs in (("shapes", 16), ("yard", 4)):
        row = overview[name]
        processed = int(rows(resources, "SELECT count(*) AS n FROM task_inputs WHERE task = ?", [name])["n"][0])
        assigned = int(rows(resources, "SELECT count(*) AS n FROM review_assignments WHERE task = ?", [name])["n"][0])
        assert (row["inputs"], row["processed"], row["labeled_pct"]) == (inputs, processed, 100.0)
        assert (row["assigned"], row["reviewed"], row["reviewed_pct"]) == (assigned, 0, 0.0)
        assert assigned > 0
        live = rows(resources, "SELECT status, count(*) AS n FROM annotation_state WHERE task = ? AND status <> "
                               "'RETIRED' GROUP BY 1", [name])
        assert row["annotations"] == dict(zip(live["status"], live["n"].astype(int), strict=True))
    assert overview["yard"]["dataset"] == "yard/*" and overview["shapes"]["dataset"] == "all inputs"
    assert overview["shapes"]["labelers"] == ["autoannotate-demo-bot", "alice", "bob"]

    # Every lead route refuses a reviewer with a sentence, and the lead's pages show one.
    annotation = rows(resources, "SELECT annotation_id FROM annotation_state WHERE task = 'yard' LIMIT 1")
    annotation_id = annotation["annotation_id"][0]
    input_id = rows(resources, "SELECT input_id FROM task_inputs WHERE task = 'yard' LIMIT 1")["input_id"][0]
    # A reviewer sees crops of her own task's objects (a track's frame strip), no other task's.
    assert carol.get(f"/crops/{annotation_id}").status_code == 200
    other = rows(resources, "SELECT annotation_id FROM annotation_state WHERE task = 'shapes' AND input_id NOT IN "
                            "(SELECT input_id FROM task_inputs WHERE task = 'yard') LIMIT 1")["annotation_id"][0]
    assert carol.get(f"/crops/{other}").status_code == 404
    for refused in (carol.get("/api/overview"), carol.get("/api/objects", params={"task": "yard"}),
                    carol.post("/api/objects/bulk", json={"action": "reject", "task": "yard",
                                                          "annotation_ids": [annotation_id]}),
                    carol.post(f"/api/inputs/{input_id}/delete", json={}),
                    carol.post("/api/tasks/yard/versions", json={"name": "v1"})):
        assert refused.status_code == 403
        assert refused.json()["detail"].startswith("carol is a reviewer: only a lead")
    for page in ("/tasks", "/objects"):
        answer = carol.get(page)
        assert answer.status_code == 403 and "this page is for leads" in answer.text
    assert rows(resources, "SELECT count(*) AS n FROM dataset_versions WHERE frozen")["n"][0] == 0

    # The lead creates a version from the tasks page, as `version create --name v1 --task yard` does.
    built = lead.post("/api/tasks/yard/versions", json={"name": "v1"}).json()
    stored = rows(resources, "SELECT * FROM dataset_versions WHERE version_key = 'yard@v1'")
    assert list(built) == ["yard@v1"] and built["yard@v1"]["manifest_sha256"] == stored["manifest_sha256"][0]
    again = lead.post("/api/tasks/yard/versions", json={"name": "v1"})
    assert again.status_code == 409 and "already exists and is frozen" in again.json()["detail"]
    assert lead.get("/api/overview").json()[1]["versions"] == ["yard@v1"]


def test_roles_are_given_by_invite(resources: dict) -> None:
    home = home_of(resources)
    invited = json.loads(autoannotate("review", "invite", LEAD, "--role", "lead", "--json", home=home).stdout)
    assert invited["role"] == "lead" and "?token=" in invited["url"]
    assert rows(resources, "SELECT reviewer, role FROM reviewer_tokens").to_dict("records") == [
        {"reviewer": LEAD, "role": "lead"}]
    refused = autoannotate("review", "invite", "nobody", home=home, check=False)
    assert refused.returncode == 1 and "'nobody' is not a reviewer of any configured task" in refused.stderr


def test_the_objects_gallery_pages_by_key_and_combines_its_filters(resources: dict, client: Callable) -> None:
    lead = client(LEAD, "lead")
    expected = rows(resources, f"SELECT annotation_id FROM annotation_state WHERE {LIVE_BOXES} "
                               f"ORDER BY {GALLERY_ORDER}")["annotation_id"].tolist()
    assert len(expected) > 20
    seen, after, pages = [], None, 0
    while True:
        page = lead.get("/api/objects", params={"task": "shapes", "limit": 7, **({"after": after} if after else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["total"] == len(expected)
        seen += [item["annotation_id"] for item in body["items"]]
        pages += 1
        after = body["next"]
        if after is None:
            break
    assert seen == expected and pages == -(-len(expected) // 7) + (len(expected) % 7 == 0)

    def total(**params) -> int:
        answer = lead.get("/api/objects", params={"task": "shapes", **params})
        assert answer.status_code == 200, answer.text
        return answer.json()["total"]

    def count(where: str) -> int:
        sql = f"SELECT count(*) AS n FROM annotation_state WHERE {LIVE_BOXES} AND {where}"
        return int(rows(resources, sql)["n"][0])

    both = count("concept = 'ball' AND status = 'AWAITING_REVIEW'")
    either = count("(concept = 'ball' OR status = 'SUCCESS')")
    assert 0 < both < either
    assert total(concept="ball", status="AWAITING_REVIEW") == both
    assert total(concept="ball", status="SUCCESS", combine="or") == either
    assert total(concept=["ball", "sign"]) == count("concept IN ('ball', 'sign')")
    assert total(labeler="autoannotate-demo-bot") == count("annotator = 'autoannotate-demo-bot'")
    assert total(min_confidence=0.5, max_confidence=0.9) == count("confidence BETWEEN 0.5 AND 0.9")
    refused = lead.get("/api/objects", params={"task": "shapes", "after": "soon|x"})
    assert refused.status_code == 422 and "'soon|x' is not a page key" in refused.json()["detail"]

    # A tile is the object cut from the stored image, cached: never the whole image.
    first = lead.get("/api/objects", params={"task": "shapes", "limit": 1}).json()["items"][0]
    tile = lead.get(f"/crops/{first['annotation_id']}")
    assert tile.status_code == 200 and tile.headers["content-type"] == "image/jpeg"
    width, height = Image.open(io.BytesIO(tile.content)).size
    assert max(width, height) <= 160
    cached = list((home_of(resources) / "images" / "crops").rglob("*.jpg"))
    assert len(cached) == 1 and cached[0].read_bytes() == tile.content
    assert lead.get(f"/crops/{first['annotation_id']}").content == tile.content


def test_bulk_actions_write_one_event_per_annotation(resources: dict, client: Callable) -> None:
    lead = client(LEAD, "lead")
    waiting = rows(resources, f"SELECT annotation_id FROM annotation_state WHERE {LIVE_BOXES} AND "
                              f"status = 'AWAITING_REVIEW' ORDER BY {GALLERY_ORDER}")["annotation_id"].tolist()
    events = int(rows(resources, "SELECT count(*) AS n FROM annotations")["n"][0])

    def act(**body) -> dict:
        answer = lead.post("/api/objects/bulk", json={"task": "shapes", **body})
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert act(action="accept", annotation_ids=waiting[:3])["written"] == 3
    state = rows(resources, "SELECT status, annotator, source FROM annotation_state WHERE annotation_id IN "
                            "(SELECT unnest(?))", [waiting[:3]])
    assert set(state.itertuples(index=False, name=None)) == {("SUCCESS", LEAD, "review")}
    assert act(action="accept", annotation_ids=waiting[:3])["written"] == 0  # a double submit writes nothing

    relabelled = rows(resources, "SELECT annotation_id, concept FROM annotation_state WHERE annotation_id = ?",
                      [waiting[3]]).iloc[0]
    target = "box" if relabelled["concept"] != "box" else "ball"
    assert act(action="relabel", annotation_ids=[waiting[3]], concept=target)["written"] == 2  # retired + new
    new = rows(resources, "SELECT concept, original_concept, status FROM annotation_state WHERE status = 'SUCCESS' "
                          "AND annotator = ? AND original_concept IS NOT NULL", [LEAD])
    assert new.to_dict("records") == [{"concept": target, "original_concept": relabelled["concept"],
                                       "status": "SUCCESS"}]

    # "Select all N matching": every sign still live is removed, one RETIRED event each.
    signs = int(rows(resources, f"SELECT count(*) AS n FROM annotation_state WHERE {LIVE_BOXES} AND "
                                "concept = 'sign'")["n"][0])
    assert signs > 0
    removed = act(action="remove", matching={"task": "shapes", "concept": ["sign"]})
    assert removed["written"] == removed["annotations"] == signs
    assert lead.get("/api/objects", params={"task": "shapes", "concept": "sign"}).json()["total"] == 0
    assert int(rows(resources, "SELECT count(*) AS n FROM annotations")["n"][0]) == events + 3 + 2 + signs
    unknown = lead.post("/api/objects/bulk", json={"task": "shapes", "action": "relabel", "concept": "cat",
                                                   "annotation_ids": [waiting[4]]})
    assert unknown.status_code == 422 and "'cat' is not a concept of task 'shapes'" in unknown.json()["detail"]

    # "Add concepts" gives the selected objects' images an image-level concept, each image once.
    two = rows(resources, "SELECT any_value(annotation_id) AS a FROM annotation_state WHERE task = 'yard' AND "
                          "coalesce(kind, 'box') = 'box' AND status <> 'RETIRED' GROUP BY input_id ORDER BY 1 LIMIT 2")
    both = [*two["a"], two["a"][0]]
    added = lead.post("/api/objects/bulk", json={"task": "yard", "action": "add_concept", "concept": "kind12",
                                                 "annotation_ids": both}).json()
    assert (added["images"], added["already"], added["written"]) == (2, 0, 2)
    concepts = rows(resources, "SELECT concept, status, annotator, kind FROM annotation_state WHERE task = 'yard' AND "
                               "kind = 'concept'")
    assert concepts.values.tolist() == [["kind12", "SUCCESS", LEAD, "concept"]] * 2
    again = lead.post("/api/objects/bulk", json={"task": "yard", "action": "add_concept", "concept": "kind12",
                                                 "annotation_ids": both}).json()
    assert (again["images"], again["already"], again["written"]) == (2, 2, 0)
    refused = lead.post("/api/objects/bulk", json={"task": "yard", "action": "add_concept", "concept": "ball",
                                                   "annotation_ids": both})
    assert refused.status_code == 422 and "'ball' is not an image-level concept of task 'yard'" in refused.text

    # A reviewer deletes an annotation on an image of their own queue; not on another task's.
    mine = rows(resources, "SELECT c.annotation_id, r.reviewer FROM annotation_state c JOIN review_assignments r "
                           "USING (task, input_id) WHERE c.task = 'shapes' AND c.status = 'AWAITING_REVIEW' "
                           "LIMIT 1").iloc[0]
    reviewer = client(mine["reviewer"])
    assert reviewer.post(f"/api/annotations/{mine['annotation_id']}/remove").json()["written"] == 1
    assert reviewer.post(f"/api/annotations/{mine['annotation_id']}/remove").json()["written"] == 0
    other = rows(resources, "SELECT annotation_id FROM annotation_state WHERE task = 'yard' AND status <> "
                            "'RETIRED' LIMIT 1")["annotation_id"][0]
    # Another task's annotation is answered as one that does not exist.
    refused = reviewer.post(f"/api/annotations/{other}/remove")
    assert (refused.status_code, refused.json()["detail"]) == (404, f"No annotation has the id {other!r}.")


def test_deleting_an_input_takes_it_out_of_later_versions_and_earlier_ones_still_reproduce(resources: dict) -> None:
    home = home_of(resources)
    # An image of both tasks (under yard/) that holds accepted objects and an image in a queue.
    target = rows(resources, """
        SELECT s.input_id, regexp_extract(s.uri, '[^/]*$') AS file FROM input_sources s
        WHERE s.uri LIKE '%/yard/%' AND s.input_id IN (SELECT input_id FROM review_assignments)
          AND s.input_id IN (SELECT input_id FROM annotation_state WHERE status = 'SUCCESS')
        ORDER BY 1 LIMIT 1""").iloc[0]
    input_id, file = target["input_id"], target["file"]
    autoannotate("version", "create", "--name", "before", "--task", "yard", home=home)
    live = rows(resources, "SELECT task, count(*) AS n FROM annotation_state WHERE input_id = ? AND status <> "
                           "'RETIRED' GROUP BY 1 ORDER BY 1", [input_id])
    queued = int(rows(resources, "SELECT count(*) AS n FROM review_assignments WHERE input_id = ?", [input_id])["n"][0])

    deleted = json.loads(autoannotate("input", "delete", file, "--by", LEAD, "--json", home=home).stdout)
    assert deleted["deleted"] == [input_id] and deleted["queue_places"] == queued > 0
    assert deleted["annotations_retired"] == dict(zip(live["task"], live["n"].astype(int), strict=True))
    assert rows(resources, "SELECT count(*) AS n FROM annotation_state WHERE input_id = ? AND status <> 'RETIRED'",
                [input_id])["n"][0] == 0
    assert rows(resources, "SELECT count(*) AS n FROM review_assignments WHERE input_id = ?", [input_id])["n"][0] == 0
    said = autoannotate("input", "delete", input_id, home=home).stdout
    assert said.startswith("deleted 0 input(s); 1 already deleted;")

    # A version built now leaves it out; the frozen one from before still holds it and rebuilds byte for byte.
    autoannotate("version", "create", "--name", "after", "--task", "yard", "--task", "shapes", home=home)
    versions = rows(resources, "SELECT version_key, manifest_path, manifest_sha256, cutoff FROM dataset_versions "
                               "WHERE frozen ORDER BY 1").set_index("version_key")
    assert input_id in Path(versions.loc["yard@before", "manifest_path"]).read_text()
    for key in ("yard@after", "shapes@after"):
        assert input_id not in Path(versions.loc[key, "manifest_path"]).read_text()
    rebuilt = resources["store"].read(lambda s: s.versions.manifest("yard", versions.loc["yard@before", "cutoff"]))
    assert rebuilt.sha256 == versions.loc["yard@before", "manifest_sha256"]

    # Routing its batch again brings none of it back.
    routed = rows(resources, "SELECT batch, model_id FROM task_inputs WHERE task = 'shapes' AND input_id = ?",
                  [input_id]).iloc[0]
    task = next(t for t in resources["tasks"].load() if t.name == "shapes")
    resources["store"].write(lambda s: annotate_task(s, task, routed["batch"], routed["model_id"],
                                                     versions.loc["shapes@after", "cutoff"]))
    assert rows(resources, "SELECT count(*) AS n FROM annotation_state WHERE input_id = ? AND status <> 'RETIRED'",
                [input_id])["n"][0] == 0

    # --purge keeps what a frozen version holds, and says which (an image no frozen version holds goes: below).
    stored = resources["images"].path_for(input_id)
    kept = autoannotate("input", "delete", input_id, "--purge", home=home).stdout
    assert kept.rstrip().endswith(f"Not purged: {input_id} is held by the frozen version(s) yard@before, which "
                                  "must still export it.")
    assert stored.exists()
    loose = rows(resources, "SELECT input_id FROM input_sources WHERE uri NOT LIKE '%/yard/%' AND input_id IN "
                            "(SELECT input_id FROM annotation_state WHERE task = 'shapes' AND status = 'SUCCESS') "
                            "ORDER BY 1 LIMIT 1")
    loose_id = loose["input_id"][0]
    purged = json.loads(autoannotate("input", "delete", loose_id, "--purge", "--json", home=home).stdout)
    assert purged["deleted"] == [loose_id] and purged["kept"] == {loose_id: ["shapes@after"]}
    assert purged["purged"] == [] and resources["images"].path_for(loose_id).exists()

    unknown = autoannotate("input", "delete", "no-such.jpg", home=home, check=False)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == ("autoannotate: No input is named 'no-such.jpg': give an input id, or the path "
                                      "or file name an image was ingested from (`autoannotate status` lists the "
                                      "inputs).")


def test_purge_removes_the_bytes_embeddings_and_crops_of_an_image_no_frozen_version_holds(
        resources: dict, client: Callable) -> None:
    lead = client(LEAD, "lead")
    input_id, annotation_id = rows(resources, "SELECT input_id, annotation_id FROM annotation_state WHERE task = "
                                              "'yard' AND status <> 'RETIRED' ORDER BY 1, 2 LIMIT 1").iloc[0]
    assert lead.get(f"/crops/{annotation_id}").status_code == 200
    stored = resources["images"].path_for(input_id)
    crops = list((home_of(resources) / "images" / "crops").rglob("*.jpg"))
    assert stored.exists() and len(crops) == 1
    answer = lead.post(f"/api/inputs/{input_id}/delete", json={"purge": True})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["purged"] == [input_id] and result["removed"]["image_files"] == 1
    assert result["removed"]["crop_files"] == 1
    assert result["sentence"].startswith("deleted 1 input(s); annotations retired (annotations table, one event "
                                         "each) shapes: ")
    assert not stored.exists() and not list((home_of(resources) / "images" / "crops").rglob("*.jpg"))
    assert rows(resources, "SELECT purged_at IS NOT NULL AS p FROM deleted_inputs WHERE input_id = ?",
                [input_id])["p"][0]
    assert lead.get(f"/images/{input_id}").status_code == 404
    overview = {row["name"]: row for row in lead.get("/api/overview").json()}
    assert overview["yard"]["inputs"] == 3 and overview["shapes"]["inputs"] == 15


@pytest.mark.skipif(not BROWSER_AVAILABLE, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("viewport", [(1280, 720), (1920, 1080)])
def test_the_lead_s_tasks_page_and_objects_gallery_in_chromium(resources: dict, viewport: tuple[int, int]) -> None:
    from playwright.sync_api import expect, sync_playwright

    with review_server(resources) as (port, app), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]}, bypass_csp=BYPASS_CSP)
            sign_in(page, port, app.state.desk.invite(LEAD, 'lead'))
            assert page.url.endswith("/tasks")
            shapes = page.locator('tr[data-task="shapes"]')
            assigned = int(rows(resources, "SELECT count(*) AS n FROM review_assignments WHERE task = 'shapes'")
                           ["n"][0])
            expect(shapes.locator(".labeling")).to_contain_text("16 / 16 inputs processed")
            expect(shapes.locator(".reviewing")).to_contain_text(f"0 / {assigned} images reviewed")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            links = shapes.locator("a")
            assert [links.nth(i).get_attribute("href") for i in range(links.count())] == [
                "/review?task=shapes", "/objects?task=shapes", f"{DAGSTER_URL}/assets/annotations"]

            # Live: a reviewer finishes an image; the row's count changes without a reload.
            image = rows(resources, "SELECT r.input_id, r.reviewer FROM review_assignments r WHERE task = 'shapes' "
                                    "ORDER BY 1 LIMIT 1").iloc[0]
            desk = app.state.desk
            for item in desk.undecided("shapes", image["reviewer"]):
                if item["input_id"] == image["input_id"]:
                    desk.decide(item["annotation_id"], "accept", image["reviewer"])
            expect(shapes.locator(".reviewing")).to_contain_text(f"1 / {assigned} images reviewed", timeout=10_000)

            shapes.locator(".version-name").fill("sprint-1")
            shapes.locator(".create-version").click()
            expect(page.locator("#notice")).to_contain_text("Created shapes@sprint-1:")
            expect(shapes.locator(".versions")).to_contain_text("shapes@sprint-1")

            shapes.locator(".copy-id").click()
            expect(page.locator("#notice")).to_contain_text("task id shapes")

            # The gallery: crops, a click and a shift-click select a range, and a bulk reject writes one event each.
            page.goto(f"http://127.0.0.1:{port}/objects?task=shapes", wait_until="networkidle")
            total = int(rows(resources, f"SELECT count(*) AS n FROM annotation_state WHERE {LIVE_BOXES}")["n"][0])
            expect(page.locator("#count")).to_have_text(f"{total} matching · {min(total, 60)} shown")
            tiles = page.locator("#grid .tile")
            page.wait_for_function("[...document.querySelectorAll('.tile img')].slice(0, 5)"
                                   ".every((i) => i.complete && i.naturalWidth > 0)")
            assert page.evaluate("Math.max(...[...document.querySelectorAll('.tile img')].slice(0, 5)"
                                 ".map((i) => Math.max(i.naturalWidth, i.naturalHeight)))") <= 160
            tiles.nth(0).click()
            tiles.nth(4).click(modifiers=["Shift"])
            expect(page.locator("#selected")).to_have_text("5 selected")
            chosen = [tiles.nth(i).get_attribute("data-annotation") for i in range(5)]
            page.locator("#reject").click()
            expect(page.locator("#notice")).to_contain_text("reject: ")
            state = rows(resources, "SELECT status, annotator FROM annotation_state WHERE annotation_id IN "
                                    "(SELECT unnest(?))", [chosen])
            assert set(state.itertuples(index=False, name=None)) == {("REJECTED", LEAD)}
            # "More like this" on a tile: the nearest objects on other images, with their similarity; the
            # selection stays as it was.
            tiles.nth(6).locator(".more-like").click()
            expect(page.locator("#similar-head")).to_contain_text("12 objects most like", timeout=60_000)
            expect(page.locator("#similar-grid .tile")).to_have_count(12)
            expect(page.locator("#selected")).to_have_text("0 selected")
            page.locator("#select-all").click()
            expect(page.locator("#selected")).to_have_text(f"{total} selected")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

            # The lead's delete button: the selected object's image leaves every task (the dialog is accepted).
            page.on("dialog", lambda dialog: dialog.accept())
            page.locator("#clear").click()
            victim = tiles.nth(0).get_attribute("data-annotation")
            victim_input = rows(resources, "SELECT input_id FROM annotation_state WHERE annotation_id = ?",
                                [victim])["input_id"][0]
            tiles.nth(0).click()
            page.locator("#delete-images").click()
            expect(page.locator("#notice")).to_contain_text("deleted 1 input(s);")
            assert rows(resources, "SELECT deleted_by FROM deleted_inputs WHERE input_id = ?",
                        [victim_input])["deleted_by"].tolist() == [LEAD]
            assert rows(resources, "SELECT count(*) AS n FROM annotation_state WHERE input_id = ? AND status <> "
                                   "'RETIRED'", [victim_input])["n"][0] == 0
        finally:
            browser.close()


def test_more_like_this_ranks_the_task_s_objects_on_other_images_by_their_crops(resources: dict,
                                                                                client: Callable) -> None:
    lead = client(LEAD, "lead")
    objects = rows(resources, f"SELECT annotation_id, input_id, concept FROM annotation_state WHERE {LIVE_BOXES} "
                              f"ORDER BY {GALLERY_ORDER}")
    probe = objects.iloc[0]
    first = lead.get(f"/api/objects/{probe['annotation_id']}/similar", params={"task": "shapes", "limit": 10})
    assert first.status_code == 200, first.text
    found = first.json()
    # Every live object of the task embedded once, on the first request; none again on the next.
    assert found["embedded_now"] == len(objects)
    stored = rows(resources, "SELECT count(*) AS n, count(DISTINCT model_id) AS models FROM object_embeddings")
    assert (stored["n"][0], stored["models"][0]) == (len(objects), 1)
    again = lead.get(f"/api/objects/{probe['annotation_id']}/similar", params={"task": "shapes", "limit": 10}).json()
    assert again["embedded_now"] == 0 and again["similar"] == found["similar"]
    similar = found["similar"]
    assert len(similar) == 10 and probe["input_id"] not in {o["input_id"] for o in similar}
    similarities = [o["similarity"] for o in similar]
    assert similarities == sorted(similarities, reverse=True) and all(-1.0 <= s <= 1.0 for s in similarities)

    # On the demo scenes, an object's 5 nearest objects share its concept far more often than chance.
    def shared(row) -> float:
        near = lead.get(f"/api/objects/{row['annotation_id']}/similar", params={"task": "shapes", "limit": 5}).json()
        return sum(o["concept"] == row["concept"] for o in near["similar"]) / 5

    rate = sum(shared(row) for row in objects.to_dict("records")) / len(objects)
    chance = float((objects["concept"].value_counts(normalize=True) ** 2).sum())
    assert rate > chance + 0.2, (rate, chance)
    missing = lead.get("/api/objects/" + "0" * 32 + "/similar", params={"task": "shapes"})
    assert missing.status_code == 404 and missing.json()["detail"] == (
        "No annotation has the id '00000000000000000000000000000000'.")


@pytest.mark.skipif(not BROWSER_AVAILABLE, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.parametrize("viewport", [(1280, 720), (1920, 1080)])
def test_the_review_page_draws_and_edits_polygons_hides_objects_and_has_keys_for_twenty_concepts(
        resources: dict, viewport: tuple[int, int], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    image = rows(resources, "SELECT r.input_id FROM review_assignments r WHERE task = 'yard' AND input_id IN (SELECT "
                            "input_id FROM annotation_state WHERE task = 'yard' AND status = 'AWAITING_REVIEW') "
                            "ORDER BY 1 LIMIT 1")["input_id"][0]

    def state(where: str, params: list | None = None):
        return rows(resources, f"SELECT * FROM annotation_state WHERE task = 'yard' AND input_id = ? AND {where} "
                               "ORDER BY event_at, seq", [image, *(params or [])])

    with review_server(resources) as (port, app), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = open_review_page(browser, port, app, "carol", image, viewport)
            page.on("dialog", lambda dialog: dialog.accept())
            expect(page.locator("#hotkeys")).to_contain_text("shift+1 kind11 · shift+2 kind12")
            canvas = page.locator("#canvas").bounding_box()

            def at(x: float, y: float) -> tuple[float, float]:
                ox, oy, w, h = (float(v) for v in page.locator("#canvas").get_attribute("data-drawn").split(","))
                return canvas["x"] + ox + x * w, canvas["y"] + oy + y * h

            # Shift+1 relabels the selected box to the task's 11th concept.
            waiting = state("status = 'AWAITING_REVIEW'")
            page.locator(f'#boxes .box[data-id="{waiting["annotation_id"][0]}"]').click()
            page.keyboard.press("Shift+Digit1")
            page.wait_for_function("[...document.querySelectorAll('#boxes .box')].some((r) => "
                                   "r.textContent.includes('kind11'))")
            relabelled = state("concept = 'kind11'")
            assert relabelled[["status", "annotator", "original_concept"]].values.tolist() == [
                ["SUCCESS", "carol", waiting["concept"][0]]]
            row = page.locator(f'#boxes .box[data-id="{relabelled["annotation_id"][0]}"] .annotators')
            expect(row).to_have_text("by autoannotate-demo-bot, carol (2)")

            # Drawing mode: four clicks, then the first vertex again, close a polygon.
            page.keyboard.press("p")
            corners = [(0.05, 0.05), (0.25, 0.06), (0.24, 0.3), (0.06, 0.28)]
            for x, y in [*corners, corners[0]]:
                page.mouse.click(*at(x, y))
            page.wait_for_function("[...document.querySelectorAll('#boxes .box')].some((r) => "
                                   "r.textContent.includes('polygon'))")
            drawn = state("polygon IS NOT NULL AND status = 'SUCCESS'")
            assert len(drawn) == 1 and drawn["annotator"][0] == "carol" and drawn["source"][0] == "review"
            points = list(drawn["polygon"][0])
            assert len(points) == 8
            assert points == pytest.approx([v for corner in corners for v in corner], abs=0.01)
            assert (drawn["x1"][0], drawn["y1"][0], drawn["x2"][0], drawn["y2"][0]) == pytest.approx(
                (min(points[0::2]), min(points[1::2]), max(points[0::2]), max(points[1::2])))

            def polygon_now() -> list[float]:
                live = state("polygon IS NOT NULL AND status = 'SUCCESS'")
                assert len(live) == 1
                return list(live["polygon"][0])

            def select_polygon() -> None:
                page.locator("#boxes .box", has_text="polygon").click()

            def settled(events: int) -> None:
                """Wait until carol's polygon events number `events` and the page shows the standing outline."""
                deadline = time.monotonic() + 30
                while rows(resources, "SELECT count(*) AS n FROM annotations WHERE task = 'yard' AND polygon IS NOT "
                                      "NULL AND annotator = 'carol'")["n"][0] < events:
                    assert time.monotonic() < deadline, f"fewer than {events} polygon events"
                    time.sleep(0.1)
                standing = state("polygon IS NOT NULL AND status = 'SUCCESS'")["annotation_id"][0]
                expect(page.locator(f'#boxes .box[data-id="{standing}"]')).to_have_count(1)

            # Drag a vertex; double-click an edge to insert one; alt-click a vertex to delete it.
            select_polygon()
            page.mouse.move(*at(0.05, 0.05))
            page.mouse.down()
            page.mouse.move(*at(0.1, 0.12), steps=4)
            page.mouse.up()
            settled(3)
            moved = polygon_now()
            assert moved[:2] == pytest.approx([0.1, 0.12], abs=0.01) and moved[2:] == pytest.approx(points[2:])
            select_polygon()
            page.mouse.dblclick(*at(0.175, 0.09))  # the middle of the edge from (0.1, 0.12) to (0.25, 0.06)
            settled(5)
            inserted = polygon_now()
            assert len(inserted) == 10 and inserted[2:4] == pytest.approx([0.175, 0.09], abs=0.01)
            select_polygon()
            page.keyboard.down("Alt")
            page.mouse.click(*at(0.24, 0.3))
            page.keyboard.up("Alt")
            settled(7)
            assert polygon_now() == pytest.approx([*inserted[:6], *inserted[8:]])
            history = rows(resources, "SELECT count(*) AS n FROM annotations WHERE task = 'yard' AND polygon IS NOT "
                                      "NULL AND annotator = 'carol'")["n"][0]
            assert history == 1 + 3 * 2  # drawn, then three corrections: each retires one and adds one

            # The eye boxes hide a concept or one object; the concept search narrows the pickers.
            page.locator('#concept-eyes input[data-concept="kind11"]').uncheck()
            expect(page.locator(f'#boxes .box[data-id="{relabelled["annotation_id"][0]}"]')).to_have_class(
                re.compile("hidden-one"))
            page.locator("#concept-search").fill("kind1")
            assert page.locator("#new-concept option").all_inner_texts() == ["kind10", "kind11", "kind12"]
            page.locator("#concept-search").fill("")
            other = page.locator("#boxes .box:not(.hidden-one)").first
            other.locator(".eye-one").click()
            expect(page.locator("#boxes .box.hidden-one")).to_have_count(2)

            # Delete (x) asks, then writes one event retiring the annotation.
            page.locator("#boxes .box", has_text="polygon").click()
            page.keyboard.press("x")
            expect(page.locator("#boxes .box", has_text="polygon")).to_have_count(0)
            gone = rows(resources, "SELECT status, annotator FROM annotation_state WHERE task = 'yard' AND polygon IS "
                                   "NOT NULL ORDER BY event_at DESC, seq DESC LIMIT 1")
            assert gone.values.tolist() == [["RETIRED", "carol"]]
            page.keyboard.press("u")  # undo brings it back
            expect(page.locator("#boxes .box", has_text="polygon")).to_have_count(1)
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        finally:
            browser.close()

    # The corrected outline is what yolo-seg exports.
    home = home_of(resources)
    autoannotate("version", "create", "--name", "outlines", "--task", "yard", home=home)
    autoannotate("export", "--version", "yard@outlines", "--format", "yolo-seg", "--out", str(tmp_path / "seg"),
                 home=home)
    polygon = polygon_now()
    autoannotate("export", "--version", "yard@outlines", "--format", "coco", "--out", str(tmp_path / "coco"),
                 home=home)
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())  # the whole version (not one split)
    sizes = {image["id"]: (image["width"], image["height"]) for image in coco["images"]}
    outlines = [[v / sizes[a["image_id"]][i % 2] for i, v in enumerate(a["segmentation"][0])]
                for a in coco["annotations"] if a["segmentation"]]
    assert sum(outline == pytest.approx(polygon, abs=1e-4) for outline in outlines) == 1
    class_id = YARD_CONCEPTS.index(state("polygon IS NOT NULL AND status = 'SUCCESS'")["concept"][0])
    lines = [line.split() for label in (tmp_path / "seg").rglob("labels/*/*.txt") for line in label.read_text()
             .splitlines()]
    assert sum(int(line[0]) == class_id and len(line) == 1 + len(polygon)
               and [float(v) for v in line[1:]] == pytest.approx(polygon, abs=1e-5) for line in lines) == 1
