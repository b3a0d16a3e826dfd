"""`autoannotate review serve`: the review page and its JSON API (FastAPI, one Jinja page, plain JS).

Images are served only from the image store, by input id; every decision is an
annotation event written through the store's lock handling, so a pipeline run that
holds DuckDB makes a click wait, never lose the decision.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, model_validator

from apps.review_desk import ReviewDesk
from core.geometry import Box as UnitBox
from core.image_checks import load_oriented_rgb
from core.review_rules import Conflict, Invalid, NotFound, ReviewError
from core.task_config import LabelingTask
from resources.image_store import ImageStore
from resources.store import DuckDBStore
from store import DatabaseLockedError

INPUT_ID = re.compile(r"^[0-9a-f]{64}$")
ANNOTATION_ID = re.compile(r"^[0-9a-f]{32}$")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class Box(BaseModel):
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
    reviewer: str = Field(min_length=1)
    decision: Literal["accept", "reject"]


class Correction(BaseModel):
    reviewer: str = Field(min_length=1)
    concept: str | None = None
    box: Box | None = None


class NewBox(BaseModel):
    reviewer: str = Field(min_length=1)
    task: str
    concept: str
    box: Box


class AcceptAbove(BaseModel):
    reviewer: str = Field(min_length=1)
    task: str
    threshold: float = Field(ge=0.0, le=1.0)


ERROR_STATUS = {NotFound: 404, Conflict: 409, Invalid: 422}


def create_app(store: DuckDBStore, images: ImageStore, tasks: list[LabelingTask]) -> FastAPI:
    app = FastAPI(title="autoannotate review", docs_url=None, redoc_url=None)
    desk = ReviewDesk(store, tasks)

    def checked(pattern: re.Pattern, value: str, what: str) -> str:
        if not pattern.match(value):
            raise HTTPException(404, f"{value!r} is not a{'n' if what[0] in 'ai' else ''} {what} id.")
        return value

    def answer(work):
        """Run a desk call; a refusal becomes the HTTP status of its type, a lasting lock a 503."""
        try:
            return work()
        except ReviewError as error:
            raise HTTPException(ERROR_STATUS.get(type(error), 400), str(error)) from None
        except DatabaseLockedError as error:
            raise HTTPException(503, f"Your decision was not saved: {error}") from None

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, "review.html", {"tasks": [
            {"name": t.name, "reviewers": t.reviewers, "concepts": t.concepts} for t in tasks]})

    @app.get("/api/tasks")
    def list_tasks() -> list[dict]:
        return [{"name": t.name, "reviewers": t.reviewers, "concepts": t.concepts,
                 "rules": [r.model_dump() for r in t.rules()]} for t in tasks]

    @app.get("/api/queue")
    def queue(task: str, reviewer: str, status: list[str] = Query(default=[]),  # noqa: B008
              concept: list[str] = Query(default=[]), labeler: list[str] = Query(default=[]),  # noqa: B008
              combine: Literal["and", "or"] = "and") -> dict:
        chosen = answer(lambda: desk.task(task))
        if reviewer not in chosen.reviewers:
            raise HTTPException(404, f"{reviewer!r} is not a reviewer of task {task!r}.")
        items = desk.queue(task, reviewer, status, concept, labeler, combine)
        return {"items": items, "progress": desk.progress(task)}

    @app.get("/api/inputs/{input_id}")
    def image_boxes(input_id: str, task: str) -> dict:
        checked(INPUT_ID, input_id, "input")
        return {"input_id": input_id, "annotations": answer(lambda: desk.image(task, input_id))}

    @app.get("/images/{input_id}")
    def image(input_id: str) -> Response:
        checked(INPUT_ID, input_id, "input")
        try:
            data = images.read(input_id)
        except KeyError:
            raise HTTPException(404, f"No stored image has the id {input_id}.") from None
        buffer = io.BytesIO()
        load_oriented_rgb(data).save(buffer, format="JPEG", quality=90)  # upright, as the boxes were computed
        return Response(buffer.getvalue(), media_type="image/jpeg")

    @app.post("/api/annotations/{annotation_id}/decision")
    def decide(annotation_id: str, body: Decision) -> dict:
        checked(ANNOTATION_ID, annotation_id, "annotation")
        return answer(lambda: desk.decide(annotation_id, body.decision, body.reviewer))

    @app.post("/api/annotations/{annotation_id}/correct")
    def correct(annotation_id: str, body: Correction) -> dict:
        checked(ANNOTATION_ID, annotation_id, "annotation")
        if body.concept is None and body.box is None:
            raise HTTPException(422, "A correction needs a new concept, a new box, or both.")
        return answer(lambda: desk.decide(annotation_id, "correct", body.reviewer, concept=body.concept,
                                          box=body.box.unit_box() if body.box else None))

    @app.post("/api/inputs/{input_id}/boxes")
    def draw(input_id: str, body: NewBox) -> dict:
        checked(INPUT_ID, input_id, "input")
        return answer(lambda: desk.draw(body.task, input_id, body.concept, body.box.unit_box(), body.reviewer))

    @app.post("/api/inputs/{input_id}/accept-above")
    def accept_all_above(input_id: str, body: AcceptAbove) -> dict:
        checked(INPUT_ID, input_id, "input")
        return answer(lambda: desk.accept_above(body.task, input_id, body.threshold, body.reviewer))

    return app
