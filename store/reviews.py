"""SQL of the review family: `review_assignments`, and the queues read from the annotation history."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from core.access import TOKEN_DAYS
from core.annotations import KIND_SQL, Kind, Role, Source, Status
from core.routing import assign_reviewers
from core.task_config import LabelingTask
from store.history import CURRENT

if TYPE_CHECKING:
    from store.database import Session


# An auto-accepted annotation (current state `c`) drawn as a spot check (`s`) that no person has decided yet: it
# waits in the reviewer's queue like the review band, though its status stays SUCCESS until a person rejects
# or corrects it.
# Tokens issued before expiry existed expire as new ones do by default, counted from when they were issued.
TOKEN_EXPIRY = f"coalesce(expires_at, created_at + INTERVAL {TOKEN_DAYS} DAY)"
SPOT_CHECK_PENDING = f"(s.band = 'accept' AND c.status = '{Status.SUCCESS}' AND c.source = '{Source.AUTO}')"
PENDING_SPOT_CHECKS = f"""
    SELECT c.task, c.input_id, c.annotation_id FROM annotation_state c JOIN spot_checks s USING (task, annotation_id)
    WHERE {SPOT_CHECK_PENDING}"""


def current_with_spot_checks(where: str) -> str:
    """The current annotations matching `where` (over `c`), each with `spot_check` (drawn as one) and
    `spot_check_pending` (a spot check still waiting for a person), read from the row itself."""
    return f"""
        SELECT c.*, s.band IS NOT NULL AS spot_check, coalesce({SPOT_CHECK_PENDING}, false) AS spot_check_pending
        FROM ({CURRENT}) c LEFT JOIN spot_checks s ON s.task = c.task AND s.annotation_id = c.annotation_id
        WHERE {where}"""


def annotators_sql(row: str) -> str:
    """Who labelled the annotation `row` (an alias with task, annotation_id and prediction_id): every annotator of
    its events and of the annotations made for the same prediction that a correction replaced (the model's id,
    the importer, each person who decided it), once each, in the order they first acted."""
    return f"""(SELECT list(annotator ORDER BY first_at, annotator) FROM (
        SELECT a.annotator, min(a.event_at) AS first_at FROM annotations a
        WHERE a.annotation_id = {row}.annotation_id
           OR ({row}.prediction_id IS NOT NULL AND a.task = {row}.task AND a.prediction_id = {row}.prediction_id)
        GROUP BY a.annotator))"""


def _none_for_nan(frame: pd.DataFrame, column: str) -> None:
    frame[column] = frame[column].astype(object).where(frame[column].notna(), None)


class ReviewSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def _open_inputs(self, task: str) -> list[str]:
        """The task's inputs holding an undecided review item or a pending spot check."""
        return [i for (i,) in self.s.conn.execute(
            f"SELECT DISTINCT input_id FROM ({CURRENT}) WHERE task = $task AND status = $awaiting UNION "
            f"SELECT input_id FROM ({PENDING_SPOT_CHECKS}) WHERE task = $task ORDER BY 1",
            {"task": task, "awaiting": str(Status.AWAITING_REVIEW)}).fetchall()]

    def assign_new(self, task: LabelingTask, now: datetime) -> int:
        """Give every input holding review items, and no reviewer yet, to one of the task's reviewers."""
        existing = dict(self.s.conn.execute("SELECT input_id, reviewer FROM review_assignments WHERE task = ?",
                                            [task.name]).fetchall())
        fresh = assign_reviewers(existing, self._open_inputs(task.name), task.reviewers) if task.reviewers else {}
        return self.s.insert("review_assignments", [
            {"task": task.name, "input_id": i, "reviewer": r, "assigned_at": now} for i, r in fresh.items()])

    def hand_over(self, task: LabelingTask, now: datetime) -> dict[str, dict[str, int]]:
        """The open inputs of reviewers no longer in the task's list, handed to the remaining reviewers evenly
        (the fewest open images first); decided inputs stay with whoever decided them. Returns, per removed
        reviewer, how many images went to whom."""
        if not task.reviewers:
            return {}
        assigned = dict(self.s.conn.execute("SELECT input_id, reviewer FROM review_assignments WHERE task = ?",
                                            [task.name]).fetchall())
        open_inputs = set(self._open_inputs(task.name))
        leaving = {i: r for i, r in assigned.items() if r not in task.reviewers and i in open_inputs}
        if not leaving:
            return {}
        staying = {i: r for i, r in assigned.items() if i in open_inputs and i not in leaving}
        fresh = assign_reviewers(staying, sorted(leaving), task.reviewers)
        self.s.conn.execute("DELETE FROM review_assignments WHERE task = ? AND input_id IN (SELECT unnest(?))",
                            [task.name, sorted(fresh)])
        self.s.insert("review_assignments", [
            {"task": task.name, "input_id": i, "reviewer": r, "assigned_at": now} for i, r in fresh.items()])
        moved: dict[str, dict[str, int]] = {}
        for input_id, reviewer in fresh.items():
            counts = moved.setdefault(leaving[input_id], {})
            counts[reviewer] = counts.get(reviewer, 0) + 1
        return moved

    def assign(self, task: str, input_id: str, reviewer: str, now: datetime) -> None:
        """Put one input in a reviewer's queue."""
        self.s.insert("review_assignments", [{"task": task, "input_id": input_id, "reviewer": reviewer,
                                              "assigned_at": now}])

    def unassign_inputs(self, input_ids: list[str]) -> int:
        """Take these inputs out of every queue; returns how many queue places they held."""
        held = int(self.s.scalar("SELECT count(*) FROM review_assignments WHERE input_id IN "
                                 "(SELECT unnest(?::VARCHAR[]))", [input_ids]))
        self.s.conn.execute("DELETE FROM review_assignments WHERE input_id IN (SELECT unnest(?::VARCHAR[]))",
                            [input_ids])
        return held

    def assignee(self, task: str, input_id: str) -> str | None:
        """The reviewer whose queue holds the input, if any."""
        rows = self.s.conn.execute("SELECT reviewer FROM review_assignments WHERE task = ? AND input_id = ?",
                                   [task, input_id]).fetchall()
        return rows[0][0] if rows else None

    def issue_token(self, reviewer: str, token_sha256: str, now: datetime, expires_at: datetime,
                    role: Role = Role.REVIEWER) -> None:
        """The reviewer's token (and role) from now until `expires_at`; the earlier one stops working."""
        self.s.conn.execute("DELETE FROM reviewer_tokens WHERE reviewer = ?", [reviewer])
        self.s.insert("reviewer_tokens", [{"reviewer": reviewer, "token_sha256": token_sha256, "created_at": now,
                                           "role": str(role), "expires_at": expires_at}])

    def reviewer_of_token(self, token_sha256: str, now: datetime) -> tuple[str, Role, datetime] | None:
        """Who a token signs in as, their role and when it expires, while it has not expired."""
        rows = self.s.conn.execute(f"SELECT reviewer, coalesce(role, ?), {TOKEN_EXPIRY} FROM reviewer_tokens "
                                   f"WHERE token_sha256 = ? AND {TOKEN_EXPIRY} > ?",
                                   [str(Role.REVIEWER), token_sha256, now]).fetchall()
        return (rows[0][0], Role(rows[0][1]), rows[0][2]) if rows else None

    def revoke_token(self, reviewer: str, now: datetime) -> bool:
        """End the reviewer's token now (the row stays: it says when it was issued and ended); False when they
        hold none that is current."""
        current = self.s.conn.execute(f"SELECT count(*) FROM reviewer_tokens WHERE reviewer = ? AND "
                                      f"{TOKEN_EXPIRY} > ?", [reviewer, now]).fetchone()
        if not current or not current[0]:
            return False
        self.s.conn.execute("UPDATE reviewer_tokens SET expires_at = ? WHERE reviewer = ?", [now, reviewer])
        return True

    def progress(self, task: str) -> dict[str, dict[str, int]]:
        """Per reviewer: inputs assigned, and how many of them hold no undecided review item (`reviewed`,
        also given as `done`, the name the status contract uses)."""
        rows = self.s.conn.execute(f"""
            SELECT r.reviewer, count(*) AS assigned,
                   count(*) FILTER (WHERE NOT EXISTS (
                       SELECT 1 FROM ({CURRENT}) c
                       WHERE c.task = r.task AND c.input_id = r.input_id AND c.status = ?) AND NOT EXISTS (
                       SELECT 1 FROM ({PENDING_SPOT_CHECKS}) p WHERE p.task = r.task AND p.input_id = r.input_id))
                       AS reviewed
            FROM review_assignments r WHERE r.task = ? GROUP BY 1 ORDER BY 1""",
            [str(Status.AWAITING_REVIEW), task]).fetchall()
        return {reviewer: {"assigned": int(assigned), "reviewed": int(reviewed), "done": int(reviewed)}
                for reviewer, assigned, reviewed in rows}

    def progress_of(self, task: LabelingTask) -> dict[str, dict[str, int]]:
        """`progress`, or for a consensus task its reviewers' and adjudicators' (each image counted once per
        person it went to)."""
        return self.s.consensus.progress(task.name) if task.consensus else self.progress(task.name)

    def inputs_with_two_reviewers(self, batch: str) -> int:
        return len(self.s.conn.execute(
            "SELECT task, input_id FROM review_assignments WHERE input_id IN (SELECT input_id FROM task_inputs "
            "WHERE batch = ?) GROUP BY 1, 2 HAVING count(DISTINCT reviewer) > 1", [batch]).fetchall())

    def image_annotations(self, task: str, input_id: str, tracker: str | None = None) -> list[dict[str, Any]]:
        """Every live (not retired) annotation of one image, as the review page draws them; with the task's
        `tracker`, each tracked one's video, track id and how many live annotations of the task the track has; for
        one a label audit sent to review and still waiting, what it suspected (`suspected`) and why."""
        rows = self.s.df(
            "SELECT c.annotation_id, coalesce(c.kind, 'box') AS kind, c.concept, c.original_concept, c.confidence, "
            "c.status, c.source, c.annotator, c.x1, c.y1, c.x2, c.y2, c.polygon, c.spot_check, c.spot_check_pending, "
            "c.model_id, " + annotators_sql("c") + " AS annotators, CASE WHEN c.status = $awaiting THEN "
            "'suspected: ' || u.kind END AS suspected, CASE WHEN c.status = $awaiting THEN u.evidence END AS "
            "suspected_because, t.video_id, t.track_id, (SELECT count(*) FROM "
            "annotation_state o JOIN prediction_tracks u ON u.prediction_id = o.prediction_id AND u.model_id = "
            "o.model_id WHERE o.task = $task AND o.status <> $retired AND u.tracker = $tracker AND u.video_id = "
            "t.video_id AND u.track_id = t.track_id) AS track_frames FROM ("
            + current_with_spot_checks("c.task = $task AND c.input_id = $input AND c.status <> $retired")
            + ") c LEFT JOIN prediction_tracks t ON t.prediction_id = c.prediction_id AND t.model_id = c.model_id "
            "AND t.tracker = $tracker LEFT JOIN audit_sends u ON u.task = c.task AND u.annotation_id = "
            "c.annotation_id ORDER BY coalesce(c.kind, 'box'), c.confidence DESC NULLS LAST, c.x1, c.y1, "
            "c.annotation_id",
            {"task": task, "input": input_id, "retired": str(Status.RETIRED), "tracker": tracker,
             "awaiting": str(Status.AWAITING_REVIEW)})
        for column in ("confidence", "original_concept", "model_id", "video_id", "suspected", "suspected_because"):
            _none_for_nan(rows, column)
        rows["track_id"] = rows["track_id"].astype(object).where(rows["track_id"].notna(), None)
        rows["track_id"] = [None if t is None else int(t) for t in rows["track_id"]]
        records = rows.to_dict("records")
        for record in records:
            record["annotators"] = list(record["annotators"])
            record["polygon"] = None if record["polygon"] is None or not hasattr(record["polygon"], "__len__") \
                else [float(v) for v in record["polygon"]]
        return records

    def queue(self, task: LabelingTask, reviewer: str, statuses: list[str] | None = None,
              concepts: list[str] | None = None, labelers: list[str] | None = None,
              combine: str = "and") -> list[dict[str, Any]]:
        """The reviewer's images, most doubtful first: the smallest distance of any box still awaiting review
        to its concept's upper or lower threshold. Filters on status, concept and labeler (annotator) combine
        with `and` (one box matches all given filters) or `or` (one box matches any)."""
        rules = pd.DataFrame([r.model_dump() for r in task.rules()])[["concept", "upper", "lower"]]
        conditions = [(column, values) for column, values in (("status", statuses), ("concept", concepts),
                                                              ("annotator", labelers)) if values]
        joiner = " AND " if combine == "and" else " OR "
        matching = joiner.join(f"c.{column} IN (SELECT unnest(${column}))" for column, _ in conditions) or "TRUE"
        params = {"task": task.name, "reviewer": reviewer, "awaiting": str(Status.AWAITING_REVIEW),
                  "box_kind": str(Kind.BOX), "concept_kind": str(Kind.CONCEPT),
                  "retired": str(Status.RETIRED), **{column: values for column, values in conditions}}
        with self.s.registered("review_rules", rules):
            rows = self.s.df(f"""
                WITH current AS ({current_with_spot_checks("c.task = $task AND c.status <> $retired")})
                SELECT r.input_id,
                       (SELECT regexp_extract(i.uri, '[^/]*$') FROM inputs i WHERE i.input_id = r.input_id) AS file,
                       count(c.annotation_id) FILTER (WHERE c.status = $awaiting OR c.spot_check_pending) AS pending,
                       count(c.annotation_id) FILTER (WHERE coalesce(c.kind, 'box') = $box_kind) AS boxes,
                       count(c.annotation_id) FILTER (WHERE c.kind = $concept_kind) AS concepts,
                       min(least(abs(c.confidence - q.upper), abs(c.confidence - q.lower)))
                           FILTER (WHERE c.status = $awaiting) AS doubt
                FROM review_assignments r
                LEFT JOIN current c ON c.input_id = r.input_id
                LEFT JOIN review_rules q ON q.concept = c.concept
                WHERE r.task = $task AND r.reviewer = $reviewer
                  AND EXISTS (SELECT 1 FROM current c WHERE c.input_id = r.input_id AND ({matching}))
                GROUP BY r.input_id
                ORDER BY pending = 0, doubt NULLS LAST, r.input_id""", params)
        _none_for_nan(rows, "doubt")
        return rows.to_dict("records")

    def input_in_tasks(self, input_id: str, tasks: list[str]) -> bool:
        """Whether any of `tasks` routed, annotated or queued the input."""
        return bool(self.s.conn.execute(
            "SELECT 1 FROM task_inputs WHERE input_id = $i AND task IN (SELECT unnest($t)) UNION ALL "
            "SELECT 1 FROM annotation_state WHERE input_id = $i AND task IN (SELECT unnest($t)) UNION ALL "
            "SELECT 1 FROM review_assignments WHERE input_id = $i AND task IN (SELECT unnest($t)) LIMIT 1",
            {"i": input_id, "t": tasks}).fetchall())

    def undecided(self, task: str, reviewer: str) -> list[dict[str, Any]]:
        """Every item of the reviewer's queue still waiting for a decision (boxes and image-level concepts in the
        review band, and spot checks), with the annotation id that accept / reject / relabel take."""
        rows = self.s.df(f"""
            SELECT c.annotation_id, c.input_id, regexp_extract(i.uri, '[^/]*$') AS file,
                   {KIND_SQL} AS kind, c.concept, c.confidence, c.status, c.spot_check
            FROM ({current_with_spot_checks("c.task = $task AND (c.status = $awaiting OR " + SPOT_CHECK_PENDING
                                            + " IS TRUE)")}) c
            JOIN review_assignments r ON r.task = c.task AND r.input_id = c.input_id AND r.reviewer = $reviewer
            JOIN inputs i ON i.input_id = c.input_id
            ORDER BY file, c.input_id, kind, c.confidence DESC NULLS LAST, c.annotation_id""",
            {"task": task, "reviewer": reviewer, "awaiting": str(Status.AWAITING_REVIEW)})
        _none_for_nan(rows, "confidence")
        return rows.to_dict("records")
