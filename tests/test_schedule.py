"""The catch-up schedule: batches never annotated, or predicted with weights the tasks no longer use."""

from pathlib import Path

import dagster as dg
from helpers import materialize_batch, new_batch, write_task_file

from apps.demo_scenes import write_demo_images
from assets.inference import predictions
from assets.ingestion import inputs
from assets.triage import annotations
from pipelines.schedules import catch_up_schedule
from resources.tasks import LabelingTasks


def evaluate(resources: dict, instance: dg.DagsterInstance):
    # Used as a context manager: the context sets Dagster's defs-state storage for the instance, and
    # leaving it set after the instance is gone breaks later materializations in this process.
    with dg.build_schedule_context(instance=instance, resources={
            "tasks": resources["tasks"], "detector": resources["detector"]}) as context:
        return catch_up_schedule(context)


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
