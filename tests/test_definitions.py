"""The code location loads the way `dagster dev` and the daemon load it."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_workspace_yaml_validates(tmp_path: Path) -> None:
    env = {**os.environ, "AUTOANNOTATE_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path)}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_definitions_hold_the_pipeline_assets() -> None:
    from pipelines.definitions import defs

    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert {"inputs"} <= keys
    assert defs.resolve_job_def("annotate_batch") is not None
