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

    definitions = defs()
    keys = {key.to_user_string() for key in definitions.resolve_all_asset_keys()}
    assert {"inputs"} <= keys
    assert definitions.resolve_job_def("annotate_batch") is not None


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

    tables, definitions = 0, defs()
    for asset_key in definitions.resolve_all_asset_keys():
        metadata = definitions.resolve_assets_def(asset_key).specs_by_key[asset_key].metadata
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


def definitions_snapshot(definitions: dg.Definitions) -> dict:
    """What code and people address by name: asset keys and groups, checks, jobs, schedules, sensors."""
    graph = definitions.resolve_asset_graph()
    return {
        "assets": {key.to_user_string(): graph.get(key).group_name for key in sorted(graph.get_all_asset_keys())},
        "checks": sorted(f"{check.asset_key.to_user_string()}:{check.name}" for check in graph.asset_check_keys),
        "jobs": {job.name: type(job.partitions_def).__name__ if job.partitions_def else None
                 for job in sorted(definitions.resolve_all_job_defs(), key=lambda j: j.name)
                 if job.name != "__ASSET_JOB"},
        "schedules": {s.name: (s.job_name, s.cron_schedule, s.default_status.value)
                      for s in sorted(definitions.schedules, key=lambda s: s.name)},
        "sensors": {s.name: (s.job_name, s.minimum_interval_seconds, s.default_status.value)
                    for s in sorted(definitions.sensors, key=lambda s: s.name)},
    }


def test_the_definitions_keep_their_names(tmp_path: Path) -> None:
    """A snapshot: renaming an asset, check, job, schedule or sensor breaks the runner, the sensors, the UI's
    bookmarks and people's backfills, so it must be a decision (update this test), never an accident."""
    from core.settings import Settings
    from pipelines.definitions import build_definitions

    assert definitions_snapshot(build_definitions(Settings(home=tmp_path))) == {
        "assets": {"annotations": "triage", "concept_annotations": "concepts", "concept_classifier": "concepts",
                   "concept_predictions": "concepts", "dataset_versions": "versions", "detector_models": "model_loop",
                   "inputs": "ingestion", "label_audit": "quality", "label_quality": "quality",
                   "predictions": "inference",
                   "store_maintenance": "maintenance"},
        "checks": ["annotations:annotation_state_matches_schema", "annotations:annotations_matches_schema",
                   "annotations:auto_success_passes_upper_rule", "annotations:boxes_are_inside_the_image",
                   "annotations:no_input_has_two_reviewers", "annotations:one_annotation_per_object",
                   "annotations:review_assignments_matches_schema", "annotations:state_is_latest_event",
                   "dataset_versions:dataset_versions_matches_schema", "inputs:inputs_matches_schema",
                   "inputs:rejected_inputs_matches_schema", "label_quality:thresholds_meet_target_precision",
                   "predictions:models_matches_schema", "predictions:predictions_matches_schema"],
        "jobs": {"annotate_batch": "DynamicPartitionsDefinition", "build_dataset_versions": "DailyPartitionsDefinition",
                 "maintain_store": None, "measure_label_quality": None, "train_detectors": "DailyPartitionsDefinition"},
        "schedules": {"catch_up_schedule": ("annotate_batch", "0 * * * *", "STOPPED"),
                      "daily_versions_schedule": ("build_dataset_versions", "15 0 * * *", "RUNNING"),
                      "maintenance_schedule": ("maintain_store", "30 3 * * *", "RUNNING"),
                      "quality_schedule": ("measure_label_quality", "45 0 * * *", "RUNNING")},
        "sensors": {"dataset_versions_sensor": ("build_dataset_versions", 300, "RUNNING"),
                    "inbox_sensor": ("annotate_batch", 30, "STOPPED")},
    }


def test_definitions_follow_the_settings_they_are_built_from(tmp_path: Path) -> None:
    """Partition start, crons, intervals and the executor come from the settings given, not from the environment
    the module was imported in; importing the module reads nothing."""
    from core.settings import Settings
    from pipelines.definitions import build_definitions

    # A setting no one could read: importing the code location must not fail on it, only loading it.
    script = "import pipelines.definitions as d; print('imported', flush=True); d.defs()"
    loaded = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "AUTOANNOTATE_HOME": str(tmp_path), "AUTOANNOTATE_SENSOR_INTERVAL": "x"})
    assert loaded.stdout == "imported\n"
    assert loaded.stderr.strip().endswith("ValueError: AUTOANNOTATE_SENSOR_INTERVAL='x' is not a valid int.")
    chosen = Settings(home=tmp_path, versions_start="2026-01-15", catch_up_cron="5 4 * * *", sensor_interval_s=7,
                      versions_interval_s=11, snapshot_days=3)
    definitions = build_definitions(chosen)
    start = definitions.resolve_job_def("build_dataset_versions").partitions_def.get_first_partition_key()
    assert start == "2026-01-15"
    assert definitions.resolve_assets_def("detector_models").partitions_def.get_first_partition_key() == "2026-01-15"
    assert definitions.get_schedule_def("catch_up_schedule").cron_schedule == "5 4 * * *"
    assert definitions.get_sensor_def("inbox_sensor").minimum_interval_seconds == 7
    assert definitions.get_sensor_def("dataset_versions_sensor").minimum_interval_seconds == 11
    assert definitions.resources["store"].snapshot_days == 3
