"""Who may do what, as a matrix: every route of the review app x every kind of person x every kind of target, each
cell's answer stated in a table; a refusal writes nothing and tells nothing (an id it refuses gets the answer of an
id that does not exist). The policy itself (`core.access.may`) is tested plainly at the end."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import autoannotate, query, write_task_file

from apps.demo_scenes import moving_scene, write_demo_images, write_video
from apps.review_desk import ReviewDesk
from apps.review_server import PUBLIC_ROUTES, create_app
from core.access import Action, Actor, Target, Why, may
from core.annotations import Role
from core.settings import Settings
from resources import build_resources
from services.inputs import delete_inputs
from store.tables import TABLES

# The people: a reviewer of another task, a reviewer of both tasks who holds neither target image, the holder of
# the street image (and of the track's frames), a consensus holder of the panel image, the panel's adjudicator,
# a lead; and nobody signed in.
ANONYMOUS, OTHER, BYSTANDER, HOLDER, CONSENSUS, ADJUDICATOR, LEAD = (
    None, "oscar", "bea", "holly", "cora", "ada", "lena")
ACTORS = (ANONYMOUS, OTHER, BYSTANDER, HOLDER, CONSENSUS, ADJUDICATOR, LEAD)
# The targets, in the order of each cell string: an annotation/image in scope of task street and held by holly,
# one out of street's scope (task far's), one of a deleted input, an annotation awaiting consensus review (task
# panel), and a track (its frames held by holly).
TARGETS = ("in_scope", "out_of_scope", "deleted", "awaiting_consensus", "track")
CODE = {"1": 401, "2": 200, "3": 403, "4": 404, "9": 409, "x": 422}
BOX = {"x1": 0.1, "y1": 0.1, "x2": 0.3, "y2": 0.3}

# Every route (method, path) -> {actor: the answers for the five targets}; a route or a cell missing here fails.
EXPECTED: dict[tuple[str, str], dict[str | None, str]] = {
    ("GET", "/api/tasks"): {OTHER: "22222", BYSTANDER: "22222", HOLDER: "22222", CONSENSUS: "22222",
                            ADJUDICATOR: "22222", LEAD: "22222"},
    ("GET", "/api/queue"): {OTHER: "33333", BYSTANDER: "22222", HOLDER: "22232", CONSENSUS: "33323",
                            ADJUDICATOR: "33323", LEAD: "22222"},
    ("GET", "/api/inputs/{input_id}"): {OTHER: "33333", BYSTANDER: "24422", HOLDER: "24432", CONSENSUS: "33323",
                                        ADJUDICATOR: "33323", LEAD: "24422"},
    ("GET", "/images/{input_id}"): {OTHER: "42444", BYSTANDER: "24422", HOLDER: "24442", CONSENSUS: "44424",
                                    ADJUDICATOR: "44424", LEAD: "22422"},
    ("POST", "/api/annotations/{annotation_id}/decision"): {
        OTHER: "42444", BYSTANDER: "34433", HOLDER: "24442", CONSENSUS: "44434", ADJUDICATOR: "44424",
        LEAD: "22422"},
    ("POST", "/api/annotations/{annotation_id}/correct"): {
        OTHER: "42444", BYSTANDER: "34433", HOLDER: "24442", CONSENSUS: "44434", ADJUDICATOR: "44424",
        LEAD: "22422"},
    ("POST", "/api/annotations/{annotation_id}/remove"): {
        OTHER: "42444", BYSTANDER: "34433", HOLDER: "24442", CONSENSUS: "44434", ADJUDICATOR: "44424",
        LEAD: "22422"},
    ("POST", "/api/undo"): {OTHER: "49444", BYSTANDER: "34433", HOLDER: "94449", CONSENSUS: "44434",
                            ADJUDICATOR: "44494", LEAD: "99499"},
    ("POST", "/api/inputs/{input_id}/boxes"): {OTHER: "33333", BYSTANDER: "34433", HOLDER: "24432",
                                               CONSENSUS: "33323", ADJUDICATOR: "33333", LEAD: "24422"},
    ("POST", "/api/inputs/{input_id}/polygons"): {OTHER: "33333", BYSTANDER: "34433", HOLDER: "24432",
                                                  CONSENSUS: "33323", ADJUDICATOR: "33333", LEAD: "24422"},
    ("POST", "/api/inputs/{input_id}/accept-above"): {OTHER: "33333", BYSTANDER: "34433", HOLDER: "24432",
                                                      CONSENSUS: "33323", ADJUDICATOR: "33333", LEAD: "24422"},
    # No task here has image-level concepts: whom the policy lets through, the task then refuses (422).
    ("POST", "/api/inputs/{input_id}/concepts"): {OTHER: "33333", BYSTANDER: "34433", HOLDER: "x443x",
                                                  CONSENSUS: "333x3", ADJUDICATOR: "33333", LEAD: "x44xx"},
    ("GET", "/api/tracks/frames"): {OTHER: "33333", BYSTANDER: "444x2", HOLDER: "44432", CONSENSUS: "333x3",
                                    ADJUDICATOR: "333x3", LEAD: "444x2"},
    ("POST", "/api/tracks/decision"): {OTHER: "33333", BYSTANDER: "444x3", HOLDER: "44432", CONSENSUS: "333x3",
                                       ADJUDICATOR: "333x3", LEAD: "444x2"},
    ("GET", "/crops/{annotation_id}"): {OTHER: "42444", BYSTANDER: "24422", HOLDER: "24442", CONSENSUS: "44424",
                                        ADJUDICATOR: "44424", LEAD: "22422"},
    ("GET", "/review"): {OTHER: "22222", BYSTANDER: "22222", HOLDER: "22222", CONSENSUS: "22222",
                         ADJUDICATOR: "22222", LEAD: "22222"},
    **{key: {OTHER: "33333", BYSTANDER: "33333", HOLDER: "33333", CONSENSUS: "33333", ADJUDICATOR: "33333",
             LEAD: lead} for key, lead in (
        (("GET", "/tasks"), "22222"), (("GET", "/objects"), "22222"), (("GET", "/api/overview"), "22222"),
        (("GET", "/api/objects"), "22222"), (("GET", "/api/objects/{annotation_id}/similar"), "24422"),
        (("POST", "/api/objects/bulk"), "24422"), (("POST", "/api/inputs/{input_id}/delete"), "22222"),
        (("POST", "/api/tasks/{task}/versions"), "22222"))},
}


def request_of(key: tuple[str, str], t: dict, label: str) -> tuple[str, str, dict]:
    """The request each route gets for target `t`: (method, url, keyword arguments)."""
    annotation, image, task = t["annotation_id"], t["input_id"], t["task"]
    track = {"task": task, "video_id": t["video_id"], "track_id": t["track_id"]}
    return {
        ("GET", "/api/tasks"): ("GET", "/api/tasks", {}),
        ("GET", "/api/queue"): ("GET", "/api/queue", {"params": {"task": task}}),
        ("GET", "/api/inputs/{input_id}"): ("GET", f"/api/inputs/{image}", {"params": {"task": task}}),
        ("GET", "/images/{input_id}"): ("GET", f"/images/{image}", {}),
        ("POST", "/api/annotations/{annotation_id}/decision"): (
            "POST", f"/api/annotations/{annotation}/decision", {"json": {"decision": "reject"}}),
        ("POST", "/api/annotations/{annotation_id}/correct"): (
            "POST", f"/api/annotations/{annotation}/correct", {"json": {"box": BOX}}),
        ("POST", "/api/annotations/{annotation_id}/remove"): (
            "POST", f"/api/annotations/{annotation}/remove", {}),
        ("POST", "/api/undo"): ("POST", "/api/undo", {"json": {"annotation_ids": [annotation]}}),
        ("POST", "/api/inputs/{input_id}/boxes"): (
            "POST", f"/api/inputs/{image}/boxes", {"json": {"task": task, "concept": "box", "box": BOX}}),
        ("POST", "/api/inputs/{input_id}/polygons"): (
            "POST", f"/api/inputs/{image}/polygons", {"json": {"task": task, "concept": "box",
                                                               "polygon": [0.1, 0.1, 0.3, 0.1, 0.2, 0.3]}}),
        ("POST", "/api/inputs/{input_id}/accept-above"): (
            "POST", f"/api/inputs/{image}/accept-above", {"json": {"task": task, "threshold": 0.0}}),
        ("POST", "/api/inputs/{input_id}/concepts"): (
            "POST", f"/api/inputs/{image}/concepts", {"json": {"task": task, "concept": "indoor"}}),
        ("GET", "/api/tracks/frames"): ("GET", "/api/tracks/frames", {"params": track}),
        ("POST", "/api/tracks/decision"): ("POST", "/api/tracks/decision", {"json": {**track,
                                                                                    "decision": "reject"}}),
        ("GET", "/crops/{annotation_id}"): ("GET", f"/crops/{annotation}", {}),
        ("GET", "/review"): ("GET", "/review", {}),
        ("GET", "/tasks"): ("GET", "/tasks", {}),
        ("GET", "/objects"): ("GET", "/objects", {}),
        ("GET", "/api/overview"): ("GET", "/api/overview", {}),
        ("GET", "/api/objects"): ("GET", "/api/objects", {"params": {"task": task}}),
        ("GET", "/api/objects/{annotation_id}/similar"): (
            "GET", f"/api/objects/{annotation}/similar", {"params": {"task": task}}),
        ("POST", "/api/objects/bulk"): ("POST", "/api/objects/bulk", {"json": {
            "action": "reject", "task": task, "annotation_ids": [annotation]}}),
        ("POST", "/api/inputs/{input_id}/delete"): ("POST", f"/api/inputs/{image}/delete", {"json": {}}),
        ("POST", "/api/tasks/{task}/versions"): ("POST", f"/api/tasks/{task}/versions",
                                                 {"json": {"name": f"v-{label}"}}),
    }[key]


@pytest.fixture(scope="module")
def access_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict]]:
    """Three tasks on their own folders: street (holly and bea; a video tracked with bytetrack), panel (consensus:
    2 of cora, cody and bea per image, ada adjudicates) and far (oscar); one street image deleted by the lead, and
    one panel item the two holders disagreed on."""
    home = tmp_path_factory.mktemp("access-home")
    inbox = home / "inbox"
    write_demo_images(inbox / "street", 6, seed=61)
    write_video(inbox / "street" / "clip.mp4", moving_scene(63, 12)[0], fps=10)
    write_demo_images(inbox / "panel", 6, seed=62)
    write_demo_images(inbox / "far", 3, seed=64)
    band = {"upper": 0.99, "lower": 0.3}
    files = [write_task_file(home, name="street", thresholds=band, reviewers=["holly", "bea"],
                             inputs={"paths": ["street/*"]}, tracker="bytetrack"),
             write_task_file(home, name="panel", thresholds=band, reviewers=["cora", "cody", "bea"],
                             inputs={"paths": ["panel/*"]},
                             consensus={"reviewers_per_image": 2, "agreement_iou": 0.5, "adjudicators": ["ada"]}),
             write_task_file(home, name="far", thresholds=band, reviewers=["oscar"], inputs={"paths": ["far/*"]})]
    autoannotate("run", "--inbox", str(inbox), *(a for f in files for a in ("--task-file", str(f))), home=home,
                 env={"AUTOANNOTATE_VIDEO_FPS": "10", "AUTOANNOTATE_VIDEO_SKIP_SIMILAR": "1.0"})
    resources = build_resources(Settings(home=home, task_files=tuple(str(f) for f in files)))
    store, desk = resources["store"], ReviewDesk(resources["store"], resources["tasks"].load())

    def one(sql: str) -> dict:
        found = query(store, sql)
        assert len(found), sql
        return found.iloc[0].to_dict()

    # The video's frames all in holly's queue (as a hand-over would leave them), so that holly holds the track.
    frames = "SELECT input_id FROM video_frames"
    store.write(lambda s: s.conn.execute(f"UPDATE review_assignments SET reviewer = 'holly' WHERE task = 'street' "
                                         f"AND input_id IN ({frames})"))
    awaiting = ("SELECT c.annotation_id, c.input_id FROM annotation_state c JOIN review_assignments r USING (task, "
                "input_id) WHERE c.task = '{task}' AND c.status = 'AWAITING_REVIEW' AND r.reviewer = '{who}' "
                "AND c.input_id {frame} IN (" + frames + ") ORDER BY 1 LIMIT 1")
    in_scope = one(awaiting.format(task="street", who="holly", frame="NOT"))
    far = one(awaiting.format(task="far", who="oscar", frame="NOT"))
    deleted = one(f"SELECT annotation_id, input_id FROM annotation_state WHERE task = 'street' AND status = "
                  f"'AWAITING_REVIEW' AND input_id NOT IN ({frames}) AND input_id <> '{in_scope['input_id']}' "
                  "ORDER BY 1 LIMIT 1")
    delete_inputs(store, resources["images"], [deleted["input_id"]], LEAD)
    track = one(f"""SELECT c.annotation_id, c.input_id, t.video_id, t.track_id FROM annotation_state c
                    JOIN prediction_tracks t ON t.prediction_id = c.prediction_id AND t.model_id = c.model_id
                    WHERE c.task = 'street' AND c.status = 'AWAITING_REVIEW' AND c.input_id IN ({frames})
                    ORDER BY t.track_id, c.annotation_id LIMIT 1""")
    # A panel image held by cora and cody (not bea): cora accepts every item, cody rejects the first.
    panel = one("SELECT input_id FROM consensus_assignments WHERE task = 'panel' AND role = 'review' GROUP BY 1 "
                "HAVING list(reviewer ORDER BY reviewer) = ['cody', 'cora'] AND input_id IN (SELECT input_id FROM "
                "annotation_state WHERE task = 'panel' AND status = 'AWAITING_REVIEW') ORDER BY 1 LIMIT 1")
    items = query(store, "SELECT annotation_id FROM annotation_state WHERE task = 'panel' AND input_id = ? AND "
                         "status = 'AWAITING_REVIEW' ORDER BY 1", [panel["input_id"]])["annotation_id"].tolist()
    for index, item in enumerate(items):
        desk.decide(item, "accept", CONSENSUS)
        desk.decide(item, "reject" if index == 0 else "accept", "cody")
    contested = one(f"SELECT annotation_id, input_id FROM annotation_state WHERE annotation_id = '{items[0]}' AND "
                    "status = 'AWAITING_CONSENSUS_REVIEW'")
    assert query(store, "SELECT reviewer FROM consensus_assignments WHERE input_id = ? AND role = 'adjudicate'",
                 [panel["input_id"]])["reviewer"].tolist() == [ADJUDICATOR]
    not_a_track = {"video_id": "f" * 64, "track_id": 1}
    targets = {
        "in_scope": {"task": "street", **in_scope, "video_id": in_scope["input_id"], "track_id": 1},
        "out_of_scope": {"task": "street", **far, **not_a_track},
        "deleted": {"task": "street", **deleted, **not_a_track},
        "awaiting_consensus": {"task": "panel", **contested, **not_a_track},
        "track": {"task": "street", **track, "track_id": int(track["track_id"])},
    }
    return home, targets


@pytest.fixture
def served(access_home: tuple[Path, dict], tmp_path: Path) -> tuple[dict, Callable[[str | None], TestClient], dict]:
    source, targets = access_home
    home = tmp_path / "home"
    shutil.copytree(source, home, ignore=shutil.ignore_patterns("dagster"))
    tasks = tuple(str(home / f"{name}.yaml") for name in ("street", "panel", "far"))
    resources = build_resources(Settings(home=home, task_files=tasks))
    app = create_app(resources["store"], resources["images"], resources["tasks"].load(), resources["versions"],
                     models=resources["concept_models"])
    tokens = {name: app.state.desk.invite(name, Role.LEAD if name == LEAD else Role.REVIEWER)
              for name in ACTORS if name is not None}

    def client(name: str | None) -> TestClient:
        headers = {"Authorization": f"Bearer {tokens[name]}"} if name else {}
        return TestClient(app, headers=headers, raise_server_exceptions=False)

    client.app = app  # type: ignore[attr-defined]
    return resources, client, targets


def row_counts(resources: dict) -> dict[str, int]:
    sql = " UNION ALL ".join(f"SELECT '{name}' AS t, count(*) AS n FROM {name}" for name in TABLES)
    return dict(query(resources["store"], sql).itertuples(index=False, name=None))


def test_every_route_answers_every_person_on_every_target_as_the_table_says(served: tuple) -> None:
    resources, client, targets = served
    app = client.app
    routes = {(method, route.path) for route in app.routes if hasattr(route, "methods")
              for method in route.methods if method != "HEAD" and route.path not in PUBLIC_ROUTES}
    assert routes == set(EXPECTED), f"routes the table leaves out: {sorted(routes - set(EXPECTED))}"
    for key, answers in EXPECTED.items():
        assert set(answers) == set(ACTORS) - {ANONYMOUS}, f"{key}: a person is missing from its row"
        assert all(len(cells) == len(TARGETS) for cells in answers.values()), key
    database = Path(resources["store"].path)
    snapshot = database.with_suffix(".snapshot")
    shutil.copyfile(database, snapshot)
    before = row_counts(resources)
    clients = {name: client(name) for name in ACTORS}
    wrong: list[str] = []
    cells = 0
    for key, answers in EXPECTED.items():
        for actor in ACTORS:
            for position, label in enumerate(TARGETS):
                expected = 401 if actor is None else CODE[answers[actor][position]]
                method, url, kwargs = request_of(key, targets[label], label)
                answer = clients[actor].request(method, url, **kwargs)
                cells += 1
                if answer.status_code != expected:
                    wrong.append(f"{key} {actor} {label}: {answer.status_code} (expected {expected}) "
                                 f"{answer.text[:160]}")
                if answer.status_code < 300:
                    # The next cell starts from the same state (a GET may fill a cache: object embeddings).
                    shutil.copyfile(snapshot, database)
                elif answer.status_code >= 400:
                    counts = row_counts(resources)
                    if counts != before:
                        wrong.append(f"{key} {actor} {label}: refused with {answer.status_code} but wrote "
                                     f"{ {t: counts[t] - n for t, n in before.items() if counts[t] != n} }")
                    if answer.status_code == 404 and "json" in answer.headers.get("content-type", ""):
                        unknown = unknown_answer(clients[actor], key, targets[label], label)
                        if unknown != redacted(answer.json()["detail"], targets[label]):
                            wrong.append(f"{key} {actor} {label}: a refused id is told {answer.json()['detail']!r},"
                                         f" an unknown one {unknown!r}")
    assert cells == len(EXPECTED) * len(ACTORS) * len(TARGETS)
    assert not wrong, "\n".join(wrong)


UNKNOWN = {"input_id": "e" * 64, "annotation_id": "e" * 32, "video_id": "e" * 64}


def redacted(sentence: str, target: dict) -> str:
    for field, unknown in UNKNOWN.items():
        sentence = sentence.replace(str(target[field]), unknown).replace(str(target[field])[:12], unknown[:12])
    return sentence


def unknown_answer(client: TestClient, key: tuple[str, str], target: dict, label: str) -> str:
    """What the same request answers when every id in it names nothing."""
    method, url, kwargs = request_of(key, {**target, **UNKNOWN}, label)
    answer = client.request(method, url, **kwargs)
    return answer.json().get("detail", "") if answer.status_code == 404 else f"{answer.status_code}: {answer.text}"


def test_the_defects_found_by_a_hostile_reviewer_are_refused(served: tuple) -> None:
    """The rows of the issue, each refused with its sentence and nothing written."""
    resources, client, targets = served
    before = row_counts(resources)
    outsider, bystander = client(OTHER), client(BYSTANDER)
    accepted = query(resources["store"], "SELECT annotation_id FROM annotation_state WHERE task = 'panel' AND "
                                         "status = 'SUCCESS' ORDER BY 1 LIMIT 1")["annotation_id"][0]
    # Reopening a consensus task's accepted annotation: neither a stranger nor one of its reviewers.
    reopened = outsider.post(f"/api/annotations/{accepted}/decision", json={"decision": "reopen"})
    assert (reopened.status_code, reopened.json()["detail"]) == (404, f"No annotation has the id {accepted!r}.")
    reopened = bystander.post(f"/api/annotations/{accepted}/decision", json={"decision": "reopen"})
    assert reopened.status_code == 403 and "In consensus task 'panel' a reviewer may not send this annotation back" \
        in reopened.json()["detail"]
    # Removing, undoing and deciding a track around consensus and the adjudicator.
    contested = targets["awaiting_consensus"]["annotation_id"]
    for path in (f"/api/annotations/{contested}/remove", "/api/undo"):
        refused = client(CONSENSUS).post(path, json={"annotation_ids": [contested]})
        assert refused.status_code == 403 and "awaits consensus review by its adjudicator" in \
            refused.json()["detail"]
    track = targets["track"]
    refused = bystander.post("/api/tracks/decision", json={"task": "street", "video_id": track["video_id"],
                                                           "track_id": track["track_id"], "decision": "reject"})
    assert refused.status_code == 403 and "in holly's queue" in refused.json()["detail"]
    # Another task's tracks and crops; drawing outside the scope; a deleted input.
    assert outsider.get("/api/tracks/frames", params={"task": "street", "video_id": track["video_id"],
                                                      "track_id": track["track_id"]}).status_code == 403
    assert outsider.get(f"/crops/{track['annotation_id']}").status_code == 404
    far = targets["out_of_scope"]["input_id"]
    drawn = client(HOLDER).post(f"/api/inputs/{far}/boxes", json={"task": "street", "concept": "box", "box": BOX})
    assert (drawn.status_code, drawn.json()["detail"]) == (404, f"No input has the id {far}.")
    gone = targets["deleted"]["input_id"]
    assert client(HOLDER).get(f"/images/{gone}").status_code == 404
    assert client(LEAD).post(f"/api/inputs/{gone}/boxes", json={"task": "street", "concept": "box",
                                                                "box": BOX}).status_code == 404
    assert row_counts(resources) == before


@pytest.mark.parametrize(("actor", "action", "target", "why"), [
    (None, Action.SEE_TASK, None, Why.SIGN_IN),
    (Actor("bea", Role.REVIEWER), Action.DELETE_INPUT, None, Why.FORBIDDEN),
    (Actor("lena", Role.LEAD), Action.DELETE_INPUT, Target("image", "i", "t", deleted=True), None),
    (Actor("lena", Role.LEAD), Action.DRAW, Target("input", "i", "t", deleted=True), Why.NOT_FOUND),
    (Actor("bea", Role.REVIEWER, frozenset({"t"})), Action.DECIDE,
     Target("annotation", "a", "t", holders=frozenset({None})), None),
    (Actor("bea", Role.REVIEWER, frozenset({"t"})), Action.DECIDE,
     Target("annotation", "a", "t", holders=frozenset({"holly"})), Why.FORBIDDEN),
    (Actor("bea", Role.REVIEWER, frozenset({"t"})), Action.DECIDE,
     Target("annotation", "a", "t", holders=frozenset({"holly"}), takeover=True), None),
    (Actor("bea", Role.REVIEWER, frozenset({"u"})), Action.DECIDE, Target("annotation", "a", "t"), Why.NOT_FOUND),
    (Actor("bea", Role.REVIEWER, frozenset({"u"})), Action.DRAW, Target("input", "i", "t", True), Why.FORBIDDEN),
    (Actor("cora", Role.REVIEWER, frozenset({"p"})), Action.REOPEN,
     Target("annotation", "a", "p", consensus=True, consensus_holders=frozenset({"cora"})), Why.FORBIDDEN),
    (Actor("ada", Role.REVIEWER, adjudicates=frozenset({"p"})), Action.REMOVE,
     Target("annotation", "a", "p", consensus=True, adjudicators=frozenset({"ada"}), awaiting_consensus=True), None),
    (Actor("bea", Role.REVIEWER, frozenset({"p"})), Action.DECIDE_TRACK,
     Target("track", "1", "p", True, consensus=True, holders=frozenset({None})), Why.FORBIDDEN),
    (Actor("bea", Role.REVIEWER), Action.ACT_AS, Target("task", person="holly"), Why.FORBIDDEN),
])
def test_the_policy_answers_with_the_kind_of_refusal(actor: Actor | None, action: Action, target: Target | None,
                                                     why: Why | None) -> None:
    refusal = may(actor, action, target)
    assert (refusal.why if refusal else None) == why
    if refusal is not None:
        assert refusal.sentence and not re.search(r"\{|\}", refusal.sentence)


def test_lists_are_bounded_ids_matched_whole_and_every_answer_carries_the_headers(served: tuple) -> None:
    resources, client, targets = served
    holder = client(HOLDER)
    annotation = targets["in_scope"]["annotation_id"]
    before = row_counts(resources)
    flood = holder.post("/api/undo", json={"annotation_ids": [annotation] * 2000})
    assert flood.status_code == 422 and "annotation_ids: List should have at most 1000 items" in flood.json()["detail"]
    for body in ({"annotation_ids": [annotation + "\n"]}, {"annotation_ids": ["x" + annotation]}):
        assert holder.post("/api/undo", json=body).status_code == 422
    bulk = client(LEAD).post("/api/objects/bulk", json={"action": "reject", "task": "street",
                                                        "annotation_ids": [annotation] * 1001})
    assert bulk.status_code == 422
    track = targets["track"]
    padded = holder.post("/api/tracks/decision", json={"task": "street", "video_id": track["video_id"] + "\n",
                                                       "track_id": track["track_id"], "decision": "reject"})
    assert padded.status_code == 422
    flat = holder.post(f"/api/inputs/{targets['in_scope']['input_id']}/polygons", json={
        "task": "street", "concept": "box", "polygon": [0.2, 0.2, 0.4, 0.2, 0.3, 0.2]})
    assert flat.status_code == 422 and "a polygon needs an area" in flat.json()["detail"]
    assert row_counts(resources) == before
    # Three copies of one id in an undo are one undo (here: one refusal, nothing written).
    holder.post(f"/api/annotations/{annotation}/decision", json={"decision": "reject"})
    undone = holder.post("/api/undo", json={"annotation_ids": [annotation] * 3})
    assert undone.status_code == 200 and len(undone.json()["undone"]) == 1 and undone.json()["written"] == 1

    forged = holder.post(f"/api/annotations/{annotation}/decision", json={"decision": "accept"},
                         headers={"Origin": "http://evil.example"})
    client.app.state.desk.tasks_of = None  # a failure no handler takes: /api/tasks calls it
    failed = holder.get("/api/tasks")
    assert failed.status_code == 500 and failed.json()["detail"].startswith("The server failed on this request")
    for answer in (forged, flood, flat, failed, client(ANONYMOUS).get("/api/tasks")):
        assert answer.headers["content-security-policy"].startswith("default-src 'self'"), answer.status_code
        assert answer.headers["x-content-type-options"] == "nosniff"
    assert forged.status_code == 403 and "evil.example" not in forged.text
