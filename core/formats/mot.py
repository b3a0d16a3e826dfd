"""MOT Challenge ground-truth text: per video a sequence folder with `gt/gt.txt`, one line per box: frame, track
id, left, top, width, height (pixels), 1, class id, 1 (MOT16's `conf` and `visibility` columns, fixed), and a
`seqinfo.ini`. Frames are numbered as in the video (its frame index + 1): a sampled frame keeps its place."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.annotations import Kind
from core.formats.base import ExportRequest, LabelFormat, Written

MOT_COLUMNS = ["frame", "id", "left", "top", "width", "height", "conf", "class", "visibility"]


def sequence_name(video_uri: str, video_id: str) -> str:
    """A sequence folder's name: the video's file stem and a short content hash (two videos may share a name)."""
    stem = Path(video_uri.split("?")[0].rstrip("/")).stem or "video"
    return f"{stem}-{video_id[:8]}"


def write_mot(request: ExportRequest, folder: Path) -> Written:
    """The version's boxes on video frames as MOT sequences; a box without a track (drawn by a person) gets an id
    of its own above the video's track ids. Boxes on images that are no video frame are counted, not written."""
    tracks = request.tracks if request.tracks is not None else pd.DataFrame(
        columns=["annotation_id", "input_id", "video_id", "video_uri", "frame_index", "track_id", "frame_rate"])
    boxes = request.boxes.merge(tracks.drop(columns=["input_id"]), on="annotation_id", how="inner") \
        .merge(request.inputs[["input_id", "width", "height"]], on="input_id")
    written_boxes = 0
    sequences = 0
    for (video_id, video_uri), rows in boxes.groupby(["video_id", "video_uri"], sort=True):
        rows = rows.sort_values(["frame_index", "annotation_id"]).copy()
        known = rows["track_id"].dropna()
        next_id = int(known.max()) + 1 if len(known) else 1
        ids = []
        for track in rows["track_id"]:
            if pd.isna(track):
                ids.append(next_id)
                next_id += 1
            else:
                ids.append(int(track))
        lines = [",".join(str(v) for v in (
            int(r.frame_index) + 1, ident, round(r.x1 * r.width, 2), round(r.y1 * r.height, 2),
            round((r.x2 - r.x1) * r.width, 2), round((r.y2 - r.y1) * r.height, 2), 1,
            request.names.index(r.concept), 1)) for r, ident in zip(rows.itertuples(), ids, strict=True)]
        name = sequence_name(str(video_uri), str(video_id))
        (folder / name / "gt").mkdir(parents=True)
        (folder / name / "gt" / "gt.txt").write_text("\n".join(lines) + "\n")
        first = rows.iloc[0]
        (folder / name / "seqinfo.ini").write_text(
            f"[Sequence]\nname={name}\nframeRate={round(float(first.frame_rate or 0) or 25)}\n"
            f"seqLength={int(rows['frame_index'].max()) + 1}\nimWidth={int(first.width)}\n"
            f"imHeight={int(first.height)}\n")
        written_boxes += len(rows)
        sequences += 1
    names = "".join(f"{i} {n}\n" for i, n in enumerate(request.names))
    (folder / "classes.txt").write_text(names)
    return Written({"sequences": sequences, "annotations": written_boxes,
                    "boxes_not_on_video_frames": len(request.boxes) - written_boxes}, "",
                   "MOT Challenge gt.txt per video (frame, track id, pixel box, class id)", frozenset())


MOT = LabelFormat("mot", Kind.BOX, "MOT Challenge text, one sequence per video, with track ids", write=write_mot)
