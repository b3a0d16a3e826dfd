"""SQL of `autoannotate check`: the store's own consistency questions, asked of every declared table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from store.tables import TABLES

if TYPE_CHECKING:
    from store.database import Session

LAKE = "autoannotate"  # the name a DuckLake is attached as (`attach_lake`)


@dataclass(frozen=True)
class NamedBlob:
    """A blob a row names: its id (its name in the image store) and the row that names it."""

    blob_id: str
    named_by: str


@dataclass(frozen=True)
class VersionRecord:
    version_key: str
    task: str
    manifest_sha256: str


@dataclass(frozen=True)
class LakeFile:
    table: str
    path: str
    size: int


class IntegritySQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def scan(self, table: str) -> int:
        """Read every value of every row (a damaged block or data file raises here); the row count."""
        return int(self.s.scalar(f"SELECT count(hash(t)) FROM {table} AS t"))

    def duplicate_keys(self, table: str) -> int:
        """How many rows repeat a key an earlier row holds (keys are declared, not indexed: writers keep them)."""
        key = TABLES[table].primary_key
        if not key:
            return 0
        return int(self.s.scalar(f"SELECT count(*) - count(DISTINCT ({', '.join(key)})) FROM {table}"))

    def named_images(self) -> list[NamedBlob]:
        """Every blob the rows name: stored inputs (not purged) and videos."""
        rows = self.s.conn.execute("""
            SELECT input_id, 'input ' || uri FROM inputs
            WHERE input_id NOT IN (SELECT input_id FROM deleted_inputs WHERE purged_at IS NOT NULL)
            UNION ALL SELECT DISTINCT video_id, 'video ' || uri FROM videos ORDER BY 1""").fetchall()
        return [NamedBlob(blob_id, named_by) for blob_id, named_by in rows]

    def versions(self) -> list[VersionRecord]:
        rows = self.s.conn.execute("SELECT version_key, task, manifest_sha256 FROM dataset_versions "
                                   "ORDER BY version_key").fetchall()
        return [VersionRecord(*row) for row in rows]

    def lake_files(self) -> list[LakeFile]:
        """The data and delete files the DuckLake's catalog lists for every table, with their recorded sizes."""
        if not self.s.lake:
            return []
        files = []
        for table in TABLES:
            rows = self.s.conn.execute(f"SELECT data_file, data_file_size_bytes, delete_file, delete_file_size_bytes "
                                       f"FROM ducklake_list_files('{LAKE}', '{table}')").fetchall()
            for data_file, data_size, delete_file, delete_size in rows:
                files.append(LakeFile(table, data_file, int(data_size)))
                if delete_file:
                    files.append(LakeFile(table, delete_file, int(delete_size)))
        return files
