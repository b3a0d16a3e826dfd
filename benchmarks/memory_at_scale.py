"""Peak memory of one `autoannotate run` over many images: does it grow with the batch?

Synthetic inputs: generated demo scenes (256 px) and the bundled demo detector, so that 10 000 images run in
minutes on a laptop; the photographs and the standard-size model of `realistic_pipeline.py` would take hours
here. What is measured is how memory grows with the number of images in one batch (file bytes, decoded images,
prediction rows), which is the same for any image size once images stream through the detector.

    PYTHONPATH=. .venv/bin/python benchmarks/memory_at_scale.py --images 10000
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from apps.demo_scenes import write_demo_images
from benchmarks.realistic_pipeline import measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    cli = Path(sys.executable).parent / "autoannotate"
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as work:
        for count in args.images:
            inbox, home = Path(work) / f"inbox-{count}", Path(work) / f"home-{count}"
            write_demo_images(inbox, count, seed=77)
            result = measured([str(cli), "run", "--inbox", str(inbox), "--json"], env={"AUTOANNOTATE_HOME": str(home)})
            print(f"{count:>6} demo scenes in one batch: peak RSS {result['rss_mb']:5.0f} MB, "
                  f"{result['wall']:6.1f} s wall (synthetic inputs, bundled demo detector)", flush=True)
            shutil.rmtree(home)
            shutil.rmtree(inbox)


if __name__ == "__main__":
    main()
