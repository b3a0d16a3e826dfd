"""The code location loads the way `dagster dev` and the daemon load it."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from helpers import write_task_file

from resources.detector import Detector

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


def test_a_cli_run_reads_the_settings_once_and_builds_the_resources_once(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`autoannotate run --inbox X --task T`: the versions step once built its own resources, without X and T."""
    import apps.cli
    import pipelines.definitions
    from apps.demo_scenes import write_demo_images
    from core.settings import Settings

    inbox = tmp_path / "elsewhere"
    write_demo_images(inbox, 3, seed=5)
    task = write_task_file(tmp_path, name="counted")
    reads, builds = [], []
    original_read, original_build = Settings.from_env.__func__, pipelines.definitions.build_resources

    def counting_read(cls, environ=None):
        reads.append(1)
        return original_read(cls, environ)

    def counting_build(settings, show_variables=False):
        builds.append(settings)
        return original_build(settings, show_variables)

    monkeypatch.setattr(Settings, "from_env", classmethod(counting_read))
    monkeypatch.setattr(pipelines.definitions, "build_resources", counting_build)
    assert apps.cli.main(["run", "--inbox", str(inbox), "--task-file", str(task), "--json", "--version"]) == 0
    assert len(reads) == 1
    assert [(b.inbox_path, b.task_files) for b in builds] == [(inbox.resolve(), (str(task),))]


def test_the_code_location_shows_configured_variables_and_resolves_them(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import Settings
    from pipelines.definitions import build_definitions

    monkeypatch.setenv("AUTOANNOTATE_BATCH_SIZE", "3")
    definitions = build_definitions(Settings.from_env(), show_variables=True)
    detector = definitions.resources["detector"]
    assert detector.model_dump()["batch_size"] == dg.EnvVar.int("AUTOANNOTATE_BATCH_SIZE")

    @dg.asset
    def batch_size_seen(detector: Detector) -> int:
        return detector.batch_size

    result = dg.materialize([batch_size_seen], resources={"detector": detector})
    assert result.output_for_node("batch_size_seen") == 3


def test_every_table_column_has_a_description_in_the_ui() -> None:
    from pipelines.definitions import defs

    tables = 0
    for asset_key in defs.resolve_all_asset_keys():
        metadata = defs.resolve_assets_def(asset_key).specs_by_key[asset_key].metadata
        if "table" in metadata:  # every asset that writes a table (store_maintenance writes none)
            tables += 1
            assert all(column.description for column in metadata["dagster/column_schema"].columns), asset_key
    assert tables == 6  # inputs, predictions, annotations, dataset_versions, concept_predictions, concept_annotations


def test_the_generated_dagster_yaml_follows_the_settings_and_keeps_a_users_edits(tmp_path: Path) -> None:
    import yaml

    from pipelines.instance import prepare_dagster_home

    config = tmp_path / "dagster.yaml"
    prepare_dagster_home(tmp_path)
    assert yaml.safe_load(config.read_text())["concurrency"]["pools"]["default_limit"] == 1
    prepare_dagster_home(tmp_path, writers=8, storage="postgres:dbname=d host=h port=5 user=u password=p")
    written = yaml.safe_load(config.read_text())
    assert written["concurrency"]["pools"]["default_limit"] == 8
    assert written["storage"]["postgres"]["postgres_db"] == {"hostname": "h", "port": 5, "username": "u",
                                                             "password": "p", "db_name": "d",
                                                             "scheme": "postgresql+psycopg2"}
    config.write_text(config.read_text() + "# mine\n")
    prepare_dagster_home(tmp_path)  # an edited file is the user's
    assert config.read_text().endswith("# mine\n")
