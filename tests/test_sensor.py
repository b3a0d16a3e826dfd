"""The inbox sensor through build_sensor_context: settle rule, ignored names, cursor, no double requests."""

import json
import os
import time
from pathlib import Path

import dagster as dg
import pytest
from helpers import image_bytes

from core.settings import Settings
from pipelines.sensors import build_sensors
from resources.inbox import Inbox

inbox_sensor = {s.name: s for s in build_sensors(Settings(home=Path("unused")))}["inbox_sensor"]


@pytest.fixture
def inbox_resource(home: Path, inbox: Path) -> Inbox:
    return Inbox(path=str(inbox), batches=str(home / "batches"), settle_seconds=60)


def tick(inbox: Inbox, cursor: str | None, instance: dg.DagsterInstance):
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"inbox": inbox}) as context:
        return inbox_sensor(context)


def requested_files(inbox: Path, request: dg.RunRequest) -> list[Path]:
    """The files a run request asks its run to pin and ingest."""
    return [inbox / name for name in request.run_config["ops"]["inputs"]["config"]["files"]]


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_hidden_and_partial_files_are_ignored(inbox_resource: Inbox, inbox: Path,
                                              instance: dg.DagsterInstance) -> None:
    for name in (".hidden.jpg", "upload.jpg.part", "copy.tmp", "edit.jpg~"):
        (inbox / name).write_bytes(image_bytes("JPEG"))
        age(inbox / name, 600)
    result = tick(inbox_resource, None, instance)
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == f"No new files in {inbox}."


def test_files_still_changing_wait_for_the_next_tick(inbox_resource: Inbox, inbox: Path,
                                                     instance: dg.DagsterInstance) -> None:
    growing = inbox / "growing.jpg"
    growing.write_bytes(image_bytes("JPEG")[:100])
    first = tick(inbox_resource, None, instance)
    assert first.run_requests == [] or first.run_requests is None
    assert "1 file(s) still being written" in first.skip_reason.skip_message

    growing.write_bytes(image_bytes("JPEG"))  # the copy went on: size changed since the last tick
    second = tick(inbox_resource, first.cursor, instance)
    assert not second.run_requests
    third = tick(inbox_resource, second.cursor, instance)  # unchanged since the previous tick: settled
    assert len(third.run_requests) == 1
    assert requested_files(inbox, third.run_requests[0]) == [growing]


def test_old_files_are_taken_at_once_and_never_requested_twice(inbox_resource: Inbox, inbox: Path,
                                                               instance: dg.DagsterInstance) -> None:
    for index in range(3):
        (inbox / f"{index}.png").write_bytes(image_bytes("PNG", colour=(index, 0, 0)))
        age(inbox / f"{index}.png", 120)
    first = tick(inbox_resource, None, instance)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.run_key == request.partition_key
    assert first.dynamic_partitions_requests[0].partition_keys == [request.partition_key]
    cursor = json.loads(first.cursor)
    assert sorted(cursor["requested"]) == ["0.png", "1.png", "2.png"]

    # An overlapping tick that still has the old cursor asks for the same run key: Dagster launches it once.
    overlapping = tick(inbox_resource, None, instance)
    assert overlapping.run_requests[0].run_key == request.run_key

    again = tick(inbox_resource, first.cursor, instance)  # the cursor round-trips through JSON
    assert isinstance(again, dg.SkipReason)

    (inbox / "3.png").write_bytes(image_bytes("PNG", colour=(9, 9, 9)))
    age(inbox / "3.png", 120)
    later = tick(inbox_resource, first.cursor, instance)
    assert requested_files(inbox, later.run_requests[0]) == [inbox / "3.png"]


def test_files_a_cli_run_already_pinned_are_not_requested_again(inbox_resource: Inbox, inbox: Path,
                                                                instance: dg.DagsterInstance) -> None:
    """One truth for the inbox: `autoannotate run` pins its files as a batch (as the sensor does); turning the
    sensor on afterwards must not run them again as a new batch."""
    for index in range(3):
        (inbox / f"{index}.png").write_bytes(image_bytes("PNG", colour=(index, 0, 0)))
        age(inbox / f"{index}.png", 120)
    inbox_resource.write_batch(["0.png", "1.png", "2.png"])  # what the CLI's run does before it ingests
    result = tick(inbox_resource, None, instance)
    assert isinstance(result, dg.SkipReason) and result.skip_message == f"No new files in {inbox}."
    (inbox / "3.png").write_bytes(image_bytes("PNG", colour=(3, 0, 0)))
    age(inbox / "3.png", 120)
    result = tick(inbox_resource, None, instance)
    assert requested_files(inbox, result.run_requests[0]) == [inbox / "3.png"]


def test_a_tick_writes_nothing_and_its_run_pins_the_batch(inbox_resource: Inbox, inbox: Path, home: Path,
                                                          resources: dict, instance: dg.DagsterInstance) -> None:
    """"Preview tick result" in the UI evaluates the sensor: that must leave no trace. The run it asks for pins
    the batch when it starts, and then the CLI and later ticks see those files as taken."""
    from assets.ingestion import inputs
    from assets.partitions import batch_partitions

    for index in range(2):
        (inbox / f"{index}.png").write_bytes(image_bytes("PNG", colour=(index, 5, 0)))
        age(inbox / f"{index}.png", 120)
    (request,) = tick(inbox_resource, None, instance).run_requests
    assert not (home / "batches").exists() or list((home / "batches").iterdir()) == []
    assert inbox_resource.pinned_signatures() == {}

    instance.add_dynamic_partitions(batch_partitions.name, [request.partition_key])
    dg.materialize([inputs], partition_key=request.partition_key, run_config=request.run_config, instance=instance,
                   resources={**resources, "inbox": inbox_resource})
    assert inbox_resource.batch_files(request.partition_key) == ([inbox / "0.png", inbox / "1.png"], [])
    from apps.runner import pending_files

    assert pending_files(inbox_resource).ready == []  # a CLI run now leaves them alone
    # A tick that lost its cursor asks for the very same run again, which Dagster launches once.
    assert tick(inbox_resource, None, instance).run_requests[0].run_key == request.run_key


def test_a_name_that_is_not_utf8_is_requested_and_its_run_rejects_it_while_the_sensor_goes_on(
        inbox_resource: Inbox, inbox: Path, resources: dict, instance: dg.DagsterInstance) -> None:
    """Before, the tick failed on such a name ("surrogates not allowed") at every evaluation: the sensor stopped."""
    from assets.ingestion import inputs
    from assets.partitions import batch_partitions

    bad = Path(os.fsdecode(os.fsencode(inbox) + b"/bad\xff\xfe.png"))
    bad.write_bytes(image_bytes("PNG"))
    (inbox / "good.png").write_bytes(image_bytes("PNG", colour=(1, 2, 3)))
    for path in (bad, inbox / "good.png"):
        age(path, 120)
    (request,) = tick(inbox_resource, None, instance).run_requests
    instance.add_dynamic_partitions(batch_partitions.name, [request.partition_key])
    result = dg.materialize([inputs], partition_key=request.partition_key, run_config=request.run_config,
                            instance=instance, resources={**resources, "inbox": inbox_resource})
    assert result.success
    store = resources["store"]
    assert store.read(lambda s: s.scalar("SELECT count(*) FROM inputs")) == 1
    assert store.read(lambda s: s.scalar("SELECT list(reason_code) FROM rejected_inputs")) == ["bad_name"]
    (inbox / "later.png").write_bytes(image_bytes("PNG", colour=(9, 9, 9)))
    age(inbox / "later.png", 120)
    (later,) = tick(inbox_resource, None, instance).run_requests  # the next tick takes only the new file
    assert requested_files(inbox, later) == [inbox / "later.png"]
