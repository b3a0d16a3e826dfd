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

from assets.image_checks import load_oriented_rgb
from assets.review import (
    ReviewError,
    accept_above,
    add_missed_box,
    image_annotations,
    record_decision,
    review_queue,
)
from assets.task_config import LabelingTask
from assets.triage import review_queues
from resources.image_store import ImageStore
from resources.store import DatabaseLockedError, DuckDBStore

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

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


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


def create_app(store: DuckDBStore, images: ImageStore, tasks: list[LabelingTask]) -> FastAPI:
    app = FastAPI(title="autoannotate review", docs_url=None, redoc_url=None)
    by_name = {task.name: task for task in tasks}

    def task_of(name: str) -> LabelingTask:
        if name not in by_name:
            raise HTTPException(404, f"No task named {name!r}.")
        return by_name[name]

    def checked(pattern: re.Pattern, value: str, what: str) -> str:
        if not pattern.match(value):
            raise HTTPException(404, f"{value!r} is not a{'n' if what[0] in 'ai' else ''} {what} id.")
        return value

    def save(work):
        try:
            return store.write(work)
        except ReviewError as error:
            raise HTTPException(404 if str(error).startswith("No ") else 409, str(error)) from None
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
        chosen = task_of(task)
        if reviewer not in chosen.reviewers:
            raise HTTPException(404, f"{reviewer!r} is not a reviewer of task {task!r}.")
        with store.transaction() as conn:
            items = review_queue(conn, chosen, reviewer, status, concept, labeler, combine)
        progress = review_queues(store, task)
        return {"items": items, "progress": progress}

    @app.get("/api/inputs/{input_id}")
    def image_boxes(input_id: str, task: str) -> dict:
        checked(INPUT_ID, input_id, "input")
        with store.transaction() as conn:
            if not conn.execute("SELECT 1 FROM inputs WHERE input_id = ?", [input_id]).fetchall():
                raise HTTPException(404, f"No input has the id {input_id}.")
            boxes = image_annotations(conn, task_of(task).name, input_id)
        return {"input_id": input_id, "annotations": boxes}

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
        return save(lambda conn: record_decision(conn, annotation_id, body.decision, body.reviewer))

    @app.post("/api/annotations/{annotation_id}/correct")
    def correct(annotation_id: str, body: Correction) -> dict:
        checked(ANNOTATION_ID, annotation_id, "annotation")
        if body.concept is None and body.box is None:
            raise HTTPException(422, "A correction needs a new concept, a new box, or both.")

        def work(conn):
            found = conn.execute("SELECT task FROM annotations WHERE annotation_id = ? LIMIT 1",
                                 [annotation_id]).fetchall()
            if not found:
                raise ReviewError(f"No annotation has the id {annotation_id!r}.")
            task = task_of(found[0][0])
            if body.concept is not None and body.concept not in task.concepts:
                raise HTTPException(422, f"{body.concept!r} is not a concept of task {task.name!r}.")
            return record_decision(conn, annotation_id, "correct", body.reviewer, concept=body.concept,
                                   box=body.box.as_tuple() if body.box else None)

        return save(work)

    @app.post("/api/inputs/{input_id}/boxes")
    def draw(input_id: str, body: NewBox) -> dict:
        checked(INPUT_ID, input_id, "input")
        if body.concept not in task_of(body.task).concepts:
            raise HTTPException(422, f"{body.concept!r} is not a concept of task {body.task!r}.")
        return save(lambda conn: add_missed_box(conn, body.task, input_id, body.concept, body.box.as_tuple(),
                                                body.reviewer))

    @app.post("/api/inputs/{input_id}/accept-above")
    def accept_all_above(input_id: str, body: AcceptAbove) -> dict:
        checked(INPUT_ID, input_id, "input")
        task_of(body.task)
        return save(lambda conn: accept_above(conn, body.task, input_id, body.threshold, body.reviewer))

    return app
