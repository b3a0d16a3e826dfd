"""SQL of consensus review: `consensus_assignments`, `consensus_decisions`, `consensus_outcomes`."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from core.annotations import Status
from core.consensus import assign_reviewers_k
from core.task_config import LabelingTask
from store.reviews import PENDING_SPOT_CHECKS

if TYPE_CHECKING:
    import pandas as pd

    from store.database import Session


class ConsensusSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def items(self, task: str, input_id: str | None = None) -> pd.DataFrame:
        """A consensus task's items still waiting for its reviewers: annotations awaiting review and pending spot
        checks, with no outcome yet (of one input, or all)."""
        return self.s.df(f"""
            SELECT c.* FROM annotation_state c
            WHERE c.task = $task AND ($input IS NULL OR c.input_id = $input)
              AND (c.status = '{Status.AWAITING_REVIEW}' OR c.annotation_id IN (
                       SELECT annotation_id FROM ({PENDING_SPOT_CHECKS}) WHERE task = $task))
              AND c.annotation_id NOT IN (SELECT annotation_id FROM consensus_outcomes WHERE task = $task)
            ORDER BY c.annotation_id""", {"task": task, "input": input_id})

    def holders(self, task: str, input_id: str, role: str = "review") -> list[str]:
        return [r for (r,) in self.s.conn.execute(
            "SELECT reviewer FROM consensus_assignments WHERE task = ? AND input_id = ? AND role = ? ORDER BY 1",
            [task, input_id, role]).fetchall()]

    def assign_new(self, task: LabelingTask, now: datetime) -> int:
        """Every image holding consensus items gets its reviewers_per_image reviewers (the fewest-loaded first),
        and every image holding items awaiting consensus review an adjudicator; returns the places given."""
        assert task.consensus is not None
        rows: list[dict[str, Any]] = []
        for role, people, needed, status_sql in (
                ("review", task.reviewers, task.consensus.reviewers_per_image, None),
                ("adjudicate", task.consensus.adjudicators, 1, f"'{Status.AWAITING_CONSENSUS_REVIEW}'")):
            held: dict[str, list[str]] = {}
            for input_id, reviewer in self.s.conn.execute(
                    "SELECT input_id, reviewer FROM consensus_assignments WHERE task = ? AND role = ? ORDER BY 1, 2",
                    [task.name, role]).fetchall():
                held.setdefault(input_id, []).append(reviewer)
            if status_sql is None:
                open_inputs = sorted(set(self.items(task.name)["input_id"]))
            else:
                open_inputs = [i for (i,) in self.s.conn.execute(
                    f"SELECT DISTINCT input_id FROM annotation_state WHERE task = ? AND status = {status_sql}",
                    [task.name]).fetchall()]
            fresh = assign_reviewers_k(held, open_inputs, people, needed)
            rows += [{"task": task.name, "input_id": i, "reviewer": r, "role": role, "assigned_at": now}
                     for i, added in fresh.items() for r in added]
        return self.s.insert("consensus_assignments", rows)

    def record(self, row: dict[str, Any]) -> None:
        """A reviewer's decision on an item; deciding again replaces their earlier one."""
        self.s.conn.execute("DELETE FROM consensus_decisions WHERE task = ? AND annotation_id = ? AND reviewer = ?",
                            [row["task"], row["annotation_id"], row["reviewer"]])
        self.s.insert("consensus_decisions", [row])

    def decisions(self, task: str, input_id: str) -> pd.DataFrame:
        return self.s.df("SELECT * FROM consensus_decisions WHERE task = ? AND input_id = ? ORDER BY decided_at, "
                         "reviewer, annotation_id", [task, input_id])

    def own_decisions(self, task: str, input_id: str, reviewer: str) -> dict[str, dict[str, Any]]:
        """One reviewer's decisions on an image, by item: what their page shows them (never the others')."""
        rows = self.s.df("SELECT * FROM consensus_decisions WHERE task = ? AND input_id = ? AND reviewer = ?",
                         [task, input_id, reviewer]).to_dict("records")
        return {row["annotation_id"]: row for row in rows}

    def record_outcomes(self, rows: list[dict[str, Any]]) -> int:
        return self.s.insert("consensus_outcomes", rows)

    def outcomes(self, task: str) -> pd.DataFrame:
        return self.s.df("SELECT * FROM consensus_outcomes WHERE task = ? ORDER BY resolved_at, annotation_id",
                         [task])

    def progress(self, task: str) -> dict[str, dict[str, int]]:
        """Per reviewer and adjudicator: images held, and how many of them still wait for them (an item they have
        not decided; for an adjudicator, an item awaiting consensus review)."""
        rows = self.s.conn.execute(f"""
            SELECT a.reviewer, a.role, count(*) AS held,
                   count(*) FILTER (WHERE CASE WHEN a.role = 'adjudicate' THEN EXISTS (
                       SELECT 1 FROM annotation_state c WHERE c.task = a.task AND c.input_id = a.input_id
                       AND c.status = '{Status.AWAITING_CONSENSUS_REVIEW}')
                   ELSE EXISTS (
                       SELECT 1 FROM annotation_state c WHERE c.task = a.task AND c.input_id = a.input_id
                       AND c.status = '{Status.AWAITING_REVIEW}'
                       AND c.annotation_id NOT IN (SELECT annotation_id FROM consensus_outcomes WHERE task = a.task)
                       AND NOT EXISTS (SELECT 1 FROM consensus_decisions d WHERE d.task = a.task
                                       AND d.annotation_id = c.annotation_id AND d.reviewer = a.reviewer)) END)
                   AS waiting
            FROM consensus_assignments a WHERE a.task = ? GROUP BY 1, 2 ORDER BY 2 DESC, 1""", [task]).fetchall()
        return {f"{reviewer}" + (" (adjudicator)" if role == "adjudicate" else ""):
                {"assigned": int(held), "waiting": int(waiting), "reviewed": int(held - waiting)}
                for reviewer, role, held, waiting in rows}

    def queue(self, task: str, reviewer: str) -> list[dict[str, Any]]:
        """The reviewer's (or adjudicator's) images of a consensus task: for a reviewer, the items they have not
        decided; for an adjudicator, the items awaiting consensus review."""
        rows = self.s.df(f"""
            WITH mine AS (SELECT input_id, role FROM consensus_assignments WHERE task = $task AND reviewer = $me),
            open AS ({self._open_items_sql()})
            SELECT * FROM (SELECT m.input_id,
                   (SELECT regexp_extract(i.uri, '[^/]*$') FROM inputs i WHERE i.input_id = m.input_id) AS file,
                   (SELECT count(*) FROM open o WHERE o.input_id = m.input_id AND o.role = m.role) AS pending,
                   (SELECT count(*) FROM annotation_state c WHERE c.task = $task AND c.input_id = m.input_id
                    AND coalesce(c.kind, 'box') = 'box' AND c.status <> '{Status.RETIRED}') AS boxes,
                   (SELECT count(*) FROM annotation_state c WHERE c.task = $task AND c.input_id = m.input_id
                    AND c.kind = 'concept' AND c.status <> '{Status.RETIRED}') AS concepts,
                   NULL::DOUBLE AS doubt
            FROM mine m) ORDER BY pending = 0, input_id""", {"task": task, "me": reviewer})
        rows["doubt"] = None
        return rows.to_dict("records")

    def _open_items_sql(self) -> str:
        """Per role, the items waiting for `$me` on the task's images ($task): undecided by them, or awaiting
        consensus review."""
        return f"""
            SELECT c.input_id, c.annotation_id, 'review' AS role FROM annotation_state c
            WHERE c.task = $task AND (c.status = '{Status.AWAITING_REVIEW}' OR c.annotation_id IN (
                      SELECT annotation_id FROM ({PENDING_SPOT_CHECKS}) WHERE task = $task))
              AND c.annotation_id NOT IN (SELECT annotation_id FROM consensus_outcomes WHERE task = $task)
              AND NOT EXISTS (SELECT 1 FROM consensus_decisions d WHERE d.task = $task
                              AND d.annotation_id = c.annotation_id AND d.reviewer = $me)
            UNION ALL SELECT input_id, annotation_id, 'adjudicate' FROM annotation_state
            WHERE task = $task AND status = '{Status.AWAITING_CONSENSUS_REVIEW}'"""

    def undecided(self, task: str, reviewer: str) -> list[dict[str, Any]]:
        """Every item waiting for the reviewer (or adjudicator) on their images, with the id decisions take."""
        rows = self.s.df(f"""
            WITH open AS ({self._open_items_sql()})
            SELECT c.annotation_id, c.input_id, regexp_extract(i.uri, '[^/]*$') AS file,
                   coalesce(c.kind, 'box') AS kind, c.concept, c.confidence, c.status, false AS spot_check
            FROM open o JOIN consensus_assignments a ON a.task = $task AND a.input_id = o.input_id
                 AND a.reviewer = $me AND a.role = o.role
            JOIN annotation_state c ON c.annotation_id = o.annotation_id JOIN inputs i ON i.input_id = c.input_id
            ORDER BY file, c.input_id, kind, c.confidence DESC NULLS LAST, c.annotation_id""",
            {"task": task, "me": reviewer})
        rows["confidence"] = rows["confidence"].astype(object).where(rows["confidence"].notna(), None)
        return rows.to_dict("records")

    def agreement_inputs(self, task: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """The reviewers' decisions on the task's items, and each resolved item's final status: the quorum's, or
        the adjudicator's (a correction counts as accepted)."""
        decisions = self.s.df("SELECT annotation_id, reviewer, decision, concept, x1, y1, x2, y2 FROM "
                              "consensus_decisions WHERE task = ? ORDER BY 1, 2", [task]).to_dict("records")
        finals = dict(self.s.conn.execute(f"""
            SELECT o.annotation_id, CASE WHEN o.status <> '{Status.AWAITING_CONSENSUS_REVIEW}' THEN o.status
                                         WHEN c.status = '{Status.RETIRED}' THEN '{Status.SUCCESS}' ELSE c.status END
            FROM consensus_outcomes o JOIN annotation_state c USING (annotation_id)
            WHERE o.task = ? AND (o.status <> '{Status.AWAITING_CONSENSUS_REVIEW}'
                                  OR c.status IN ('{Status.SUCCESS}', '{Status.REJECTED}', '{Status.RETIRED}'))""",
            [task]).fetchall())
        return decisions, finals
