"""SQL of the versions family: `dataset_versions`."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import TYPE_CHECKING

from core.manifests import Manifest

if TYPE_CHECKING:
    from store.database import Session


class VersionsSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def get(self, version_key: str) -> dict | None:
        rows = self.s.df("SELECT * FROM dataset_versions WHERE version_key = ?", [version_key])
        return rows.iloc[0].to_dict() if len(rows) else None

    def record(self, key: str, task: str, day: date, cutoff: datetime, manifest: Manifest, manifest_path: str,
               now: datetime) -> bool:
        """Store the version's row when its manifest is new or changed (then `changed_at` moves, `created_at`
        stays); returns whether it changed."""
        previous = self.get(key)
        if previous and previous["manifest_sha256"] == manifest.sha256:
            return False
        self.s.conn.execute("DELETE FROM dataset_versions WHERE version_key = ?", [key])
        self.s.insert("dataset_versions", [{
            "version_key": key, "task": task, "day": day, "cutoff": cutoff, "manifest_sha256": manifest.sha256,
            "annotations": manifest.annotations, "inputs": manifest.inputs,
            "per_concept": json.dumps(manifest.per_concept, sort_keys=True), "manifest_path": manifest_path,
            "created_at": previous["created_at"] if previous else now, "changed_at": now,
        }])
        return True
