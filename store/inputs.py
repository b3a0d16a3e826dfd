"""SQL of the inputs family: `inputs`, `input_sources`, `rejected_inputs`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.faults import pause_point
from core.image_checks import InspectedImage, Rejection
from core.video import SampledVideo

if TYPE_CHECKING:
    import pandas as pd

    from store.database import Session


SPLIT_GROUPS = ("SELECT ids.input_id, coalesce(min(f.video_id), ids.input_id) AS split_group FROM "
                "(SELECT unnest(?::VARCHAR[]) AS input_id) ids LEFT JOIN video_frames f USING (input_id) GROUP BY 1")


class InputsSQL:
    def __init__(self, session: Session) -> None:
        self.s = session

    def record_batch(self, batch: str, accepted: list[tuple[Path | str, InspectedImage]],
                     rejected: list[tuple[Path | str, Rejection]], stored_path: dict[str, str], now: datetime
                     ) -> dict[str, int]:
        """Replace this batch's rows for the files seen now; inputs already stored stay as they are.
        `stored_path` maps each accepted input id to where its bytes sit in the image store."""
        conn = self.s.conn
        uris = [str(path) for path, _ in accepted] + [str(path) for path, _ in rejected]
        known = dict(conn.execute(
            "SELECT input_id, batch FROM inputs WHERE input_id IN (SELECT unnest(?::VARCHAR[]))",
            [[image.input_id for _, image in accepted]]).fetchall())
        for table in ("input_sources", "rejected_inputs"):
            conn.execute(f"DELETE FROM {table} WHERE batch = ? AND uri IN (SELECT unnest(?::VARCHAR[]))",
                         [batch, uris])
        new_inputs: list[dict[str, Any]] = []
        sources: list[dict[str, Any]] = []
        seen_here: set[str] = set()
        for path, image in accepted:
            earlier = image.input_id in seen_here or known.get(image.input_id, batch) != batch
            seen_here.add(image.input_id)
            sources.append({"uri": str(path), "batch": batch, "input_id": image.input_id,
                            "duplicate_of_earlier": earlier, "seen_at": now})
            if image.input_id not in known and not earlier:
                new_inputs.append({
                    "input_id": image.input_id, "uri": str(path), "batch": batch, "width": image.width,
                    "height": image.height, "format": image.format, "byte_size": image.byte_size,
                    "stored_path": stored_path[image.input_id], "ingested_at": now,
                })
        self.s.insert("inputs", new_inputs)
        self.s.insert("input_sources", sources)
        self.s.insert("rejected_inputs", [
            {"uri": str(path), "batch": batch, "reason_code": r.code, "reason": r.reason, "detected_at": now}
            for path, r in rejected])
        pause_point("inputs.write")
        return {"new": len(new_inputs), "duplicates": sum(s["duplicate_of_earlier"] for s in sources),
                "batch_inputs": self.s.scalar("SELECT count(*) FROM inputs WHERE batch = ?", [batch])}

    def still_refused_urls(self, codes: tuple[str, ...]) -> list[tuple[str, datetime]]:
        """URLs whose latest word is a refusal with one of `codes` (no input came from them since), with when."""
        return [(uri, at) for uri, at in self.s.conn.execute(
            "WITH urls AS (SELECT uri, reason_code, detected_at, max(detected_at) OVER (PARTITION BY uri) AS latest "
            "FROM rejected_inputs WHERE uri IN (SELECT uri FROM rejected_inputs WHERE reason_code IN "
            "(SELECT unnest(?::VARCHAR[])))) "
            "SELECT uri, detected_at FROM urls r WHERE detected_at = latest AND reason_code IN "
            "(SELECT unnest(?::VARCHAR[])) "
            "AND NOT EXISTS (SELECT 1 FROM input_sources s WHERE s.uri = r.uri AND s.seen_at >= r.detected_at) "
            "ORDER BY uri", [list(codes), list(codes)]).fetchall()]

    def batch_input_ids(self, batch: str) -> list[str]:
        return [i for (i,) in self.s.conn.execute(
            "SELECT input_id FROM inputs WHERE batch = ? ORDER BY input_id", [batch]).fetchall()]

    def earliest(self, limit: int) -> list[str]:
        """The first `limit` images stored (what an INT8 quantization is calibrated on: it stays the same set)."""
        return [i for (i,) in self.s.conn.execute(
            "SELECT input_id FROM inputs ORDER BY ingested_at, input_id LIMIT ?", [limit]).fetchall()]

    def exists(self, input_id: str) -> bool:
        return bool(self.s.conn.execute("SELECT 1 FROM inputs WHERE input_id = ?", [input_id]).fetchall())

    def sizes(self, input_ids: list[str]) -> pd.DataFrame:
        """input_id, width, height, format, uri (where it first came from) and split_group (`split_groups`) of the
        given inputs, by id."""
        return self.s.df(
            f"SELECT i.input_id, width, height, format, uri, g.split_group FROM inputs i JOIN ({SPLIT_GROUPS}) g "
            "USING (input_id) ORDER BY input_id", [sorted(input_ids)])

    def split_groups(self, input_ids: list[str]) -> dict[str, str]:
        """Each input's split group: the video a frame was kept from (the first by id, should one PNG be a frame
        of two), else the input itself. A group lands in one split, so that near-identical neighbouring frames
        never sit on both sides of a validation."""
        return dict(self.s.conn.execute(SPLIT_GROUPS, [sorted(input_ids)]).fetchall())

    def batch_summary(self, batch: str) -> dict[str, Any]:
        """Distinct inputs, duplicates and rejections of one batch."""
        rejections = self.s.df("SELECT uri, reason_code, reason FROM rejected_inputs WHERE batch = ? ORDER BY uri",
                               [batch])
        distinct, duplicates = self.s.conn.execute(
            "SELECT count(*) FILTER (WHERE NOT duplicate_of_earlier), count(*) FILTER (WHERE duplicate_of_earlier) "
            "FROM input_sources WHERE batch = ?", [batch]).fetchall()[0]
        return {"inputs": int(distinct), "duplicates": int(duplicates), "rejections": rejections.to_dict("records")}

    def totals(self, shown_rejections: int = 20) -> dict[str, Any]:
        """Counts for `status`: inputs, rejections (by reason, and the latest `shown_rejections` files with their
        reasons), duplicates."""
        by_reason = dict(self.s.conn.execute(
            "SELECT reason_code, count(*) FROM rejected_inputs GROUP BY 1 ORDER BY 1").fetchall())
        latest = self.s.df("SELECT uri, batch, reason_code, reason FROM rejected_inputs "
                           "ORDER BY detected_at DESC, uri LIMIT ?", [shown_rejections])
        return {
            "inputs": int(self.s.scalar("SELECT count(*) FROM inputs")),
            "rejected": int(sum(by_reason.values())),
            "rejected_by_reason": {code: int(n) for code, n in by_reason.items()},
            "rejected_files": latest.to_dict("records"),
            "duplicates": int(self.s.scalar("SELECT count(*) FROM input_sources WHERE duplicate_of_earlier")),
        }

    def matching(self, reference: str) -> list[str]:
        """The inputs a user's reference names: an input id, or a file by its path (as ingested) or its name."""
        return [i for (i,) in self.s.conn.execute(
            "SELECT DISTINCT input_id FROM input_sources WHERE input_id = $ref OR uri = $ref "
            "OR regexp_extract(uri, '[^/]*$') = $ref ORDER BY 1", {"ref": reference}).fetchall()]

    def deleted(self, input_ids: list[str]) -> dict[str, datetime | None]:
        """Which of these inputs are deleted, each with when it was purged (None: not purged)."""
        return dict(self.s.conn.execute(
            "SELECT input_id, purged_at FROM deleted_inputs WHERE input_id IN (SELECT unnest(?::VARCHAR[]))",
            [input_ids]).fetchall())

    def record_deleted(self, input_ids: list[str], by: str, now: datetime) -> int:
        return self.s.insert("deleted_inputs", [{"input_id": i, "deleted_by": by, "deleted_at": now,
                                                 "purged_at": None} for i in input_ids])

    def record_purged(self, input_ids: list[str], now: datetime) -> dict[str, int]:
        """Marks the inputs purged and drops their image and object embeddings; returns the rows removed per table."""
        embeddings = int(self.s.scalar("SELECT count(*) FROM embeddings WHERE input_id IN "
                                       "(SELECT unnest(?::VARCHAR[]))", [input_ids]))
        self.s.conn.execute("DELETE FROM embeddings WHERE input_id IN (SELECT unnest(?::VARCHAR[]))", [input_ids])
        objects = int(self.s.scalar("SELECT count(*) FROM object_embeddings WHERE input_id IN "
                                    "(SELECT unnest(?::VARCHAR[]))", [input_ids]))
        self.s.conn.execute("DELETE FROM object_embeddings WHERE input_id IN (SELECT unnest(?::VARCHAR[]))",
                            [input_ids])
        self.s.conn.execute("UPDATE deleted_inputs SET purged_at = ? WHERE input_id IN (SELECT unnest(?::VARCHAR[]))",
                            [now, input_ids])
        return {"embeddings": embeddings, "object_embeddings": objects}

    def record_videos(self, batch: str, videos: list[tuple[Path | str, SampledVideo]], stored_path: dict[str, str],
                      now: datetime) -> int:
        """This batch's videos (replacing its earlier rows for them) and which input each kept frame is (a frame
        already recorded for its video stays)."""
        uris = [str(path) for path, _ in videos]
        self.s.conn.execute("DELETE FROM videos WHERE batch = ? AND uri IN (SELECT unnest(?::VARCHAR[]))",
                            [batch, uris])
        self.s.insert("videos", [{
            "uri": str(path), "batch": batch, "video_id": v.video_id, "frames_decoded": v.decoded,
            "frames_sampled": v.sampled, "frames_kept": len(v.frames), "skipped_similar": v.skipped_similar,
            "frame_rate": v.frame_rate, "duration_s": v.duration, "stopped": v.stopped,
            "stored_path": stored_path[v.video_id], "ingested_at": now} for path, v in videos])
        known = {(video_id, index) for video_id, index in self.s.conn.execute(
            "SELECT video_id, frame_index FROM video_frames WHERE video_id IN (SELECT unnest(?::VARCHAR[]))",
            [[v.video_id for _, v in videos]]).fetchall()}
        frames = {(v.video_id, f.index): {"video_id": v.video_id, "frame_index": f.index, "timestamp_s": f.timestamp,
                                          "input_id": f.input_id}
                  for _, v in videos for f in v.frames if (v.video_id, f.index) not in known}
        return self.s.insert("video_frames", list(frames.values()))

    def videos(self, batch: str) -> list[dict[str, Any]]:
        return self.s.df("SELECT * FROM videos WHERE batch = ? ORDER BY uri", [batch]).to_dict("records")
