"""The `inputs` asset, materialized for real: every format, every rejection, idempotent re-runs."""

import io
import shutil
from pathlib import Path

import dagster as dg
from helpers import image_bytes, materialize_batch, new_batch, query, table_count
from PIL import Image

from assets.ingestion import inputs, inputs_schema_check, rejected_inputs_schema_check
from resources.inbox import Inbox

CHECKS = [inputs_schema_check, rejected_inputs_schema_check]


def fill_inbox(inbox: Path) -> None:
    """Eight distinct good images, one duplicate, one ignored hidden file, seven bad files."""
    for index, fmt in enumerate(["JPEG", "PNG", "BMP", "WEBP", "TIFF"]):
        suffix = {"JPEG": "jpg", "TIFF": "tif"}.get(fmt, fmt.lower())
        (inbox / f"good_{fmt.lower()}.{suffix}").write_bytes(image_bytes(fmt, colour=(10 * index, 80, 200)))
    nested = inbox / "phone" / "2026"
    nested.mkdir(parents=True)
    (nested / "rotated.jpeg").write_bytes(image_bytes("JPEG", size=(64, 48), exif_orientation=6, colour=(1, 2, 3)))
    (inbox / "gray.png").write_bytes(image_bytes("PNG", mode="L", colour=(77,)))
    (inbox / "alpha.png").write_bytes(image_bytes("PNG", mode="RGBA", colour=(1, 200, 3, 128)))
    shutil.copy(inbox / "good_png.png", inbox / "copy_of_png.png")
    (inbox / ".hidden.jpg").write_bytes(image_bytes("JPEG"))

    (inbox / "empty.jpg").write_bytes(b"")
    (inbox / "notes.jpg").write_text("not an image at all")
    truncated = image_bytes("JPEG", size=(300, 300))
    (inbox / "truncated.jpg").write_bytes(truncated[: len(truncated) // 2])
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="GIF")
    (inbox / "anim.gif").write_bytes(buffer.getvalue())
    (inbox / "readme.txt").write_text("hello")
    (inbox / "huge.png").write_bytes(image_bytes("PNG", size=(1001, 1000)))
    (inbox / "dangling.jpg").symlink_to(inbox / "nowhere.jpg")


def test_ingestion_counts_every_case_exactly(resources: dict, inbox: Path, instance: dg.DagsterInstance) -> None:
    resources["inbox"] = Inbox(**{**resources["inbox"].model_dump(), "max_pixels": 1_000_000})
    fill_inbox(inbox)
    batch = new_batch(resources, instance)
    result = materialize_batch([inputs], resources, instance, batch, CHECKS)

    assert table_count(resources, "inputs") == 8
    assert table_count(resources, "input_sources") == 9
    assert table_count(resources, "input_sources", "duplicate_of_earlier") == 1
    reasons = query(resources["store"],
        "SELECT reason_code, count(*) AS n FROM rejected_inputs GROUP BY 1 ORDER BY 1")
    assert dict(zip(reasons["reason_code"], reasons["n"])) == {
        "corrupt": 1, "empty": 1, "not_an_image": 1, "too_many_pixels": 1, "unreadable": 1, "unsupported_format": 2,
    }
    rotated = query(resources["store"], "SELECT width, height FROM inputs WHERE uri LIKE '%rotated.jpeg'")
    assert rotated.to_dict("records") == [{"width": 48, "height": 64}]
    stored = [p for p in Path(resources["images"].root).rglob("*") if p.is_file()]
    assert len(stored) == 8

    metadata = result.asset_materializations_for_node("inputs")[0].metadata
    assert metadata["new_inputs"].value == 8
    assert metadata["duplicates"].value == 1
    assert metadata["rejected"].value == 7
    assert all(check.passed for check in result.get_asset_check_evaluations())


def test_rematerializing_a_partition_gives_the_same_rows(resources: dict, inbox: Path,
                                                         instance: dg.DagsterInstance) -> None:
    fill_inbox(inbox)
    batch = new_batch(resources, instance)
    counts = []
    for _ in range(2):
        materialize_batch([inputs], resources, instance, batch, CHECKS)
        counts.append([table_count(resources, t) for t in ("inputs", "input_sources", "rejected_inputs")])
    assert counts[0] == counts[1] == [9, 10, 6]


def test_same_bytes_in_a_later_batch_are_a_duplicate_not_a_new_input(
        resources: dict, inbox: Path, instance: dg.DagsterInstance) -> None:
    (inbox / "a.png").write_bytes(image_bytes("PNG"))
    materialize_batch([inputs], resources, instance, new_batch(resources, instance))
    (inbox / "later").mkdir()
    (inbox / "later" / "a_again.png").write_bytes(image_bytes("PNG"))
    second = new_batch(resources, instance, [inbox / "later" / "a_again.png"])
    result = materialize_batch([inputs], resources, instance, second)
    assert table_count(resources, "inputs") == 1
    assert result.asset_materializations_for_node("inputs")[0].metadata["duplicates"].value == 1


def test_a_file_removed_from_the_inbox_keeps_its_rows_on_rerun(
        resources: dict, inbox: Path, instance: dg.DagsterInstance) -> None:
    (inbox / "a.png").write_bytes(image_bytes("PNG"))
    batch = new_batch(resources, instance)
    materialize_batch([inputs], resources, instance, batch)
    (inbox / "a.png").unlink()
    materialize_batch([inputs], resources, instance, batch)
    assert table_count(resources, "inputs") == 1
    assert table_count(resources, "input_sources") == 1
