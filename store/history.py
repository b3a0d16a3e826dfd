"""The annotation history: an append-only table of status events, and the only code that reads or
writes it. Current state = the latest event per annotation; state as of T = the latest event at or
before T. Statuses, sources, the event type and id derivations are in `core.annotations`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import polars as pl

from core.annotations import EVENT_FIELDS, HELD_STATUSES, KIND_SQL, AnnotationEvent, Kind, Source, Status
from core.quality import greedy_pairs
from core.results import Routed
from core.review_rules import NotFound
from core.routing import routed_sql, scope_sql
from core.task_config import LabelingTask
from store.predictions import BATCH_PREDICTIONS
from store.tables import latest_events_sql
from store.tracks import track_confidence_sql

if TYPE_CHECKING:
    from store.database import Session


def digest32_sql(*expressions: str) -> str:
    """`core.annotations.digest32` in SQL, for ids derived inside the database."""
    return f"substr(sha256(concat_ws('|', {', '.join(expressions)})), 1, 32)"


def target_annotation_sql(task_literal: str) -> str:
    """The annotation a routed prediction `r` moves (`matched_predictions` as `m`): the existing one it matched,
    else its own."""
    return f"coalesce(m.annotation_id, {digest32_sql(task_literal, 'r.prediction_id')})"


HELD_SQL = ", ".join(f"'{status}'" for status in HELD_STATUSES)


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Two live boxes of one concept overlapping this much on one image are one object labelled twice.
DUPLICATE_IOU = 0.9

# Current state: the `annotation_state` table, which every append keeps equal to the latest events.
CURRENT = "SELECT * FROM annotation_state"
EVENT_ID_SQL = digest32_sql("annotation_id", "status", "source", "annotator",
                            "strftime(event_at, '%Y-%m-%dT%H:%M:%S.%f')")


def _filters(**values: object) -> tuple[str, dict[str, Any]]:
    """`column = $column` (or `IN`, for lists) for every given value; None means no filter."""
    given = {k: v for k, v in values.items() if v is not None}
    clauses = [f"{k} IN (SELECT unnest(${k}))" if isinstance(v, list | tuple) else f"{k} = ${k}"
               for k, v in given.items()]
    params = {k: [str(x) for x in v] if isinstance(v, list | tuple) else v for k, v in given.items()}
    return " AND ".join(clauses) or "TRUE", params


def event_from_row(row: dict[str, Any]) -> AnnotationEvent:
    values = {f: row[f] for f in EVENT_FIELDS}
    values["status"], values["source"] = Status(values["status"]), Source(values["source"])
    values["kind"] = Kind(values["kind"]) if isinstance(values["kind"], str) else Kind.BOX
    for name in ("prediction_id", "model_id", "batch", "confidence", "rules", "original_concept"):
        if values[name] is not None and pd.isna(values[name]):
            values[name] = None
    # A list column comes back as a numpy array, or as a missing-value scalar when NULL.
    polygon = values["polygon"]
    values["polygon"] = [float(v) for v in polygon] if hasattr(polygon, "__len__") else None
    return AnnotationEvent(**values)


class AnnotationHistory:
    def __init__(self, session: Session) -> None:
        self.s = session

    # ------------------------------------------------------------------ reading

    def current(self, *, task: str | None = None, input_id: str | None = None, batch: str | None = None,
                status: Iterable[str] | None = None, source: str | None = None,
                min_confidence: float | None = None, kind: Kind | None = None) -> pd.DataFrame:
        """Current state of the annotations matching every given filter (statuses: any of them)."""
        where, params = _filters(task=task, input_id=input_id, batch=batch, source=source,
                                 status=list(status) if status is not None else None)
        if kind is not None:
            where += f" AND {KIND_SQL} = $kind"
            params["kind"] = str(kind)
        if min_confidence is not None:
            where += " AND confidence >= $min_confidence"
            params["min_confidence"] = min_confidence
        return self.s.df(f"SELECT * FROM ({CURRENT}) WHERE {where} ORDER BY x1, y1, annotation_id", params)

    def current_one(self, annotation_id: str) -> AnnotationEvent:
        rows = self.s.df(f"{CURRENT} WHERE annotation_id = $id", {"id": annotation_id})
        if rows.empty:
            raise NotFound(f"No annotation has the id {annotation_id!r}.")
        return event_from_row(rows.iloc[0].to_dict())

    def current_many(self, annotation_ids: list[str]) -> list[AnnotationEvent]:
        """The current state of each annotation, in the order given; `NotFound` names the first unknown id."""
        rows = self.s.df(f"{CURRENT} WHERE annotation_id IN (SELECT unnest($ids::VARCHAR[]))", {"ids": annotation_ids})
        found = {row["annotation_id"]: event_from_row(row) for row in rows.to_dict("records")}
        missing = [a for a in annotation_ids if a not in found]
        if missing:
            raise NotFound(f"No annotation has the id {missing[0]!r}.")
        return [found[a] for a in dict.fromkeys(annotation_ids)]

    def status_before_last(self, annotation_id: str) -> Status | None:
        """The status the annotation had before its latest event (None: the latest is its first)."""
        rows = self.s.conn.execute("SELECT status FROM annotations WHERE annotation_id = ? "
                                   "ORDER BY event_at DESC, seq DESC LIMIT 1 OFFSET 1", [annotation_id]).fetchall()
        return Status(rows[0][0]) if rows else None

    def as_of(self, task: str, cutoff: datetime, status: Status = Status.SUCCESS) -> pd.DataFrame:
        """The annotations of `task` whose latest event before `cutoff` has `status`."""
        return self.s.df(*self.as_of_sql(task, cutoff, status))

    def as_of_sql(self, task: str, cutoff: datetime, status: Status = Status.SUCCESS) -> tuple[str, dict[str, Any]]:
        """`as_of` as a query and its parameters, for reading it inside the database."""
        state, params = self.state_as_of_sql(task, cutoff)
        return f"SELECT * FROM ({state}) WHERE status = $status", {**params, "status": str(status)}

    def state_as_of_sql(self, task: str, cutoff: datetime) -> tuple[str, dict[str, Any]]:
        """The latest event before `cutoff` of each annotation of `task`, as a query and its parameters. When
        every event of the task lies before the cutoff (today's version), that is the current state: no window
        over the history."""
        last = self.s.scalar("SELECT max(event_at) FROM annotation_state WHERE task = $task", {"task": task})
        if last is not None and last < cutoff:
            return f"{CURRENT} WHERE task = $task", {"task": task}
        return latest_events_sql("task = $task AND event_at < $cutoff"), {"task": task, "cutoff": cutoff}

    def negatives_sql(self, task: str, cutoff: datetime) -> tuple[str, dict[str, Any]]:
        """The inputs `task` routed for objects (or imported without labels) before `cutoff` that hold no object
        accepted or still to decide as of then: the model found nothing above the lower threshold, people rejected
        what it found, or a labelled dataset had no label for the image. (An image with an open review item is
        not a negative yet; an input deleted before `cutoff` is none.) Columns: input_id, and `by_person`: a person
        made it a negative (imported without
        labels, or a person decided a box of it and none is left), not only the model's silence."""
        state, params = self.state_as_of_sql(task, cutoff)
        return (f"SELECT input_id, bool_or(by_person) OR input_id IN (SELECT input_id FROM ({state}) "
                f"WHERE {KIND_SQL} = '{Kind.BOX}' AND source <> '{Source.AUTO}') AS by_person FROM ("
                f"SELECT input_id, processed_at AS since, false AS by_person FROM task_inputs WHERE task = $task "
                f"UNION ALL SELECT input_id, recorded_at, true FROM empty_inputs WHERE task = $task) "
                f"WHERE since < $cutoff AND input_id NOT IN (SELECT input_id FROM ({state}) "
                f"WHERE {KIND_SQL} = '{Kind.BOX}' AND status IN ({HELD_SQL})) "
                f"AND input_id NOT IN (SELECT input_id FROM deleted_inputs WHERE deleted_at < $cutoff) "
                "GROUP BY input_id",
                {**params, "cutoff": cutoff})

    def tasks(self) -> list[str]:
        return [t for (t,) in self.s.conn.execute("SELECT DISTINCT task FROM annotations ORDER BY 1").fetchall()]

    def record_empty(self, task: str, input_ids: list[str], batch: str, annotator: str, now: datetime,
                     kind: Kind = Kind.BOX) -> int:
        """Images a person found nothing of `kind` on (imported without labels: no object, or none of the task's
        image-level concepts), once per task and image."""
        table = "empty_inputs" if kind == Kind.BOX else "no_concept_inputs"
        known = {i for (i,) in self.s.conn.execute(f"SELECT input_id FROM {table} WHERE task = ?",
                                                   [task]).fetchall()}
        return self.s.insert(table, [{"task": task, "input_id": i, "batch": batch, "annotator": annotator,
                                      "recorded_at": now} for i in sorted(set(input_ids) - known)])

    def known_ids(self, task: str) -> set[str]:
        return {a for (a,) in self.s.conn.execute(
            "SELECT DISTINCT annotation_id FROM annotations WHERE task = ?", [task]).fetchall()}

    def exists(self, annotation_id: str) -> bool:
        return bool(self.s.conn.execute("SELECT 1 FROM annotations WHERE annotation_id = ? LIMIT 1",
                                        [annotation_id]).fetchall())

    def counts(self, task: str | None = None) -> pd.DataFrame:
        """Current live annotations (retired ones left out) by kind, concept and status."""
        return self.s.df(f"SELECT {KIND_SQL} AS kind, concept, status, count(*) AS n FROM ({CURRENT}) "
                         "WHERE status <> 'RETIRED' AND ($task IS NULL OR task = $task) GROUP BY ALL ORDER BY ALL",
                         {"task": task})

    def bad_boxes(self, batch: str) -> int:
        return int(self.s.scalar("SELECT count(*) FROM annotations WHERE batch = ? AND NOT (0 <= x1 AND x1 < x2 "
                                 "AND x2 <= 1 AND 0 <= y1 AND y1 < y2 AND y2 <= 1)", [batch]))

    def overlapping_live_pairs(self, batch: str, iou: float = DUPLICATE_IOU, limit: int = 10) -> pd.DataFrame:
        """Pairs of live box annotations of one task, image and concept that overlap with IoU >= `iou`, on the
        inputs of `batch` (its own and those any path wrote on its images): one object with two labels."""
        return self.s.df(f"""
            WITH touched AS (SELECT input_id FROM task_inputs WHERE batch = $batch
                             UNION SELECT input_id FROM annotation_state WHERE batch = $batch),
            live AS (SELECT task, input_id, concept, annotation_id, x1, y1, x2, y2 FROM annotation_state
                     WHERE input_id IN (SELECT input_id FROM touched) AND status IN ({HELD_SQL})
                       AND {KIND_SQL} = '{Kind.BOX}'),
            pairs AS (
                SELECT a.task, a.input_id, a.concept, a.annotation_id AS first, b.annotation_id AS second,
                       greatest(least(a.x2, b.x2) - greatest(a.x1, b.x1), 0)
                       * greatest(least(a.y2, b.y2) - greatest(a.y1, b.y1), 0) AS inter,
                       (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) AS areas
                FROM live a JOIN live b ON a.task = b.task AND a.input_id = b.input_id AND a.concept = b.concept
                     AND a.annotation_id < b.annotation_id)
            SELECT task, input_id, concept, first, second, round(inter / (areas - inter), 4) AS iou FROM pairs
            WHERE inter > 0 AND inter / (areas - inter) >= $iou ORDER BY ALL LIMIT $limit""",
            {"batch": batch, "iou": iou, "limit": limit})

    def state_differences(self, batch: str) -> int:
        """Annotations of `batch` whose stored current state is not their latest event (0 when consistent)."""
        return int(self.s.scalar(f"""
            WITH stored AS (SELECT annotation_id, event_id FROM annotation_state WHERE batch = $batch),
                 derived AS (SELECT annotation_id, event_id FROM ({latest_events_sql('batch = $batch')}))
            SELECT count(DISTINCT annotation_id) FROM (
                (SELECT * FROM stored EXCEPT SELECT * FROM derived)
                UNION ALL (SELECT * FROM derived EXCEPT SELECT * FROM stored))""", {"batch": batch}))

    # ------------------------------------------------------------------ writing

    def append(self, events: list[AnnotationEvent] | pd.DataFrame | pl.DataFrame) -> int:
        """Append events with their derived event ids, leaving out events already stored (a decision sent
        twice is written once); returns how many were written."""
        if isinstance(events, list):
            if not events:
                return 0
            events = pd.DataFrame([e.as_row() for e in events], columns=EVENT_FIELDS)
        if len(events) == 0:
            return 0
        # People's and imported events carry no routing rules; frames without a kind hold boxes.
        for column, value in (("rules", None), ("kind", str(Kind.BOX)), ("original_concept", None)):
            if column not in events.columns:
                events = (events.with_columns(pl.lit(value, dtype=pl.Utf8).alias(column))
                          if isinstance(events, pl.DataFrame) else events.assign(**{column: value}))
        with self.s.registered("appended_events", events):
            return self._append_relation("appended_events")

    def retire_inputs(self, input_ids: list[str], by: str, now: datetime) -> dict[str, int]:
        """Every live annotation of these inputs, in every task, retired by `by` (a person's event, so no re-run
        brings it back); returns how many per task."""
        retired = self.s.pl(f"""
            SELECT * EXCLUDE (event_id, seq) REPLACE ('{Status.RETIRED}' AS status, '{Source.REVIEW}' AS source,
                                                      $by AS annotator, $now AS event_at)
            FROM annotation_state WHERE input_id IN (SELECT unnest($ids::VARCHAR[])) AND status <> '{Status.RETIRED}'
            """, {"ids": input_ids, "by": by, "now": now})
        self.append(retired)
        return {task: int(n) for task, n in retired.group_by("task").len().sort("task").iter_rows()}

    def _append_relation(self, relation: str) -> int:
        # Events are numbered after the largest stored one (the same in a DuckDB file and in a DuckLake), in an
        # order that depends on the events only, so a re-run numbers them as a first run did.
        fresh = self.s.pl(f"""
            SELECT *, (SELECT coalesce(max(seq), 0) FROM annotations)
                      + row_number() OVER (ORDER BY event_at, annotation_id, status) AS seq
            FROM (SELECT {EVENT_ID_SQL} AS event_id, {', '.join(EVENT_FIELDS)} FROM {relation}) e
            WHERE NOT EXISTS (SELECT 1 FROM annotations a WHERE a.event_id = e.event_id)""")
        written = self.s.insert("annotations", fresh)
        if written:
            with self.s.registered("touched_annotations", fresh.select("annotation_id").unique()):
                self._refresh_state("annotation_id IN (SELECT annotation_id FROM touched_annotations)")
        return written

    def _refresh_state(self, where: str) -> None:
        """Re-derive the current state of the annotations matching `where` from their events."""
        self.s.conn.execute(f"DELETE FROM annotation_state WHERE {where}")
        self.s.conn.execute(f"INSERT INTO annotation_state BY NAME {latest_events_sql(where)}")

    def sync_auto(self, task: LabelingTask, batch: str, model_id: str, now: datetime,
                  kind: Kind = Kind.BOX) -> Routed:
        """Route the batch's predictions of `model_id` by the task's thresholds and append the events that
        move the task's auto annotations of `kind` there: a changed status, or RETIRED for an annotation no longer
        above the lower band. Annotations with any human event are left alone. Records the task's object
        progress (task_inputs) for the batch and returns the band counts per concept."""
        params = {"batch": batch, "model_id": model_id}
        self.class_names(task.name, task.concepts, now)
        class_names = self.s.predictions.batch_class_names(batch, model_id)
        # One routing query, run inside three statements: re-routing (a CASE per row) measured cheaper than
        # materialising the routed rows into a temp table (1M predictions: ~3.5 s vs ~3.9 s).
        # A task scoped to some inputs routes only theirs: the others' annotations of the task retire.
        relation = f"(SELECT * FROM {BATCH_PREDICTIONS} WHERE {scope_sql(task)})"
        if task.tracker:  # a tracked prediction routes by its track's confidence: the track is one decision
            relation = (f"(SELECT p.* REPLACE (coalesce(t.confidence, p.confidence) AS confidence) FROM {relation} p "
                        f"LEFT JOIN ({track_confidence_sql(task.tracker)}) t USING (prediction_id))")
        routed = routed_sql(task, class_names, relation)
        if not self.s.scalar("SELECT count(*) FROM routing_rules WHERE rules = ?", [task.rules_hash]):
            self.s.insert("routing_rules", [{"rules": task.rules_hash, "task": task.name, "first_used_at": now,
                                             "definition": json.dumps(task.routing_definition(), sort_keys=True)}])
        matches = self._match_existing(task, routed, params, kind)
        with self.s.registered("matched_predictions", matches):
            self._draw_spot_checks(task, routed, params, now)
            self.s.conn.execute(f"CREATE OR REPLACE TEMP TABLE new_events AS {self._auto_events_sql(task, routed)}",
                                {**params, "now": now, "kind": str(kind)})
        appended = self._append_relation("new_events")
        bands = self.s.df(f"SELECT concept, band, count(*) AS n FROM ({routed}) GROUP BY 1, 2", params)
        total = self.s.predictions.batch_count(batch, model_id)
        if kind == Kind.BOX:
            self._record_progress(task, routed, params, now)
        return Routed(
            appended_events=appended,
            bands={concept: {band: int(bands[(bands.concept == concept) & (bands.band == band)]["n"].sum())
                             for band in ("accept", "review", "discard")}
                   for concept in sorted(bands["concept"].unique())},
            unmapped_predictions=int(total - bands["n"].sum()),
        )

    def _record_progress(self, task: LabelingTask, routed: str, params: dict[str, Any], now: datetime) -> None:
        """The batch's inputs the task has routed for objects, with how many annotations each got."""
        batch = params["batch"]
        # An input keeps the time it was first routed: a re-route (new rules) must not move it out of the versions
        # (as negatives) of the days before.
        first = self.s.df("SELECT input_id, processed_at AS first_at FROM task_inputs WHERE task = ? AND batch = ?",
                          [task.name, batch])
        self.s.conn.execute("DELETE FROM task_inputs WHERE task = ? AND batch = ?", [task.name, batch])
        with self.s.registered("first_routed", first):
            self.s.insert("task_inputs", self.s.pl(f"""
                SELECT {literal(task.name)} AS task, p.input_id, p.batch, p.model_id,
                       CAST(count(r.band) FILTER (WHERE r.band <> 'discard') AS INTEGER) AS annotation_count,
                       coalesce(any_value(f.first_at), $now) AS processed_at, {literal(task.rules_hash)} AS rules
                FROM processed_inputs p LEFT JOIN ({routed}) r USING (input_id)
                     LEFT JOIN first_routed f USING (input_id)
                WHERE p.batch = $batch AND p.model_id = $model_id AND {scope_sql(task, "p.input_id")}
                GROUP BY p.input_id, p.batch, p.model_id""",
                {**params, "now": now}))

    def _match_existing(self, task: LabelingTask, routed: str, params: dict[str, Any], kind: Kind) -> pd.DataFrame:
        """The batch's kept predictions (accept or review band) that are objects the task already has on their
        image: (prediction_id, annotation_id of that annotation, whether a person decided it). An annotation
        already carrying this model's prediction keeps it; otherwise the task's annotations of the image and
        concept not made from this model (another model's, imported, drawn, or rejected by a person) are matched
        one-to-one by IoU, most confident prediction first (`core.quality.greedy_pairs`). This model's own boxes
        that people decided are found by id (a decided annotation is never moved)."""
        name = literal(task.name)
        # Cheap when nothing is to be matched (a new batch): both start from the batch's own rows.
        own = self.s.df(f"""
            SELECT prediction_id, annotation_id, false AS decided FROM ({CURRENT})
            WHERE task = {name} AND batch = $batch AND model_id = $model_id AND {KIND_SQL} = $kind
              AND annotation_id <> {digest32_sql(name, 'prediction_id')}""", {**params, "kind": str(kind)})
        existing = self.s.df(f"""
            WITH inputs AS (SELECT input_id FROM processed_inputs WHERE batch = $batch AND model_id = $model_id),
            people AS (SELECT DISTINCT annotation_id FROM annotations WHERE task = {name}
                       AND source <> '{Source.AUTO}' AND input_id IN (SELECT input_id FROM inputs))
            SELECT annotation_id, input_id, concept, x1, y1, x2, y2, annotation_id IN (SELECT * FROM people) AS decided
            FROM ({CURRENT})
            WHERE task = {name} AND input_id IN (SELECT input_id FROM inputs) AND model_id IS DISTINCT FROM $model_id
              AND {KIND_SQL} = $kind AND (status IN ('{Status.SUCCESS}', '{Status.AWAITING_REVIEW}')
                   OR (status = '{Status.REJECTED}' AND annotation_id IN (SELECT * FROM people)))
            ORDER BY annotation_id""", {**params, "kind": str(kind)})
        if existing.empty:
            return own
        new = self.s.df(f"""SELECT prediction_id, input_id, concept, x1, y1, x2, y2, confidence FROM ({routed})
                            WHERE band <> 'discard' AND input_id IN (SELECT unnest($inputs)) ORDER BY prediction_id""",
                        {**params, "inputs": existing["input_id"].unique().tolist()})
        pairs = greedy_pairs(new, existing, task.match_iou)
        if not pairs:
            return own
        predictions, annotations = zip(*pairs, strict=True)
        matched = pd.DataFrame({"prediction_id": new["prediction_id"].to_numpy()[list(predictions)],
                                "annotation_id": existing["annotation_id"].to_numpy()[list(annotations)],
                                "decided": existing["decided"].to_numpy(bool)[list(annotations)]})
        return pd.concat([own, matched], ignore_index=True)

    def _draw_spot_checks(self, task: LabelingTask, routed: str, params: dict[str, Any], now: datetime) -> int:
        """Once per task and batch, the task's `spot_check` shares of the batch's auto-accepted annotations and
        of its discarded predictions, exactly round(share x count) of each (halves up), the ones whose hash with
        the task's seed sorts first: the same batch always gives the same sample (`matched_predictions`
        registered: an accepted prediction's annotation may be an existing one)."""
        rates, name = task.spot_check, literal(task.name)
        if not (rates.accepted or rates.discarded) or self.s.scalar(
                "SELECT count(*) FROM spot_checks WHERE task = $task AND batch = $batch",
                {"task": task.name, "batch": params["batch"]}):
            return 0
        return self.s.insert("spot_checks", self.s.pl(f"""
            WITH candidates AS (
                SELECT {target_annotation_sql(name)} AS annotation_id, r.input_id, r.band,
                       CASE r.band WHEN 'accept' THEN $accepted ELSE $discarded END AS rate
                FROM ({routed}) r LEFT JOIN matched_predictions m USING (prediction_id)
                WHERE r.band IN ('accept', 'discard') AND NOT coalesce(m.decided, false)),
            ranked AS (
                SELECT *, row_number() OVER (PARTITION BY band ORDER BY sha256(concat_ws('|', $seed, annotation_id)))
                              AS rank, count(*) OVER (PARTITION BY band) AS n
                FROM candidates)
            SELECT {name} AS task, annotation_id, input_id, $batch AS batch, band, rate, $now AS sampled_at
            FROM ranked WHERE rank <= floor(rate * n + 0.5)""",
            {**params, "accepted": rates.accepted, "discarded": rates.discarded, "seed": str(rates.seed),
             "now": now}))

    @staticmethod
    def _auto_events_sql(task: LabelingTask, routed: str) -> str:
        """Events for the batch (`matched_predictions` from `_match_existing` registered): each kept prediction
        moves its annotation (its own, or the existing one it matched, which takes its confidence, box and
        model) to its band; a prediction matching an annotation a person decided adds nothing (the person's
        decision wins). The batch's auto annotations no prediction keeps any more are RETIRED when this model
        made them (the thresholds moved), and go to review when another model made them (the new model does
        not find them: a person should say whether they stay). A discarded prediction drawn as a spot check
        becomes an annotation awaiting review. An image a person labelled whole (imported labels, or imported
        as having no object) gets no new annotation from the model: its predictions stay predictions (what
        quality and calibration measure), so no export holds an object the person did not label."""
        name, annotator, rules = literal(task.name), literal(task.annotator), literal(task.rules_hash)
        kept = ", ".join(f"c.{f}" for f in EVENT_FIELDS
                         if f not in ("status", "source", "event_at", "annotator", "rules"))
        return f"""
            WITH batch_inputs AS (SELECT input_id FROM processed_inputs WHERE batch = $batch AND model_id = $model_id),
            labelled_whole AS (
                SELECT input_id FROM annotation_state
                WHERE task = {name} AND source = '{Source.IMPORT}' AND status = '{Status.SUCCESS}'
                  AND {KIND_SQL} = $kind AND input_id IN (SELECT input_id FROM batch_inputs)
                UNION SELECT input_id FROM empty_inputs
                WHERE $kind = '{Kind.BOX}' AND task = {name} AND input_id IN (SELECT input_id FROM batch_inputs)
                UNION SELECT input_id FROM no_concept_inputs
                WHERE $kind = '{Kind.CONCEPT}' AND task = {name} AND input_id IN (SELECT input_id FROM batch_inputs)),
            known_there AS (SELECT annotation_id FROM annotation_state
                            WHERE task = {name} AND {KIND_SQL} = $kind
                              AND input_id IN (SELECT input_id FROM labelled_whole)),
            desired AS (
                SELECT {target_annotation_sql(name)} AS annotation_id, {name} AS task, input_id,
                       r.prediction_id, model_id, batch, concept, x1, y1, x2, y2, polygon, confidence,
                       CASE band WHEN 'accept' THEN {literal(str(task.band_status.accept))}
                                 WHEN 'review' THEN {literal(str(task.band_status.review))}
                                 ELSE '{Status.AWAITING_REVIEW}' END AS status,
                       {annotator} AS annotator, '{Source.AUTO}' AS source, $now AS event_at, {rules} AS rules,
                       $kind AS kind, CAST(NULL AS VARCHAR) AS original_concept
                FROM ({routed}) r LEFT JOIN matched_predictions m USING (prediction_id)
                WHERE (band <> 'discard' OR {target_annotation_sql(name)} IN (
                           SELECT annotation_id FROM spot_checks WHERE task = {name} AND band = 'discard'))
                  AND NOT coalesce(m.decided, false)
                  AND NOT (r.input_id IN (SELECT input_id FROM labelled_whole)
                           AND {target_annotation_sql(name)} NOT IN (SELECT annotation_id FROM known_there))),
            current AS (SELECT * FROM ({CURRENT}) WHERE task = {name} AND batch = $batch AND {KIND_SQL} = $kind),
            decided AS (SELECT DISTINCT annotation_id FROM annotations
                        WHERE task = {name} AND batch = $batch AND source <> '{Source.AUTO}')
            SELECT d.* FROM desired d LEFT JOIN ({CURRENT}) c ON c.annotation_id = d.annotation_id
            WHERE d.annotation_id NOT IN (SELECT annotation_id FROM decided)
              AND (c.status IS DISTINCT FROM d.status OR c.prediction_id IS DISTINCT FROM d.prediction_id)
            UNION ALL BY NAME
            SELECT {kept},
                   CASE WHEN c.model_id = $model_id THEN '{Status.RETIRED}' ELSE '{Status.AWAITING_REVIEW}' END
                       AS status,
                   {annotator} AS annotator, '{Source.AUTO}' AS source, $now AS event_at, {rules} AS rules
            FROM current c
            WHERE c.status <> '{Status.RETIRED}' AND c.annotation_id NOT IN (SELECT annotation_id FROM decided)
              AND c.annotation_id NOT IN (SELECT annotation_id FROM desired)
              AND NOT (c.model_id <> $model_id AND c.status = '{Status.AWAITING_REVIEW}')"""

    def class_names(self, task: str, concepts: Iterable[str] = (), now: datetime | None = None) -> list[str]:
        """The task's concepts in class-id order, after giving each of `concepts` not yet known the next id
        (in the order given). Ids are never reused or reordered."""
        known = dict(self.s.conn.execute("SELECT concept, class_id FROM task_classes WHERE task = ?",
                                         [task]).fetchall())
        new = [c for c in dict.fromkeys(concepts) if c not in known]
        if new:
            start = max(known.values(), default=-1) + 1
            self.s.insert("task_classes", [{"task": task, "class_id": start + i, "concept": c,
                                            "added_at": now or datetime.now()} for i, c in enumerate(new)])
            known.update({c: start + i for i, c in enumerate(new)})
        return sorted(known, key=lambda concept: known[concept])

    def routing_definitions(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        """The routing rules recorded under each of `hashes`."""
        return {h: json.loads(d) for h, d in self.s.conn.execute(
            "SELECT rules, definition FROM routing_rules WHERE rules IN (SELECT unnest(?::VARCHAR[]))",
            [hashes]).fetchall()}

    def batches_routed_under_other_rules(self, task: LabelingTask) -> list[str]:
        """Batches whose latest routing for `task` used rules other than its current ones (those the task now
        skips, switched off or out of its scope, are left as they are)."""
        return [b for (b,) in self.s.conn.execute(
            "SELECT DISTINCT batch FROM task_inputs WHERE task = ? AND rules IS DISTINCT FROM ? ORDER BY 1",
            [task.name, task.rules_hash]).fetchall() if not task.skips_batch(b)]

    def processed_count(self, task: str) -> int:
        return int(self.s.scalar("SELECT count(*) FROM task_inputs WHERE task = ?", [task]))

    def tasks_with_progress(self) -> list[str]:
        return [t for (t,) in self.s.conn.execute(
            "SELECT DISTINCT task FROM task_inputs UNION SELECT DISTINCT task FROM annotations ORDER BY 1").fetchall()]
