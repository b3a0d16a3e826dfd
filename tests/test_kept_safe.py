"""Nothing an export does reaches what autoannotate keeps: `--overwrite` refuses the home, the inbox, the stores
and any folder holding or inside them, and a folder that is not an earlier export; exported images are files of
their own, so writing into one leaves the store and the next export as they were; a damaged stored image is
refused by name, by exports and version builds alike."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from helpers import autoannotate, exported_input_ids
from PIL import Image

from apps.demo_scenes import write_demo_images


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def versioned_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("kept-home")
    write_demo_images(home / "inbox", 6, seed=95)
    autoannotate("run", "--version", home=home)
    versions = json.loads(autoannotate("version", "list", "--json", home=home).stdout)["versions"]
    return home, versions[0]["version_key"]


def test_overwrite_refuses_what_autoannotate_keeps_and_what_is_no_export(versioned_home: tuple[Path, str],
                                                                          tmp_path: Path) -> None:
    home, version = versioned_home
    before = tree(home)
    export = ["export", "--version", version, "--format", "yolo", "--overwrite", "--out"]
    for out, why in ((home, f"is the home ({home})"), (home / "images", f"is the image store ({home / 'images'})"),
                     (home / "inbox" / "sub", f"lies inside the inbox ({home / 'inbox'})"),
                     (home / "versions" / "x", f"lies inside the home ({home})"), (home.parent, "holds the home")):
        refused = autoannotate(*export, str(out), home=home, check=False)
        assert refused.returncode == 1, out
        assert refused.stderr.startswith(f"autoannotate: --out {out} {why}") and "--overwrite would replace what " \
            "autoannotate keeps" in refused.stderr, refused.stderr
    outside_inbox = tmp_path / "inbox"
    write_demo_images(outside_inbox, 1, seed=96)
    refused = autoannotate(*export, str(outside_inbox), home=home, env={"AUTOANNOTATE_INBOX": str(outside_inbox)},
                           check=False)
    assert refused.returncode == 1 and f"is the inbox ({outside_inbox})" in refused.stderr
    assert len(list(outside_inbox.iterdir())) == 1
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("mine")
    refused = autoannotate(*export, str(notes), home=home, check=False)
    assert refused.returncode == 1 and "holds 1 entries but no autoannotate_export.json" in refused.stderr
    assert (notes / "thesis.txt").read_text() == "mine"
    assert tree(home) == before  # every refusal left the home as it was


def test_writing_into_an_export_leaves_the_store_and_the_next_export_unchanged(versioned_home: tuple[Path, str],
                                                                               tmp_path: Path) -> None:
    home, version = versioned_home
    first = tmp_path / "first"
    autoannotate("export", "--version", version, "--format", "yolo", "--out", str(first), home=home)
    exported = sorted((first / "images").rglob("*.jpg"))
    assert exported and all(p.stat().st_nlink == 1 for p in exported)  # copies, never the store's inode
    stored = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (home / "images").rglob("*")
              if p.is_file() and len(p.name) == 64}
    victim = exported[0]
    Image.open(victim).rotate(90).save(victim)  # a user edits an exported photo in place
    assert {name: hashlib.sha256((home / "images" / name[:2] / name).read_bytes()).hexdigest()
            for name in stored} == stored
    second = tmp_path / "second"
    autoannotate("export", "--version", version, "--format", "yolo", "--out", str(second), home=home)
    original = tree(first)
    original.pop(victim.relative_to(first).as_posix())
    again = tree(second)
    assert again[victim.relative_to(first).as_posix()] == stored[exported_input_ids(first)[victim.stem]]
    assert {k: v for k, v in again.items() if k in original} == original

    linked = tmp_path / "linked"
    autoannotate("export", "--version", version, "--format", "yolo", "--out", str(linked), "--link", "hardlink",
                 home=home)
    image = next((linked / "images").rglob("*.jpg"))
    assert image.stat().st_nlink >= 2 and image.stat().st_mode & 0o222 == 0  # read-only, both names


def test_a_damaged_stored_image_is_refused_by_name(versioned_home: tuple[Path, str], tmp_path: Path) -> None:
    home, version = versioned_home
    out = tmp_path / "out"
    autoannotate("export", "--version", version, "--format", "coco", "--out", str(out), home=home)
    input_id = next(iter(exported_input_ids(out).values()))
    stored = home / "images" / input_id[:2] / input_id
    kept = stored.read_bytes()
    stored.chmod(0o644)
    try:
        stored.write_bytes(kept[:-10] + b"0123456789")
        failed = autoannotate("export", "--version", version, "--format", "coco", "--out", str(tmp_path / "again"),
                              home=home, check=False)
        assert failed.returncode == 1
        assert f"The stored image {input_id} is damaged: its bytes hash to" in failed.stderr
        assert "nothing was exported" in failed.stderr
        assert not (tmp_path / "again").exists()

        # Nor is a version built over it, named or the day's rebuild: nothing of either is written.
        versions_before = autoannotate("version", "list", "--json", home=home).stdout
        manifests = tree(home / "versions")
        named = autoannotate("version", "create", "--name", "release-1", home=home, check=False)
        assert named.returncode == 1
        assert named.stderr.strip() == (
            f"autoannotate: The stored image {input_id} is damaged: its bytes hash to "
            f"{hashlib.sha256(stored.read_bytes()).hexdigest()[:16]}..., not its id ({stored}); version "
            "demo-shapes@release-1 was not built. `autoannotate check` lists every damaged file.")
        rebuilt = autoannotate("version", "create", "--date", version.split("@")[1], home=home, check=False)
        assert rebuilt.returncode == 1 and f"The stored image {input_id} is damaged" in rebuilt.stderr
        assert f"version {version} was not built" in rebuilt.stderr
        assert autoannotate("version", "list", "--json", home=home).stdout == versions_before
        assert tree(home / "versions") == manifests
    finally:
        stored.write_bytes(kept)
