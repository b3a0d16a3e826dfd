"""`autoannotate review serve`: the review page and its JSON API (FastAPI, one Jinja page, plain JS).

Images are served only from the image store, by input id; every decision is an
annotation event written through the store's lock handling, so a pipeline run that
holds DuckDB makes a click wait, never lose the decision.

Every request is made as a reviewer: the personal link `autoannotate review invite NAME`
prints signs the browser in (an HttpOnly, SameSite=Strict cookie); scripts send the token
as `Authorization: Bearer TOKEN`. A decision naming another reviewer is refused, and so is
any write whose Origin is not this server (no cross-site request forgery).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apps.review_desk import STALE_LINK, ReviewDesk, utc_now
from core.access import Action
from core.annotations import Kind, Role
from core.geometry import Box as UnitBox
from core.geometry import polygon_bounds
from core.image_checks import DEFAULT_MAX_PIXELS, ImageTooLarge, crop_jpeg, load_oriented_rgb
from core.review_rules import Conflict, Forbidden, Invalid, NotFound, ReviewError, SignInFirst
from core.settings import DEMO_WEIGHTS
from core.task_config import LabelingTask
from resources.concepts import ConceptModels
from resources.image_store import ImageStore
from resources.store import DuckDBStore
from resources.versions import VersionStore
from services.similar import NearestObjects
from store import DatabaseLockedError

INPUT_ID = re.compile(r"[0-9a-f]{64}")  # matched whole (`fullmatch`): no trailing newline slips through
ANNOTATION_ID = re.compile(r"[0-9a-f]{32}")


def whole(pattern: re.Pattern) -> str:
    """`pattern` for a body or query field: pydantic searches a pattern, so it is anchored at both ends (its Rust
    engine's `$` is the end of the text, with no trailing newline allowed)."""
    return f"^{pattern.pattern}$"


InputId = Annotated[str, Field(pattern=whole(INPUT_ID))]
AnnotationId = Annotated[str, Field(pattern=whole(ANNOTATION_ID))]
MAX_IDS = 1_000  # ids in one undo or bulk list (a bulk action on more selects them by `matching`)
LOG = logging.getLogger(__name__)
T = TypeVar("T")
TEMPLATE_DIR = Path(__file__).parent / "templates"
TEMPLATES = Jinja2Templates(directory=str(TEMPLATE_DIR))
PAGE_SCRIPTS = ("review.js", "lead.js", "tasks.js", "objects.js", "signin.js")
CROP_SIZE = 160  # a gallery tile's longer side, in pixels
# Images are never uploaded: every request body is a small JSON decision.
MAX_BODY_BYTES = 1_000_000
# No inline script and no inline event handler can run, whatever a file or concept name holds; the page's own
# script is a file this server serves. Inline styles stay (they carry no script).
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                           "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'self'; frame-ancestors 'none'")
# Routes anyone may reach: the sign-in page (it shows a sentence, or the page once signed in), the pages' scripts
# and the personal link's last step (the token in its body).
PUBLIC_ROUTES = {"/", "/static/{name}", "/api/session"}
TOKEN_COOKIE = "autoannotate_review"
SIGN_IN = "Open your personal review link to sign in; `autoannotate review invite NAME` prints it."


class Finite(BaseModel):
    """NaN and Infinity in a body are refused (a 422 with a sentence), never compared or stored."""

    model_config = ConfigDict(allow_inf_nan=False)


class SignInRequest(Finite):
    token: str = Field(min_length=1, max_length=100)
    switch: bool = False


class Box(Finite):
    x1: float = Field(ge=0.0, le=1.0)
    y1: float = Field(ge=0.0, le=1.0)
    x2: float = Field(ge=0.0, le=1.0)
    y2: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if not (self.x1 < self.x2 and self.y1 < self.y2):
            raise ValueError("box needs x1 < x2 and y1 < y2")
        return self

    def unit_box(self) -> UnitBox:
        return UnitBox(self.x1, self.y1, self.x2, self.y2)


class Decision(BaseModel):
    reviewer: str | None = None  # the signed-in reviewer; naming another one is refused
    decision: Literal["accept", "reject", "reopen"]


def checked_polygon(points: list[float] | None) -> list[float] | None:
    if points is not None and (len(points) < 6 or len(points) % 2):
        raise ValueError("a polygon needs at least 3 points, as x0, y0, x1, y1, ...")
    if points is not None and not polygon_bounds(points).is_ordered():
        raise ValueError("a polygon needs an area: its points may not all lie on one horizontal or vertical line")
    return points


Polygon = Annotated[list[Annotated[float, Field(ge=0.0, le=1.0)]], Field(max_length=20_000)]


class Correction(Finite):
    reviewer: str | None = None  # the signed-in reviewer; naming another one is refused
    concept: str | None = None
    box: Box | None = None
    polygon: Polygon | None = None  # a new outline (its box comes with it)

    _polygon = field_validator("polygon")(checked_polygon)


class NewPolygon(Finite):
    reviewer: str | None = None  # the signed-in reviewer; naming another one is refused
    task: str
    concept: str
    polygon: Polygon

    _polygon = field_validator("polygon")(checked_polygon)


class NewBox(BaseModel):
    reviewer: str | None = None  # the signed-in reviewer; naming another one is refused
    task: str
    concept: str
    box: Box


class NewConcept(BaseModel):
    reviewer: str | None = None  # the signed-in reviewer; naming another one is refused
    task: str
    concept: str


class Undo(BaseModel):
    reviewer: str | None = None
    annotation_ids: list[AnnotationId] = Field(min_length=1, max_length=MAX_IDS)


class AcceptAbove(Finite):
    reviewer: str | None = None  # the signed-in reviewer; naming another one is refused
    task: str
    threshold: float = Field(ge=0.0, le=1.0)
    kind: Kind | None = None  # only boxes, or only image-level concepts; both when not given


class ObjectFilters(Finite):
    """Which objects of a task the gallery shows: status, concept and labeler filters (each any of its values)
    combined with `and` or `or`, and a confidence range."""

    task: str
    status: list[str] = Field(default_factory=list)
    concept: list[str] = Field(default_factory=list)
    labeler: list[str] = Field(default_factory=list)
    combine: Literal["and", "or"] = "and"
    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    max_confidence: float | None = Field(default=None, ge=0.0, le=1.0)

    def by_column(self) -> dict[str, list[str]]:
        return {"status": self.status, "concept": self.concept, "labeler": self.labeler}


class BulkAction(BaseModel):
    """One action on the selected objects, or on every object matching `matching` ("select all N matching")."""

    action: Literal["accept", "reject", "relabel", "remove", "add_concept"]
    task: str
    annotation_ids: list[AnnotationId] = Field(default_factory=list, max_length=MAX_IDS)
    matching: ObjectFilters | None = None
    concept: str | None = None  # relabel: the new concept; add_concept: the image-level concept to add

    @model_validator(mode="after")
    def _chosen(self) -> BulkAction:
        if not self.annotation_ids and self.matching is None:
            raise ValueError("select objects (annotation_ids) or give the filters they match (matching)")
        if self.action in ("relabel", "add_concept") and not self.concept:
            raise ValueError(f"{self.action} needs a concept")
        return self


class TrackDecision(BaseModel):
    reviewer: str | None = None  # the signed-in reviewer; naming another one is refused
    task: str
    video_id: InputId
    track_id: int = Field(ge=1)
    decision: Literal["accept", "reject", "correct"]
    concept: str | None = None  # correct: the track's new concept

    @model_validator(mode="after")
    def _concept(self) -> TrackDecision:
        if (self.decision == "correct") != (self.concept is not None):
            raise ValueError("a correction of a track names its new concept, and only a correction does")
        return self


class NewVersion(BaseModel):
    name: str


class InputDeletion(BaseModel):
    purge: bool = False


ERROR_STATUS = {NotFound: 404, Conflict: 409, Invalid: 422, Forbidden: 403, SignInFirst: 401}


def answer(work: Callable[[], T]) -> T:
    """Run a desk call; a refusal becomes the HTTP status of its type, a lasting lock a 503."""
    try:
        return work()
    except ReviewError as error:
        raise HTTPException(ERROR_STATUS.get(type(error), 400), str(error)) from None
    except DatabaseLockedError as error:
        raise HTTPException(503, f"Your decision was not saved: {error}") from None


def signed_in(request: Request) -> str:
    """The person the request's token (cookie, or `Authorization: Bearer`) belongs to; their role is kept on the
    request (`is_lead`)."""
    header = request.headers.get("authorization", "")
    token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else \
        request.cookies.get(TOKEN_COOKIE)
    if not token:
        raise HTTPException(401, SIGN_IN)
    person = answer(lambda: request.app.state.desk.signed_in(token))
    if person is None:
        raise HTTPException(401, STALE_LINK)
    request.state.role = person.role
    return person.person


def is_lead(request: Request) -> bool:
    return getattr(request.state, "role", None) == Role.LEAD


Me = Annotated[str, Depends(signed_in)]


class BodyLimit:
    """Refuses a request body over `MAX_BODY_BYTES` with 413 before it is read and before authentication: by its
    Content-Length, or, without one (chunked), as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        too_large = JSONResponse({"detail": f"The request body is larger than {self.limit} bytes; the review "
                                            "page sends small JSON decisions only."}, status_code=413)
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await too_large(scope, receive, send)
            return
        received, refused = 0, False

        async def counted() -> Message:
            nonlocal received, refused
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit and not refused:
                # Answer now; the app reads a disconnect and whatever it answers then is dropped.
                refused = True
                await too_large(scope, receive, send)
                return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counted, unless_refused)


SECURITY_HEADERS = [(b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


class SecurityHeaders:
    """The page's security headers on every answer, refusals and failures included: an error no handler took
    becomes a 500 with one sentence here (logged with its traceback), so no answer leaves without them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                names = {name for name, _ in SECURITY_HEADERS}
                message["headers"] = [h for h in message.get("headers", []) if h[0].lower() not in names] + \
                    SECURITY_HEADERS
            await send(message)

        try:
            await self.app(scope, receive, with_headers)
        except Exception:
            LOG.exception("review server: %s %s failed", scope.get("method"), scope.get("path"))
            if not started:
                await JSONResponse({"detail": "The server failed on this request (its log has the error); try "
                                              "again, and tell whoever runs it if it keeps failing."},
                                   status_code=500)(scope, receive, with_headers)


def validation_sentence(error: RequestValidationError) -> str:
    """FastAPI's validation errors as one sentence that never echoes the input (NaN cannot be written as JSON)."""
    parts = []
    for problem in error.errors():
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return "The request is not valid: " + "; ".join(parts) + "."


def create_app(store: DuckDBStore, images: ImageStore, tasks: list[LabelingTask], versions: VersionStore | None = None,
               dagster_url: str = "", models: ConceptModels | None = None, weights: str = str(DEMO_WEIGHTS),
               max_pixels: int = DEFAULT_MAX_PIXELS) -> FastAPI:
    """The review server: the review page and, for leads, the tasks page and the objects gallery. `versions` lets a
    lead create versions; `models` (with the detector `weights` tasks without their own use) embeds objects for
    "more like this"; no image is decoded to more than `max_pixels` to serve it."""
    app = FastAPI(title="autoannotate review", docs_url=None, redoc_url=None, openapi_url=None)
    desk = app.state.desk = ReviewDesk(store, tasks, weights)
    nearest = NearestObjects()  # the task's object embeddings, held while they do not change
    app.add_middleware(BodyLimit)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_sentence(error)}, status_code=422)

    @app.middleware("http")
    async def same_origin_writes(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        """A browser sends Origin with every POST: one from another site is refused before anything runs (the
        answer does not repeat the Origin it was sent)."""
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD") and origin and urlsplit(origin).netloc != request.headers.get("host"):
            return JSONResponse({"detail": "Requests from another site are refused: the review page only accepts "
                                           "decisions from its own pages."}, status_code=403)
        return await call_next(request)

    app.add_middleware(SecurityHeaders)  # added last: the outermost, so every answer carries the headers

    def acting(me: str, named: str | None) -> str:
        return answer(lambda: desk.acting(me, named))  # type: ignore[return-value]

    def allowed(request: Request, me: str, action: Action, **ids: str) -> None:
        answer(lambda: desk.check(me, is_lead(request), action, **ids))

    def checked(pattern: re.Pattern, value: str, what: str) -> str:
        if not pattern.fullmatch(value):
            raise HTTPException(404, f"{value!r} is not a{'n' if what[0] in 'ai' else ''} {what} id.")
        return value

    def tasks_of(reviewer: str, lead: bool = False) -> list[dict]:
        return [{"name": t.name, "priority": t.priority, "reviewers": t.reviewers, "concepts": t.concepts,
                 "image_concepts": t.image_concepts,
                 "detects": t.detects, "allow_takeover": t.allow_takeover,
                 "consensus": t.consensus is not None,
                 "rules": [r.model_dump() for r in t.rules()]} for t in desk.tasks_of(reviewer, lead)]

    def sentence_page(request: Request, sentence: str, status: int) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "review.html", {"sentence": sentence, "tasks": [],
                                                                    "reviewer": None}, status_code=status)

    def signed_in_page(request: Request) -> str | Response:
        try:
            return signed_in(request)
        except HTTPException as refused:
            return sentence_page(request, refused.detail, refused.status_code)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, token: str | None = None) -> Response:
        if token is not None:  # the personal link: its page signs in by a same-site POST (`sign_in`)
            link = answer(lambda: desk.signed_in(token))
            if link is None:
                return sentence_page(request, STALE_LINK, 401)
            return TEMPLATES.TemplateResponse(request, "signin.html", {"person": link.person, "token": token},
                                              headers={"cache-control": "no-store"})
        me = signed_in_page(request)
        if isinstance(me, Response):
            return me
        if is_lead(request):  # a lead lands on the tasks page
            return RedirectResponse("/tasks", status_code=303)
        return review_page(request, me)

    def review_page(request: Request, me: str) -> Response:
        mine = tasks_of(me, is_lead(request))
        if not mine:
            return sentence_page(request, f"{me} is not a reviewer of any configured task.", 403)
        return TEMPLATES.TemplateResponse(request, "review.html", {"tasks": mine, "reviewer": me, "sentence": None})

    @app.get("/review", response_class=HTMLResponse)
    def review(request: Request) -> Response:
        me = signed_in_page(request)
        return me if isinstance(me, Response) else review_page(request, me)

    def lead_page(request: Request, template: str) -> Response:
        me = signed_in_page(request)
        if isinstance(me, Response):
            return me
        try:
            desk.check(me, is_lead(request), Action.SEE_OVERVIEW)
        except ReviewError:
            return sentence_page(request, f"{me} is a reviewer: this page is for leads; your review is at /.", 403)
        return TEMPLATES.TemplateResponse(request, template, {"me": me, "page": {
            "me": me, "tasks": tasks_of(me, lead=True), "dagster_url": dagster_url.rstrip("/")}})

    @app.get("/tasks", response_class=HTMLResponse)
    def tasks_page(request: Request) -> Response:
        return lead_page(request, "tasks.html")

    @app.get("/objects", response_class=HTMLResponse)
    def objects_page(request: Request) -> Response:
        return lead_page(request, "objects.html")

    @app.get("/static/{name}")
    def page_script(name: str) -> Response:
        if name not in PAGE_SCRIPTS:
            raise HTTPException(404, f"No page script is called {name!r}.")
        return Response((TEMPLATE_DIR / name).read_text(), media_type="text/javascript")

    @app.post("/api/session")
    def sign_in(request: Request, body: SignInRequest) -> Response:
        """Keep the link's token in an HttpOnly cookie for as long as the link signs in."""
        link = answer(lambda: desk.sign_in(body.token, request.cookies.get(TOKEN_COOKIE), body.switch))
        response = JSONResponse({"person": link.person, "role": str(link.role),
                                 "expires_at": f"{link.expires_at:%Y-%m-%d %H:%M} UTC"})
        seconds_left = max(1, int((link.expires_at - utc_now()).total_seconds()))
        response.set_cookie(TOKEN_COOKIE, body.token, httponly=True, samesite="strict", max_age=seconds_left)
        return response

    @app.get("/api/tasks")
    def list_tasks(request: Request, me: Me) -> list[dict]:
        return tasks_of(me, is_lead(request))

    @app.get("/api/overview")
    def overview(request: Request, me: Me) -> list[dict]:
        return answer(lambda: desk.overview(me, is_lead(request)))  # type: ignore[return-value]

    @app.post("/api/tasks/{task}/versions")
    def create_version(request: Request, me: Me, task: str, body: NewVersion) -> dict:
        from services.datasets import FrozenVersion, create_named_version

        allowed(request, me, Action.CREATE_VERSION, task=task)
        if versions is None:
            raise HTTPException(503, "This server was started without a version store; `autoannotate review serve` "
                                     "has one.")
        try:
            built = create_named_version(store, versions, images, body.name, [task])
        except FrozenVersion as error:
            raise HTTPException(409, str(error)) from None
        except ValueError as error:
            raise HTTPException(422, str(error)) from None
        return {key: version.as_dict() for key, version in built.items()}

    @app.get("/api/queue")
    def queue(request: Request, me: Me, task: str, reviewer: str | None = None,
              status: list[str] = Query(default=[]),  # noqa: B008
              concept: list[str] = Query(default=[]), labeler: list[str] = Query(default=[]),  # noqa: B008
              combine: Literal["and", "or"] = "and") -> dict:
        reviewer = reviewer or me
        items = answer(lambda: desk.queue(task, reviewer, status, concept, labeler, combine, asked_by=me,
                                          lead=is_lead(request)))
        return {"items": items, "progress": desk.progress(task), "reviewer": reviewer}

    @app.get("/api/inputs/{input_id}")
    def image_boxes(request: Request, me: Me, input_id: str, task: str) -> dict:
        checked(INPUT_ID, input_id, "input")
        return {"input_id": input_id, "annotations": answer(lambda: desk.image(task, input_id, reviewer=me,
                                                                               lead=is_lead(request)))}

    @app.get("/images/{input_id}")
    def image(request: Request, me: Me, input_id: str) -> Response:
        checked(INPUT_ID, input_id, "input")
        # An image of none of the person's tasks gets the answer of one not stored: nothing tells it exists.
        allowed(request, me, Action.SEE_IMAGE, input_id=input_id)
        try:
            data = images.read(input_id)
        except KeyError:
            raise HTTPException(404, f"No stored image has the id {input_id}.") from None
        buffer = io.BytesIO()
        try:  # upright, as the boxes were computed (they are shares of it: a reduced decode shows them alike)
            load_oriented_rgb(data, max_pixels).save(buffer, format="JPEG", quality=90)
        except ImageTooLarge as error:
            raise HTTPException(422, f"{input_id}: {error}") from None
        return Response(buffer.getvalue(), media_type="image/jpeg")

    @app.get("/api/objects")
    def objects(request: Request, me: Me, filters: Annotated[ObjectFilters, Query()], after: str | None = None,
                limit: int = Query(default=60, ge=1, le=500)) -> dict:
        return answer(lambda: desk.objects(me, is_lead(request), filters.task, filters.by_column(), filters.combine,
                                           filters.min_confidence, filters.max_confidence, after, limit))

    @app.get("/crops/{annotation_id}")
    def crop(request: Request, me: Me, annotation_id: str,
             size: int = Query(default=CROP_SIZE, ge=32, le=512)) -> Response:
        """An object cut from its image: for a lead, and for a reviewer of a task the image belongs to (a track's
        frame strip)."""
        checked(ANNOTATION_ID, annotation_id, "annotation")
        allowed(request, me, Action.SEE_CROP, annotation_id=annotation_id)
        found = answer(lambda: desk.box_of(annotation_id))
        box = (found["x1"], found["y1"], found["x2"], found["y2"])
        key = hashlib.sha256(repr((box, size)).encode()).hexdigest()[:16]
        try:
            data = images.cached_crop(found["input_id"], key, lambda stored: crop_jpeg(stored, box, size,
                                                                                      max_pixels=max_pixels))
        except KeyError:
            raise HTTPException(404, f"No stored image holds annotation {annotation_id}.") from None
        except ImageTooLarge as error:
            raise HTTPException(422, f"{found['input_id']}: {error}") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/api/objects/{annotation_id}/similar")
    def similar(request: Request, me: Me, annotation_id: str, task: str,
                limit: int = Query(default=12, ge=1, le=100)) -> dict:
        from services.similar import object_backbone, similar_objects

        checked(ANNOTATION_ID, annotation_id, "annotation")
        allowed(request, me, Action.SEE_SIMILAR, task=task, annotation_id=annotation_id)
        chosen = answer(lambda: desk.task(task))
        if models is None:
            raise HTTPException(503, "This server was started without concept models; `autoannotate review serve` "
                                     "has them.")
        backbone = object_backbone(models, chosen, chosen.weights_path() or Path(weights))
        try:
            return similar_objects(store, images, backbone, chosen, annotation_id, nearest, limit)
        except KeyError as error:
            raise HTTPException(404, str(error.args[0])) from None

    @app.post("/api/objects/bulk")
    def bulk(request: Request, me: Me, body: BulkAction) -> dict:
        lead = is_lead(request)
        chosen = body.annotation_ids
        if body.matching is not None:
            m = body.matching
            if m.task != body.task:
                raise HTTPException(422, "The filters must be of the task the action is on.")
            chosen = answer(lambda: desk.matching_objects(me, lead, m.task, m.by_column(), m.combine,
                                                          m.min_confidence, m.max_confidence))
        if body.action == "add_concept":
            return answer(lambda: desk.add_concept_to_images(body.task, chosen, body.concept or "", me, lead))
        return answer(lambda: desk.bulk(body.task, chosen, body.action, me, body.concept, lead=lead))

    @app.post("/api/inputs/{input_id}/delete")
    def delete_input(request: Request, me: Me, input_id: str, body: InputDeletion) -> dict:
        from services.inputs import delete_inputs

        checked(INPUT_ID, input_id, "input")
        allowed(request, me, Action.DELETE_INPUT, input_id=input_id)
        deleted = delete_inputs(store, images, [input_id], me, purge=body.purge)
        return {**deleted.as_dict(), "sentence": deleted.sentence()}

    @app.post("/api/annotations/{annotation_id}/remove")
    def remove(request: Request, me: Me, annotation_id: str) -> dict:
        checked(ANNOTATION_ID, annotation_id, "annotation")
        return answer(lambda: desk.remove(annotation_id, me, is_lead(request)))

    @app.post("/api/annotations/{annotation_id}/decision")
    def decide(request: Request, me: Me, annotation_id: str, body: Decision) -> dict:
        checked(ANNOTATION_ID, annotation_id, "annotation")
        return answer(lambda: desk.decide(annotation_id, body.decision, acting(me, body.reviewer),
                                          lead=is_lead(request)))

    @app.post("/api/annotations/{annotation_id}/correct")
    def correct(request: Request, me: Me, annotation_id: str, body: Correction) -> dict:
        checked(ANNOTATION_ID, annotation_id, "annotation")
        if body.concept is None and body.box is None and body.polygon is None:
            raise HTTPException(422, "A correction needs a new concept, a new box or polygon, or both.")
        return answer(lambda: desk.decide(annotation_id, "correct", acting(me, body.reviewer), concept=body.concept,
                                          box=body.box.unit_box() if body.box else None, lead=is_lead(request),
                                          polygon=body.polygon))

    @app.post("/api/inputs/{input_id}/polygons")
    def draw_polygon(request: Request, me: Me, input_id: str, body: NewPolygon) -> dict:
        checked(INPUT_ID, input_id, "input")
        return answer(lambda: desk.draw(body.task, input_id, body.concept, polygon_bounds(body.polygon),
                                        acting(me, body.reviewer), lead=is_lead(request), polygon=body.polygon))

    @app.post("/api/inputs/{input_id}/boxes")
    def draw(request: Request, me: Me, input_id: str, body: NewBox) -> dict:
        checked(INPUT_ID, input_id, "input")
        return answer(lambda: desk.draw(body.task, input_id, body.concept, body.box.unit_box(),
                                        acting(me, body.reviewer), lead=is_lead(request)))

    @app.post("/api/inputs/{input_id}/accept-above")
    def accept_all_above(request: Request, me: Me, input_id: str, body: AcceptAbove) -> dict:
        checked(INPUT_ID, input_id, "input")
        return answer(lambda: desk.accept_above(body.task, input_id, body.threshold, acting(me, body.reviewer),
                                                body.kind, lead=is_lead(request)))

    @app.post("/api/inputs/{input_id}/concepts")
    def add_concept(request: Request, me: Me, input_id: str, body: NewConcept) -> dict:
        checked(INPUT_ID, input_id, "input")
        return answer(lambda: desk.add_concept(body.task, input_id, body.concept, acting(me, body.reviewer),
                                               lead=is_lead(request)))

    @app.get("/api/tracks/frames")
    def track_frames(request: Request, me: Me, task: str,
                     video_id: Annotated[str, Query(pattern=whole(INPUT_ID))], track_id: int) -> dict:
        """A track's frame annotations in order, for the review page's strip."""
        frames = answer(lambda: desk.track_frames(task, video_id, track_id, me, is_lead(request)))
        return {"task": task, "video_id": video_id, "track_id": track_id, "frames": frames}

    @app.post("/api/tracks/decision")
    def decide_track(request: Request, me: Me, body: TrackDecision) -> dict:
        return answer(lambda: desk.decide_track(body.task, body.video_id, body.track_id, body.decision,
                                                acting(me, body.reviewer), body.concept, lead=is_lead(request)))

    @app.post("/api/undo")
    def undo(request: Request, me: Me, body: Undo) -> dict:
        return answer(lambda: desk.undo(body.annotation_ids, acting(me, body.reviewer), lead=is_lead(request)))

    return app
