"""The package installs quietly and carries its data files."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_builds_without_setuptools_warnings_and_holds_the_review_page(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
                             "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "SetuptoolsDeprecationWarning" not in output and "BuildBackendWarning" not in output, output[-3000:]
    (wheel,) = tmp_path.glob("autoannotate-*.whl")
    assert "apps/templates/review.html" in zipfile.ZipFile(wheel).namelist()
