"""SQL of the versions family: `dataset_versions`."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from core.annotations import KIND_SQL, Kind
from core.geometry import BOX_DECIMALS
from core.manifests import MANIFEST_COLUMNS, NEGATIVE_MAKERS, NEGATIVE_SOURCE, Manifest, manifest_of

if TYPE_CHECKING:
    from store.database import Session


class FrozenVersion(ValueError):
    """A named version was asked to change."""


class VersionsSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def manifest(self, task: str, cutoff: datetime) -> Manifest:
        """The manifest of `task`'s accepted annotations and negative images as of `cutoff`, formatted and sorted
        inside DuckDB: a whole dataset is one pass over the current state, not a Python loop over its rows."""
        relation, params = self.s.history.as_of_sql(task, cutoff)
        negatives, negative_params = self.s.history.negatives_sql(task, cutoff)
        # An image-level concept has no box: its box fields are empty, so it never reads as a whole-image box.
        fields = [f"CASE WHEN {KIND_SQL} = '{Kind.CONCEPT}' THEN '' ELSE printf('%.{BOX_DECIMALS}f', {c}) END"
                  if c in ("x1", "y1", "x2", "y2") else f"coalesce({c}, '')" for c in MANIFEST_COLUMNS]
        negative_fields = ["input_id" if c == "input_id" else f"'{NEGATIVE_SOURCE}'" if c == "source" else "''"
                           for c in MANIFEST_COLUMNS]
        lines, inputs, negative_count = self.s.conn.execute(
            f"SELECT coalesce(string_agg(line || chr(10), '' ORDER BY line), ''), "
            f"count(DISTINCT input_id) FILTER (WHERE NOT negative), count(*) FILTER (WHERE negative) FROM ("
            f"SELECT concat_ws(chr(9), {', '.join(fields)}) AS line, input_id, false AS negative FROM ({relation}) "
            f"UNION ALL SELECT concat_ws(chr(9), {', '.join(negative_fields)}), input_id, true FROM ({negatives}))",
            {**params, **negative_params}).fetchall()[0]
        per_concept = dict(self.s.conn.execute(f"SELECT concept, count(*) FROM ({relation}) GROUP BY 1",
                                               params).fetchall())
        return manifest_of(lines, inputs, per_concept, negative_count)

    def negatives(self, task: str, cutoff: datetime) -> dict[str, list[str]]:
        """The version's negative images (see `HistorySQL.negatives_sql`) by who made them, each list sorted:
        `person` (imported without labels, or reviewed with nothing left) and `model` (nothing found above the
        lower threshold, no person looked)."""
        made = dict(self.s.conn.execute(*self.s.history.negatives_sql(task, cutoff)).fetchall())
        return {kind: sorted(i for i, by_person in made.items() if by_person == (kind == "person"))
                for kind in NEGATIVE_MAKERS}

    def frozen_holding(self, input_id: str) -> list[str]:
        """The named (frozen) versions whose manifest holds the input: an accepted annotation of it, or it as a
        negative, as of the version's cutoff (the manifest is exactly that)."""
        held = []
        for key, task, cutoff in self.s.conn.execute(
                "SELECT version_key, task, cutoff FROM dataset_versions WHERE frozen ORDER BY 1").fetchall():
            accepted, params = self.s.history.as_of_sql(task, cutoff)
            negatives, negative_params = self.s.history.negatives_sql(task, cutoff)
            if self.s.scalar(f"SELECT count(*) FROM (SELECT input_id FROM ({accepted}) UNION ALL "
                             f"SELECT input_id FROM ({negatives})) WHERE input_id = $input_id",
                             {**params, **negative_params, "input_id": input_id}):
                held.append(key)
        return held

    def get(self, version_key: str) -> dict[str, Any] | None:
        rows = self.s.df("SELECT * FROM dataset_versions WHERE version_key = ?", [version_key])
        return rows.iloc[0].to_dict() if len(rows) else None

    def keys(self, task: str | None = None) -> list[str]:
        """The stored version keys (of one task), newest day first."""
        rows = self.s.conn.execute("SELECT version_key FROM dataset_versions WHERE ? IS NULL OR task = ? "
                                   "ORDER BY day DESC, version_key", [task, task]).fetchall()
        return [key for (key,) in rows]

    def listing(self, task: str | None = None) -> list[dict[str, Any]]:
        """Every stored version (of one task), newest day first: its counts, manifest and whether it is frozen."""
        rows = self.s.df("SELECT version_key, task, day, cutoff, annotations, inputs, coalesce(negatives, 0) AS "
                         "negatives, per_concept, coalesce(frozen, false) AS frozen, manifest_sha256, created_at, "
                         "changed_at FROM dataset_versions WHERE ? IS NULL OR task = ? ORDER BY day DESC, "
                         "version_key", [task, task])
        return [{**row, "day": row["day"].date().isoformat(), "cutoff": row["cutoff"].isoformat(),
                 "created_at": row["created_at"].isoformat(), "changed_at": row["changed_at"].isoformat(),
                 "per_concept": json.loads(row["per_concept"]), "frozen": bool(row["frozen"])}
                for row in rows.to_dict("records")]

    def record(self, key: str, task: str, day: date, cutoff: datetime, manifest: Manifest, manifest_path: str,
               now: datetime, frozen: bool = False) -> bool:
        """Store the version's row when its manifest is new or changed (then `changed_at` moves, `created_at`
        stays); returns whether it changed. A frozen version is never replaced."""
        previous = self.get(key)
        if previous and previous.get("frozen"):
            raise FrozenVersion(f"Version {key} is frozen: a named version never changes once created; create "
                                "the new state under another name.")
        if previous and previous["manifest_sha256"] == manifest.sha256:
            return False
        self.s.conn.execute("DELETE FROM dataset_versions WHERE version_key = ?", [key])
        self.s.insert("dataset_versions", [{
            "version_key": key, "task": task, "day": day, "cutoff": cutoff, "manifest_sha256": manifest.sha256,
            "annotations": manifest.annotations, "inputs": manifest.inputs, "negatives": manifest.negatives,
            "per_concept": json.dumps(manifest.per_concept, sort_keys=True), "manifest_path": manifest_path,
            "created_at": previous["created_at"] if previous else now, "changed_at": now, "frozen": frozen,
        }])
        return True
