"""The catch-up schedule: batches never annotated, or predicted with weights the tasks no longer use."""

from pathlib import Path

import dagster as dg
from helpers import materialize_batch, new_batch, write_task_file

from apps.demo_scenes import write_demo_images
from assets.inference import predictions
from assets.ingestion import inputs
from assets.triage import annotations
from core.settings import Settings
from pipelines.schedules import build_schedules
from resources.tasks import LabelingTasks

SCHEDULES = {schedule.name: schedule for schedule in build_schedules(Settings(home=Path("unused")))}


def evaluate(resources: dict, instance: dg.DagsterInstance):
    # Used as a context manager: the context sets Dagster's defs-state storage for the instance, and
    # leaving it set after the instance is gone breaks later materializations in this process.
    with dg.build_schedule_context(instance=instance, resources={
            "tasks": resources["tasks"], "detector": resources["detector"]}) as context:
        return SCHEDULES["catch_up_schedule"](context)


def test_catch_up_requests_pending_and_stale_batches_only(resources: dict, inbox: Path, tmp_path: Path) -> None:
    # A schedule context needs an instance with a ref (as the daemon's): a local one on disk.
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    write_demo_images(inbox / "a", 2, seed=1)
    done = new_batch(resources, instance, sorted((inbox / "a").iterdir()))
    materialize_batch([inputs, predictions, annotations], resources, instance, done)
    assert isinstance(evaluate(resources, instance), dg.SkipReason)

    write_demo_images(inbox / "b", 2, seed=2)
    waiting = new_batch(resources, instance, sorted((inbox / "b").iterdir()))
    requests = evaluate(resources, instance)
    assert [r.partition_key for r in requests] == [waiting]

    other_weights = tmp_path / "retrained.pt"
    other_weights.write_bytes(Path(resources["detector"].weights).read_bytes() + b"\0")  # other bytes, other id
    resources["tasks"] = LabelingTasks(task_files=[str(write_task_file(tmp_path, model={
        "weights": str(other_weights)}))])
    requests = evaluate(resources, instance)
    assert sorted(r.partition_key for r in requests) == sorted([done, waiting])
    assert len({r.run_key for r in requests}) == 2


def test_versions_are_built_after_batches_and_daily_as_a_named_job(home: Path, instance: dg.DagsterInstance) -> None:
    """The versions sensor asks for today's versions once batches were annotated since it last asked (one run for
    many batches); the daily schedule builds the day that just ended; both run the `build_dataset_versions` job."""
    from datetime import UTC, datetime

    from apps.runner import create_versions
    from pipelines.instance import persistent_instance
    from pipelines.sensors import build_sensors

    dataset_versions_sensor = {s.name: s for s in build_sensors(Settings(home=home))}["dataset_versions_sensor"]
    daily_versions_schedule = SCHEDULES["daily_versions_schedule"]

    def tick(cursor: str | None):
        with dg.build_sensor_context(instance=instance, cursor=cursor) as context:
            return dataset_versions_sensor(context), context

    idle, _ = tick(None)
    assert isinstance(idle, dg.SkipReason)  # nothing annotated yet
    for batch in ("b1", "b2"):  # two batches annotated within one interval
        instance.report_runless_asset_event(dg.AssetMaterialization("annotations", partition=batch))
    today = datetime.now(UTC).date().isoformat()
    asked, _ = tick(None)
    (request,) = asked.run_requests
    assert request.partition_key == today and request.job_name in (None, "build_dataset_versions")
    again, _ = tick(asked.cursor)
    assert isinstance(again, dg.SkipReason)  # the same batches ask for nothing more
    instance.report_runless_asset_event(dg.AssetMaterialization("annotations", partition="b3"))
    (later,) = tick(asked.cursor)[0].run_requests
    assert later.run_key != request.run_key

    with dg.build_schedule_context(instance=instance,
                                   scheduled_execution_time=datetime(2026, 11, 24, 0, 15, tzinfo=UTC)) as context:
        daily = daily_versions_schedule(context)
    assert (daily.partition_key, daily.run_key) == ("2026-11-23", "daily-2026-11-23")
    assert dataset_versions_sensor.job_name == daily_versions_schedule.job_name == "build_dataset_versions"

    create_versions(Settings(home=home), today)  # what `version create` and `run --version` do
    runs = persistent_instance(Settings(home=home).dagster_home).get_runs()
    assert [run.job_name for run in runs] == ["build_dataset_versions"]
