"""Videos in the inbox: frames sampled by rate, count and similarity (exact frame indices), damaged and rotated
videos, and a run over an inbox with a video (the same video twice adds no inputs)."""

from __future__ import annotations

import contextlib
import io
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import (
    BROWSER_AVAILABLE,
    autoannotate,
    copy_home,
    launch_chromium,
    open_review_page,
    query,
    review_server,
    write_task_file,
)
from PIL import Image

from apps.demo_scenes import generate_scene, moving_scene, write_video
from core.review_rules import ReviewError
from core.settings import Settings
from core.video import VideoRule, sample_video
from resources import build_resources


def noise(count: int, size: tuple[int, int] = (160, 96), repeat: dict[int, int] | None = None) -> list[np.ndarray]:
    """`count` frames of distinct noise; frame i of `repeat` is a copy of frame repeat[i]."""
    frames = []
    for index in range(count):
        source = (repeat or {}).get(index)
        frames.append(frames[source] if source is not None else
                      np.random.default_rng(index).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    return frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "distinct.mkv", noise(30), fps=10)
    write_video(folder / "repeats.mp4", noise(12, repeat={5: 4, 6: 4, 7: 4, 9: 8}), fps=10)
    return folder


@pytest.mark.parametrize(("rule", "kept"), [
    (VideoRule(fps=2.0), [0, 5, 10, 15, 20, 25]),  # 10 fps sampled at 2: every fifth frame
    (VideoRule(fps=4.0), [0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28]),  # the first frame at or after each 0.25 s
    (VideoRule(fps=2.0, max_frames=3), [0, 5, 10]),
    (VideoRule(fps=100.0), list(range(30))),
])
def test_frames_are_sampled_by_rate_and_count(videos: Path, rule: VideoRule, kept: list[int]) -> None:
    sampled = sample_video(videos / "distinct.mkv", rule)
    assert [frame.index for frame in sampled.frames] == kept
    assert [frame.timestamp for frame in sampled.frames] == pytest.approx([i / 10 for i in kept])
    assert sampled.decoded == (30 if rule.max_frames > len(kept) else kept[-1] + 1)
    assert sampled.skipped_similar == 0 and sampled.stopped is None
    assert len({frame.input_id for frame in sampled.frames}) == len(kept)


def test_near_identical_consecutive_frames_are_skipped_and_counted(videos: Path) -> None:
    sampled = sample_video(videos / "repeats.mp4", VideoRule(fps=100.0, skip_similar=0.95))
    assert [frame.index for frame in sampled.frames] == [0, 1, 2, 3, 4, 8, 10, 11]
    assert (sampled.sampled, sampled.skipped_similar) == (12, 4)
    every = sample_video(videos / "repeats.mp4", VideoRule(fps=100.0, skip_similar=1.0))
    assert len(every.frames) == 12 and every.skipped_similar == 0


def test_a_cut_short_video_keeps_the_frames_before_and_says_where_it_stopped(videos: Path, tmp_path: Path) -> None:
    data = (videos / "distinct.mkv").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    sampled = sample_video(cut, VideoRule(fps=100.0))
    assert 5 < len(sampled.frames) < 30
    assert [frame.index for frame in sampled.frames] == list(range(len(sampled.frames)))
    assert sampled.stopped == (f"cut.mkv ends early: decoding stopped after frame {len(sampled.frames) - 1} at "
                               f"{(len(sampled.frames) - 1) / 10:.2f} s of the 3.00 s its header gives; the "
                               f"{len(sampled.frames)} frames kept before it stay.")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match=r"^junk\.mp4 is not a video that can be decoded \(InvalidDataError"):
        sample_video(junk, VideoRule())


def test_a_rotated_video_gives_upright_frames(tmp_path: Path) -> None:
    frame = np.zeros((96, 160, 3), dtype=np.uint8)
    frame[:, :40] = 255  # the left quarter white
    path = write_video(tmp_path / "phone.mp4", [frame] * 3, fps=10, rotation=90)
    sampled = sample_video(path, VideoRule(fps=100.0, skip_similar=1.0))
    upright = np.asarray(Image.open(io.BytesIO(sampled.frames[0].png)).convert("L"))
    assert (sampled.frames[0].width, sampled.frames[0].height) == (96, 160) == upright.shape[::-1]
    # Turned a quarter counterclockwise, as the display matrix says: the left edge is now the bottom.
    assert upright[130:].mean() > 240 and upright[:110].mean() < 15


def test_a_run_ingests_a_video_s_frames_and_the_same_video_again_adds_none(tmp_path: Path) -> None:
    home = tmp_path / "home"
    inbox = home / "inbox"
    inbox.mkdir(parents=True)
    frames = [np.asarray(generate_scene(9_100 + index, width=320, height=240)[0].convert("RGB"))
              for index in range(8)]
    write_video(inbox / "drive.mp4", [f for f in frames for _ in range(5)], fps=10)  # each scene held 0.5 s
    (inbox / "broken.mp4").write_bytes(b"\x00" * 100)
    env = {"AUTOANNOTATE_VIDEO_FPS": "4"}
    autoannotate("run", home=home, env=env)
    resources = build_resources(Settings(home=home))
    video = query(resources["store"], "SELECT * FROM videos").iloc[0]
    # 4 fps over 40 frames at 10 fps: 16 sampled, every other one the same scene as the one before.
    assert (video.frames_decoded, video.frames_sampled, video.frames_kept, video.skipped_similar) == (40, 16, 8, 8)
    assert video.stopped is None and Path(video.stored_path).read_bytes() == (inbox / "drive.mp4").read_bytes()
    frames_recorded = query(resources["store"], "SELECT f.frame_index, f.timestamp_s, i.uri, i.format FROM "
                                                "video_frames f JOIN inputs i USING (input_id) ORDER BY 1")
    assert frames_recorded["frame_index"].tolist() == [0, 5, 10, 15, 20, 25, 30, 35]
    assert frames_recorded["uri"].tolist() == [f"{inbox / 'drive.mp4'}#frame={i}" for i in range(0, 40, 5)]
    assert set(frames_recorded["format"]) == {"PNG"}
    rejected = query(resources["store"], "SELECT uri, reason_code, reason FROM rejected_inputs").iloc[0]
    assert (Path(rejected.uri).name, rejected.reason_code) == ("broken.mp4", "not_a_video")
    assert rejected.reason.startswith("broken.mp4 is not a video that can be decoded")
    assert query(resources["store"], "SELECT count(*) AS n FROM inputs")["n"][0] == 8
    assert query(resources["store"], "SELECT count(*) AS n FROM task_inputs")["n"][0] == 8  # each frame routed

    shutil.copy(inbox / "drive.mp4", inbox / "drive-copy.mp4")
    autoannotate("run", home=home, env=env)
    assert query(resources["store"], "SELECT count(*) AS n FROM inputs")["n"][0] == 8
    assert query(resources["store"], "SELECT count(*) AS n FROM videos")["n"][0] == 2
    assert query(resources["store"], "SELECT count(*) AS n FROM video_frames")["n"][0] == 8
    duplicates = query(resources["store"], "SELECT count(*) AS n FROM input_sources WHERE duplicate_of_earlier")
    assert duplicates["n"][0] == 8


@pytest.fixture(scope="module")
def tracked_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    """A video of three moving shapes (40 frames at 10 fps, every frame kept), run under the demo task with
    `tracker: bytetrack` and a wide review band."""
    home = tmp_path_factory.mktemp("tracked")
    frames, truth = moving_scene(77, 40)
    (home / "inbox").mkdir()
    write_video(home / "inbox" / "street.mp4", frames, fps=10)
    write_task_file(home, tracker="bytetrack", thresholds={"upper": 0.99, "lower": 0.3})
    autoannotate("run", "--task-file", str(home / "demo-shapes.yaml"), home=home,
                 env={"AUTOANNOTATE_VIDEO_FPS": "10", "AUTOANNOTATE_VIDEO_SKIP_SIMILAR": "1.0"})
    return home, truth


def test_tracks_link_an_object_across_frames_and_route_it_as_one(tracked_home: tuple[Path, list]) -> None:
    home, truth = tracked_home
    store = build_resources(Settings(home=home))["store"]
    tracked = query(store, """
        SELECT f.frame_index, t.track_id, p.x1 * i.width AS x1, p.y1 * i.height AS y1, p.class_name
        FROM prediction_tracks t JOIN predictions p USING (prediction_id) JOIN video_frames f USING (input_id)
        JOIN inputs i USING (input_id) ORDER BY 1, 2""")
    assert len(tracked) >= 90  # most of the 3 x 40 objects detected and tracked
    # Each detection belongs to the true object whose box it overlaps; a true object keeps one track id.
    tracks_of: dict[int, Counter] = {}
    for row in tracked.itertuples():
        nearest = min(truth[row.frame_index], key=lambda item: abs(item[1].x1 - row.x1) + abs(item[1].y1 - row.y1))
        tracks_of.setdefault(nearest[0], Counter())[row.track_id] += 1
    for index, counts in tracks_of.items():
        _, n = counts.most_common(1)[0]
        assert n / sum(counts.values()) >= 0.9, (index, counts)  # purity: switches in at most a tenth of frames
    # The track routes as one: every live annotation of a track has one status and the track's confidence.
    routed = query(store, """
        SELECT t.track_id, count(DISTINCT c.status) AS statuses, count(DISTINCT c.confidence) AS confidences,
               any_value(c.confidence) AS confidence, median(p.confidence) AS median
        FROM annotation_state c JOIN prediction_tracks t ON t.prediction_id = c.prediction_id
        JOIN predictions p ON p.prediction_id = c.prediction_id
        WHERE c.status <> 'RETIRED' GROUP BY 1""")
    assert len(routed) >= 3 and set(routed["statuses"]) == {1} and set(routed["confidences"]) == {1}
    assert routed["confidence"].tolist() == pytest.approx(routed["median"].tolist())


def test_a_track_is_decided_with_one_call_one_event_per_frame(tracked_home: tuple[Path, list], tmp_path: Path
                                                              ) -> None:
    home = copy_home(tracked_home[0], tmp_path / "home", "demo-shapes.yaml")
    resources = build_resources(Settings(home=home, task_files=(str(home / "demo-shapes.yaml"),)))
    from apps.review_desk import ReviewDesk

    desk = ReviewDesk(resources["store"], resources["tasks"].load())
    track = query(resources["store"], """
        SELECT t.video_id, t.track_id, count(*) AS frames, any_value(r.reviewer) AS reviewer
        FROM annotation_state c JOIN prediction_tracks t ON t.prediction_id = c.prediction_id
        JOIN review_assignments r ON r.task = c.task AND r.input_id = c.input_id
        WHERE c.status = 'AWAITING_REVIEW' GROUP BY 1, 2 ORDER BY frames DESC, 2 LIMIT 1""").iloc[0]
    events = query(resources["store"], "SELECT count(*) AS n FROM annotations")["n"][0]
    decided = desk.decide_track("demo-shapes", track.video_id, int(track.track_id), "reject", track.reviewer)
    assert decided["frames"] == track.frames and decided["written"] == track.frames
    assert query(resources["store"], "SELECT count(*) AS n FROM annotations")["n"][0] == events + track.frames
    statuses = query(resources["store"], """
        SELECT DISTINCT c.status, c.annotator FROM annotation_state c JOIN prediction_tracks t USING (prediction_id)
        WHERE t.track_id = ? AND c.status <> 'RETIRED'""", [int(track.track_id)])
    assert statuses.values.tolist() == [["REJECTED", track.reviewer]]
    relabel = desk.decide_track("demo-shapes", track.video_id, int(track.track_id), "correct", track.reviewer,
                                concept="sign")
    assert relabel["written"] == 2 * track.frames  # each frame's annotation retired and its correction added


@pytest.mark.skipif(not BROWSER_AVAILABLE, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_track_review_in_chromium_writes_one_event_per_frame(tracked_home: tuple[Path, list], tmp_path: Path
                                                             ) -> None:
    from playwright.sync_api import expect, sync_playwright

    home = copy_home(tracked_home[0], tmp_path / "home", "demo-shapes.yaml")
    resources = build_resources(Settings(home=home, task_files=(str(home / "demo-shapes.yaml"),)))
    box = query(resources["store"], """
        SELECT c.annotation_id, c.input_id, r.reviewer, t.track_id,
               (SELECT count(*) FROM annotation_state o JOIN prediction_tracks u USING (prediction_id)
                WHERE u.track_id = t.track_id AND o.status <> 'RETIRED') AS frames
        FROM annotation_state c JOIN prediction_tracks t USING (prediction_id)
        JOIN review_assignments r ON r.task = c.task AND r.input_id = c.input_id
        WHERE c.status = 'AWAITING_REVIEW' ORDER BY frames DESC, c.input_id LIMIT 1""").iloc[0]
    events = query(resources["store"], "SELECT count(*) AS n FROM annotations")["n"][0]
    with review_server(resources) as (port, app), sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = open_review_page(browser, port, app, box.reviewer, box.input_id, (1280, 720))
            row = page.locator(f'#boxes .box[data-id="{box.annotation_id}"]')
            expect(row.locator(".track")).to_have_text(f"track {box.track_id} · {box.frames} frames")
            row.click()
            # The track's frames as a strip of crops, played through.
            expect(page.locator("#track-frames img")).to_have_count(int(box.frames))
            page.wait_for_function("[...document.querySelectorAll('#track-frames img')].every((i) => i.complete && "
                                   "i.naturalWidth > 0)")
            first = page.locator("#track-frames").get_attribute("data-frame")
            page.locator("#track-play").click()
            page.wait_for_function(f"document.querySelector('#track-frames').dataset.frame !== '{first}'")
            page.locator("#track-play").click()
            expect(page.locator("#track-play")).to_have_text("Play")
            page.keyboard.press("r")
            expect(page.locator(f'#boxes .box[data-id="{box.annotation_id}"] .REJECTED')).to_have_count(1)
        finally:
            browser.close()
    assert query(resources["store"], "SELECT count(*) AS n FROM annotations")["n"][0] == events + box.frames
    rejected = query(resources["store"], "SELECT count(*) AS n FROM annotation_state c JOIN prediction_tracks t "
                                         "USING (prediction_id) WHERE t.track_id = ? AND c.status = 'REJECTED'",
                     [int(box.track_id)])
    assert rejected["n"][0] == box.frames


def test_the_mot_export_reads_back_as_the_tracks_of_the_version(tracked_home: tuple[Path, list], tmp_path: Path
                                                                ) -> None:
    home = copy_home(tracked_home[0], tmp_path / "home", "demo-shapes.yaml")
    resources = build_resources(Settings(home=home, task_files=(str(home / "demo-shapes.yaml"),)))
    from apps.review_desk import ReviewDesk

    desk = ReviewDesk(resources["store"], resources["tasks"].load())
    tracks = query(resources["store"], "SELECT DISTINCT video_id, track_id FROM prediction_tracks ORDER BY 2")
    for video_id, track_id in tracks.itertuples(index=False):  # a lead accepts every track
        with contextlib.suppress(ReviewError):  # a track whose predictions were all discarded has no annotation
            desk.decide_track("demo-shapes", video_id, int(track_id), "accept", "lena", lead=True)
    autoannotate("version", "create", "--name", "tracks", home=home)
    autoannotate("export", "--version", "demo-shapes@tracks", "--format", "mot", "--out", str(tmp_path / "mot"),
                 home=home)
    expected = query(resources["store"], """
        SELECT f.frame_index + 1 AS frame, t.track_id, round(c.x1 * i.width, 2) AS left, c.concept
        FROM annotation_state c JOIN prediction_tracks t USING (prediction_id) JOIN video_frames f USING (input_id)
        JOIN inputs i USING (input_id) WHERE c.status = 'SUCCESS' ORDER BY 1, 2""")
    assert len(expected) > 0
    sequences = list((tmp_path / "mot").glob("*/gt/gt.txt"))
    assert [p.parent.parent.name.split("-")[0] for p in sequences] == ["street"]
    lines = [line.split(",") for line in sequences[0].read_text().splitlines()]
    names = [line.split(" ", 1)[1] for line in (tmp_path / "mot" / "classes.txt").read_text().splitlines()]
    read_back = sorted((int(f), int(i), float(left), names[int(c)]) for f, i, left, _, _, _, _, c, _ in lines)
    assert read_back == sorted(expected.itertuples(index=False, name=None))
    info = (sequences[0].parent.parent / "seqinfo.ini").read_text()
    assert "frameRate=10" in info and "seqLength=" in info and "imWidth=480" in info and "imHeight=360" in info


@pytest.mark.parametrize("tracker", ["bytetrack", "botsort"])
def test_both_trackers_keep_two_moving_objects_apart(tracker: str) -> None:
    from services.tracking import track_ids

    frames = [[{"prediction_id": f"a{t}", "cls": 0, "confidence": 0.9, "x1": 10 + 5 * t, "y1": 10, "x2": 60 + 5 * t,
                "y2": 60},
               {"prediction_id": f"b{t}", "cls": 1, "confidence": 0.8, "x1": 300 - 5 * t, "y1": 200,
                "x2": 350 - 5 * t, "y2": 250}] for t in range(12)]
    ids = track_ids(tracker, frames)
    assert len(ids) == 24
    assert len({ids[f"a{t}"] for t in range(12)}) == 1 and len({ids[f"b{t}"] for t in range(12)}) == 1
    assert ids["a0"] != ids["b0"]


FAR_TIMESTAMPS = """
import fractions, sys
import av, numpy as np
from pathlib import Path
from core.video import VideoRule, sample_video

path = Path(sys.argv[1])
with av.open(str(path), "w") as container:
    stream = container.add_stream("mjpeg", rate=10)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
    stream.time_base = fractions.Fraction(1, 1000)
    for i, pts in enumerate([0, 100, 10**15]):  # the last frame claims to come 10^12 s after the first
        frame = av.VideoFrame.from_ndarray(np.random.default_rng(i).integers(0, 256, (48, 64, 3), dtype=np.uint8),
                                           format="rgb24")
        frame.pts, frame.time_base = pts, fractions.Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
sampled = sample_video(path, VideoRule(fps=2.0, skip_similar=1.0))
print(sampled.decoded, [frame.timestamp for frame in sampled.frames])
"""


def test_a_frame_that_claims_a_time_far_away_costs_what_any_frame_costs(tmp_path: Path) -> None:
    """Before, sampling stepped through every sample time up to a frame's claimed time: an 8 KB MKV whose last frame
    says 10^12 s made 2x10^12 steps (it never ended). Run apart, so that a hang is a failure, not a stuck suite."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FAR_TIMESTAMPS, str(tmp_path / "far.mkv")], capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "3 [0.0, 1000000000000.0]"  # 0.1 s is between two samples at 2 a second


def test_frames_larger_than_the_limit_are_refused_from_the_header_before_any_is_decoded(videos: Path) -> None:
    from core.video import VideoTooLarge

    with pytest.raises(VideoTooLarge) as refused:
        sample_video(videos / "distinct.mkv", VideoRule(), max_pixels=10_000)
    assert str(refused.value) == ("distinct.mkv has 160x96 frames, more pixels than the limit of 10000 (inbox "
                                  "max_pixels); none was decoded.")


def test_every_frame_of_a_video_lands_in_one_split_in_every_format(tmp_path: Path) -> None:
    """Two videos of 12 distinct scenes each: before, each frame took its own hash's split (one `pan.mp4` gave
    train 5, val 3, test 1: neighbouring frames on both sides of the validation). Now each video's frames share one
    split in yolo and coco alike, the photos beside them keep their own, and the summary counts the groups."""
    import json

    home = tmp_path / "home"
    inbox = home / "inbox"
    inbox.mkdir(parents=True)
    for video, seed in (("pan.mp4", 9_300), ("drive.mp4", 9_400)):
        scenes = [np.asarray(generate_scene(seed + i, width=320, height=240)[0].convert("RGB")) for i in range(12)]
        write_video(inbox / video, scenes, fps=2)
    for index in range(4):
        generate_scene(9_500 + index, width=320, height=240)[0].save(inbox / f"photo_{index}.jpg")
    env = {"AUTOANNOTATE_VIDEO_FPS": "2", "AUTOANNOTATE_VAL_RATIO": "0.3", "AUTOANNOTATE_TEST_RATIO": "0.2"}
    autoannotate("run", "--version", home=home, env=env)
    resources = build_resources(Settings(home=home))
    video_of = dict(query(resources["store"], "SELECT input_id, video_id FROM video_frames").values.tolist())
    assert len(video_of) == 24 and len(set(video_of.values())) == 2
    [version] = query(resources["store"], "SELECT version_key FROM dataset_versions")["version_key"].tolist()
    for fmt in ("yolo", "coco"):
        out = tmp_path / fmt
        summary = json.loads(autoannotate("export", "--version", version, "--format", fmt, "--out", str(out),
                                          "--negatives", "all", "--json", home=home, env=env).stdout)
        record = json.loads((out / "autoannotate_export.json").read_text())
        if fmt == "yolo":
            split_of_file = {p.name: p.parent.name for p in (out / "images").glob("*/*")}
        else:
            split_of_file = {image["file_name"]: split for split in ("train", "val", "test") for image in
                             json.loads((out / f"annotations_{split}.json").read_text())["images"]}
        split_of_input = {record["images"][name]: split for name, split in split_of_file.items()}
        splits_per_video = {video: {split_of_input[i] for i, v in video_of.items() if v == video and
                                    i in split_of_input} for video in set(video_of.values())}
        assert all(len(splits) == 1 for splits in splits_per_video.values()), (fmt, splits_per_video)
        exported_frames = sum(1 for i in split_of_input if i in video_of)
        assert summary["videos_split_whole"] == 2
        assert summary["split_groups"] == len(split_of_input) - exported_frames + 2
