"""What keeping the store safe costs: exports that copy instead of hard-linking, the sha256 check of every exported
image, and `autoannotate check` over a large image store.

(1) `--export-photos` real-photo JPEGs (as `realistic_pipeline.py` makes them: scikit-image's photographs, random
    crops, 0.3-12 MP) are imported with one box each (a YOLO dataset, as a team's existing labels come), frozen as a
    version, and exported as YOLO three times: `--link copy` (the default: a reflink where the filesystem has them,
    else a copy), `--link hardlink`, `--link symlink`. Wall time of each export and the new disk blocks it used;
    then the hashing alone (sha256 of every exported image, what each export checks).
(2) `--check-photos` more such photos (0.3-2 MP) are imported the same way and `autoannotate check` runs over the
    home: wall time and images hashed per second.
(3) A version frozen over that home: its build hashes every image it holds against its id (as every build does).

    PYTHONPATH=. .venv/bin/python benchmarks/kept_safe.py --export-photos 1000 --check-photos 10000
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.realistic_pipeline import make_photos
from core.formats.images import FICLONE
from core.settings import DEMO_TASK

CLI = Path(sys.executable).parent / "autoannotate"


def autoannotate(home: Path, *args: str) -> dict:
    result = subprocess.run([str(CLI), *args, "--json"], env={**os.environ, "AUTOANNOTATE_HOME": str(home),
                                                               "AUTOANNOTATE_TASKS": str(DEMO_TASK)},
                            capture_output=True, text=True)
    if result.returncode not in (0, 1) or not result.stdout:
        raise SystemExit(f"autoannotate {' '.join(args)} failed: {result.stderr}")
    return json.loads(result.stdout)


def imported_home(work: Path, name: str, count: int, seed: int, max_megapixels: float) -> tuple[Path, list[Path]]:
    """A home holding `count` real photos imported as a YOLO dataset with one box each, and the photos."""
    dataset = work / f"{name}-dataset"
    photos = make_photos(dataset / "images", count, seed=seed, max_megapixels=max_megapixels)
    (dataset / "labels").mkdir()
    for photo in photos:
        (dataset / "labels" / f"{photo.stem}.txt").write_text("0 0.5 0.5 0.4 0.3\n")
    (dataset / "data.yaml").write_text("path: .\ntrain: images\nnames: [ball]\n")
    home = work / f"{name}-home"
    autoannotate(home, "import", "--format", "yolo", str(dataset), "--user", "bench", "--task", "demo-shapes")
    return home, photos


def disk_blocks(folder: Path) -> int:
    """Bytes of disk the files under `folder` hold of their own (a hard link or a reflink holds none new)."""
    seen, total = set(), 0
    for path in folder.rglob("*"):
        stat = path.lstat()
        if path.is_file() and not path.is_symlink() and (stat.st_dev, stat.st_ino) not in seen:
            seen.add((stat.st_dev, stat.st_ino))
            total += stat.st_blocks * 512 if stat.st_nlink == 1 else 0
    return total


def reflinks_here(folder: Path) -> bool:
    source, target = folder / "reflink-probe", folder / "reflink-probe-copy"
    source.write_bytes(b"x" * 4096)
    try:
        with open(source, "rb") as read, open(target, "wb") as write:
            fcntl.ioctl(write.fileno(), FICLONE, read.fileno())
        return True
    except OSError:
        return False
    finally:
        source.unlink()
        target.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export-photos", type=int, default=1000)
    parser.add_argument("--check-photos", type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autoannotate-kept-safe-") as scratch:
        work = Path(scratch)
        print(f"reflinks on this filesystem: {'yes' if reflinks_here(work) else 'no (copy means a full copy)'}")
        home, photos = imported_home(work, "export", args.export_photos, seed=11, max_megapixels=12.0)
        megabytes = sum(p.stat().st_size for p in photos) / 1e6
        [version] = autoannotate(home, "version", "create", "--task", "demo-shapes", "--name", "bench")["versions"]
        print(f"(1) export of {len(photos)} real photos ({megabytes:.0f} MB) as YOLO, version {version}:")
        print(f"    {'link':10} {'seconds':>8} {'new disk MB':>12}")
        for link in ("copy", "hardlink", "symlink"):
            out = work / f"export-{link}"
            started = time.perf_counter()
            autoannotate(home, "export", "--version", version, "--format", "yolo", "--out", str(out), "--link", link)
            seconds = time.perf_counter() - started
            print(f"    {link:10} {seconds:8.2f} {disk_blocks(out) / 1e6:12.1f}")
        exported = sorted((work / "export-copy").rglob("*.jpg"))
        started = time.perf_counter()
        for path in exported:
            with open(path, "rb") as file:
                hashlib.file_digest(file, "sha256")
        hashing = time.perf_counter() - started
        print(f"    hashing alone (sha256 of the {len(exported)} exported images): {hashing:.2f} s, "
              f"{megabytes / hashing:.0f} MB/s")

        home, photos = imported_home(work, "check", args.check_photos, seed=12, max_megapixels=2.0)
        megabytes = sum(p.stat().st_size for p in photos) / 1e6
        started = time.perf_counter()
        report = autoannotate(home, "check")
        seconds = time.perf_counter() - started
        stored = report["checked"]["stored images and videos"]
        print(f"(2) autoannotate check over {stored} stored real photos ({megabytes:.0f} MB), "
              f"{report['checked']['rows']} rows: {seconds:.2f} s wall ({report['seconds']:.2f} s in the check), "
              f"{stored / report['seconds']:.0f} images/s, {len(report['damaged'])} damaged")
        started = time.perf_counter()
        autoannotate(home, "version", "create", "--task", "demo-shapes", "--name", "bench")
        print(f"(3) version create --name over the same {stored} photos, each hashed against its id first: "
              f"{time.perf_counter() - started:.2f} s wall")


if __name__ == "__main__":
    main()
