"""SQL of the objects gallery: every object annotation of a task, filtered, paged by key, and the task overview."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl

from core.annotations import KIND_SQL, Kind, Status
from core.routing import paths_sql
from core.task_config import LabelingTask
from store.reviews import annotators_sql

if TYPE_CHECKING:
    from store.database import Session

# Gallery order: the most doubtful first (lowest confidence), people's boxes (no confidence) last; the id breaks
# ties, so the key (rank, annotation_id) of a page's last object is where the next page starts.
RANK_SQL = "coalesce(confidence, 2.0)"
FILTERED_COLUMNS = (("status", "status"), ("concept", "concept"), ("labeler", "annotator"))


def object_filter_sql(filters: dict[str, list[str]], combine: str) -> tuple[str, dict[str, Any]]:
    """The gallery's status, concept and labeler filters (each any of its values) combined with `and` or `or`."""
    given = [(name, column) for name, column in FILTERED_COLUMNS if filters.get(name)]
    joiner = " AND " if combine == "and" else " OR "
    sql = joiner.join(f"{column} IN (SELECT unnest(${name}::VARCHAR[]))" for name, column in given) or "TRUE"
    return f"({sql})", {name: filters[name] for name, _ in given}


class ObjectsSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def _matching(self, task: str, filters: dict[str, list[str]], combine: str, min_confidence: float | None,
                  max_confidence: float | None) -> tuple[str, dict[str, Any]]:
        chosen, params = object_filter_sql(filters, combine)
        # A confidence range bounds the model's objects; people's objects (no confidence) pass only without one.
        ranged = ("($min_conf IS NULL OR confidence >= $min_conf) AND ($max_conf IS NULL OR confidence <= $max_conf)")
        return (f"SELECT * FROM annotation_state WHERE task = $task AND {KIND_SQL} = '{Kind.BOX}' "
                f"AND status <> '{Status.RETIRED}' AND {chosen} AND {ranged}",
                {**params, "task": task, "min_conf": min_confidence, "max_conf": max_confidence})

    def page(self, task: str, filters: dict[str, list[str]], combine: str = "and",
             min_confidence: float | None = None, max_confidence: float | None = None,
             after: tuple[float, str] | None = None, limit: int = 60) -> dict[str, Any]:
        """One page of the matching objects (their file, box, concept, status, confidence, every annotator of
        their history), the key the next page starts after (None on the last page), and how many match."""
        matching, params = self._matching(task, filters, combine, min_confidence, max_confidence)
        rank, after_id = after if after else (-1.0, "")
        rows = self.s.df(f"""
            WITH page AS (
                SELECT *, {RANK_SQL} AS rank FROM ({matching})
                WHERE {RANK_SQL} > $rank OR ({RANK_SQL} = $rank AND annotation_id > $after_id)
                ORDER BY rank, annotation_id LIMIT $limit)
            SELECT p.annotation_id, p.input_id, regexp_extract(i.uri, '[^/]*$') AS file, p.concept,
                   p.original_concept, p.status, p.source, p.annotator, p.confidence, p.x1, p.y1, p.x2, p.y2,
                   p.model_id, p.rank, {annotators_sql("p")} AS annotators
            FROM page p JOIN inputs i USING (input_id) ORDER BY p.rank, p.annotation_id""",
            {**params, "rank": rank, "after_id": after_id, "limit": limit})
        total = int(self.s.scalar(f"SELECT count(*) FROM ({matching})", params))
        items = rows.to_dict("records")
        for item in items:
            item["annotators"] = list(item["annotators"])
            for key in ("confidence", "original_concept", "model_id"):
                if item[key] is not None and item[key] != item[key]:  # NaN: no value
                    item[key] = None
        last = items[-1] if len(items) == limit else None
        return {"items": [{k: v for k, v in item.items() if k != "rank"} for item in items], "total": total,
                "next": f"{last['rank']!r}|{last['annotation_id']}" if last else None}

    def matching_ids(self, task: str, filters: dict[str, list[str]], combine: str = "and",
                     min_confidence: float | None = None, max_confidence: float | None = None) -> list[str]:
        """Every matching object's annotation id ("select all N matching")."""
        matching, params = self._matching(task, filters, combine, min_confidence, max_confidence)
        return [a for (a,) in self.s.conn.execute(f"SELECT annotation_id FROM ({matching}) ORDER BY "
                                                  f"{RANK_SQL}, annotation_id", params).fetchall()]

    def box_of(self, annotation_id: str) -> dict[str, Any] | None:
        """The task, input and box of one annotation (what a crop is cut from)."""
        rows = self.s.df("SELECT task, input_id, x1, y1, x2, y2 FROM annotation_state WHERE annotation_id = ?",
                         [annotation_id]).to_dict("records")
        return rows[0] if rows else None

    def overview(self, chosen: LabelingTask) -> dict[str, Any]:
        """A task's row on the tasks page: inputs in its scope and how many it has processed (both without deleted
        inputs), live annotations by status, and review progress (images assigned and reviewed)."""
        task = chosen.name
        live = "input_id NOT IN (SELECT input_id FROM deleted_inputs)"
        in_scope = int(self.s.scalar(f"SELECT count(DISTINCT input_id) FROM input_sources WHERE {paths_sql(chosen)} "
                                     f"AND {live}"))
        processed = int(self.s.scalar(
            f"SELECT count(DISTINCT input_id) FROM (SELECT input_id FROM task_inputs WHERE task = $task UNION ALL "
            f"SELECT input_id FROM annotation_state WHERE task = $task) WHERE {live}", {"task": task}))
        statuses = dict(self.s.conn.execute(
            f"SELECT status, count(*) FROM annotation_state WHERE task = ? AND status <> '{Status.RETIRED}' "
            "GROUP BY 1", [task]).fetchall())
        model = self.s.conn.execute("SELECT model_id FROM task_inputs WHERE task = ? ORDER BY processed_at DESC "
                                    "LIMIT 1", [task]).fetchall()
        return {"inputs": in_scope, "processed": processed, "annotations": {k: int(v) for k, v in statuses.items()},
                "review": self.s.reviews.progress_of(chosen), "model_id": model[0][0] if model else None}

    def unembedded(self, task: str, model_id: str) -> list[dict[str, Any]]:
        """The task's live objects without an embedding by `model_id`: annotation, input and box, by input."""
        return self.s.df(f"""
            SELECT annotation_id, input_id, x1, y1, x2, y2 FROM annotation_state c
            WHERE task = $task AND {KIND_SQL} = '{Kind.BOX}' AND status <> '{Status.RETIRED}' AND NOT EXISTS (
                SELECT 1 FROM object_embeddings e WHERE e.annotation_id = c.annotation_id AND e.model_id = $model)
            ORDER BY input_id, annotation_id""", {"task": task, "model": model_id}).to_dict("records")

    def store_embeddings(self, rows: list[dict[str, Any]]) -> int:
        return self.s.insert("object_embeddings", rows)

    def embedding_stamp(self, task: str, model_id: str) -> tuple[int, Any]:
        """How many embeddings the task's objects have by `model_id`, and the latest: they change together."""
        count, latest = self.s.conn.execute("SELECT count(*), max(embedded_at) FROM object_embeddings WHERE task = ? "
                                            "AND model_id = ?", [task, model_id]).fetchall()[0]
        return int(count), latest

    def embeddings(self, task: str, model_id: str) -> pl.DataFrame:
        """Every embedding of the task's objects by `model_id`: annotation_id, input_id, vector."""
        return self.s.pl("SELECT annotation_id, input_id, vector FROM object_embeddings WHERE task = $task AND "
                         "model_id = $model ORDER BY annotation_id", {"task": task, "model": model_id})

    def live_objects(self, annotation_ids: list[str]) -> list[dict[str, Any]]:
        """Those of the annotations still live, with their input, file, concept, status and confidence."""
        rows = self.s.df(f"""
            SELECT c.annotation_id, c.input_id, regexp_extract(i.uri, '[^/]*$') AS file, c.concept, c.status,
                   c.confidence FROM annotation_state c JOIN inputs i USING (input_id)
            WHERE c.annotation_id IN (SELECT unnest($ids::VARCHAR[])) AND c.status <> '{Status.RETIRED}'""",
            {"ids": annotation_ids})
        rows["confidence"] = rows["confidence"].astype(object).where(rows["confidence"].notna(), None)
        return rows.to_dict("records")
