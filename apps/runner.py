"""One in-process run of the whole graph over the files of the inbox not yet ingested."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import dagster as dg

from assets import metadata_keys
from assets.concepts import concept_annotations, concept_classifier, concept_predictions
from assets.partitions import batch_partitions
from core.locations import joined
from core.settings import Settings
from pipelines.definitions import build_definitions
from pipelines.instance import persistent_instance
from pipelines.recovery import release_abandoned_runs, wait_for_database_slot
from resources.detector import Detector
from resources.inbox import Inbox
from resources.store import DuckDBStore
from resources.tasks import detectors_for, models_by_task
from services.concepts import concept_scorers
from services.ingestion import queue_refused_urls
from storage.blobs import BlobStoreError
from storage.bucket_inbox import BucketInbox
from storage.inbox import file_signature, is_taken, list_inbox_files
from storage.s3_blobs import pinned_name

CONCEPT_ASSETS = [concept_classifier.key, concept_predictions.key, concept_annotations.key]
# Our assets log progress at INFO (every 100 images); Dagster's own step events are DEBUG.
PROGRESS_LOGS = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def instance_of(settings: Settings) -> dg.DagsterInstance:
    """The deployment's persistent Dagster instance (SQLite in the home, or PostgreSQL in team mode)."""
    return persistent_instance(settings.dagster_home, settings.database_writers, settings.dagster_storage)


# How long a run watches files written within the settle time: one unchanged over it has settled, as one unchanged
# between two sensor ticks has.
SETTLE_PROBE_S = 1.0


class InboxScan(NamedTuple):
    ready: list[Path]  # settled and not taken yet (or changed since a batch took them)
    still_written: list[Path]  # changed while the run looked: left for the next run


def pending_files(inbox: Inbox, probe_s: float = SETTLE_PROBE_S) -> InboxScan:
    """Inbox files no batch has taken as they are now (the record the sensor reads too, so neither takes a file
    twice), by the sensor's settle rule: older than the settle time, or unchanged while the run watched them."""
    pinned = inbox.pinned_signatures()
    seen: dict[Path, list[int]] = {}
    for path in list_inbox_files(Path(inbox.path)):
        with contextlib.suppress(OSError):  # vanished between listing and stat: the next run sees what is there
            if not is_taken(pinned, path, signature := file_signature(path)):
                seen[path] = signature
    young = [path for path, signature in seen.items() if time.time() - signature[1] / 1e9 < inbox.settle_seconds]
    if young:
        time.sleep(min(probe_s, inbox.settle_seconds))
    changed = set()
    for path in young:
        try:
            if file_signature(path) != seen[path]:
                changed.add(path)
        except OSError:
            changed.add(path)
    return InboxScan([path for path in seen if path not in changed], sorted(changed))


def pending_objects(inbox: Inbox, home: Path) -> tuple[BucketInbox, list[str], list[str]]:
    """A bucket inbox's settled new and changed objects (by ETag, against the home's record of what runs took),
    as the names a batch pins (`key#etag=...`), and the URLs of those that changed while the run looked."""
    bucket_inbox = BucketInbox.in_home(inbox.path, home)
    try:
        ready, changing = bucket_inbox.new_objects(inbox.settle_seconds)
    except BlobStoreError as error:
        raise BlobStoreError(f"The inbox {inbox.path} cannot be listed ({error}); {error.advice}.") from None
    return (bucket_inbox, [pinned_name(info.key, info.etag) for info in ready],
            [joined(inbox.path, info.key) for info in changing])


def create_batch(inbox: Inbox, files: list[Path] | list[str], instance: dg.DagsterInstance) -> str:
    """Pin the files (paths in a folder inbox, or names relative to the inbox) as a batch and register its
    dynamic partition."""
    key = inbox.write_batch([str(Path(path).relative_to(inbox.path)) if isinstance(path, Path) else path
                             for path in files])
    instance.add_dynamic_partitions(batch_partitions.name, [key])
    return key


def create_bucket_batch(inbox: Inbox, instance: dg.DagsterInstance, cursor: str | None = None
                        ) -> tuple[str | None, str | None]:
    """What the inbox sensor would request now on a bucket inbox, every listed object taken as settled, pinned as a
    batch with its partition (a backfill then runs it on any worker); the batch's key (None: nothing new) and the
    cursor that remembers what was taken."""
    from pipelines.sensors import evaluate_bucket_inbox

    tick = evaluate_bucket_inbox(inbox, cursor, now=float("inf"))
    if not isinstance(tick, dg.SensorResult) or not tick.run_requests:
        return None, cursor
    [request] = tick.run_requests
    key = inbox.write_batch(request.run_config["ops"]["inputs"]["config"]["files"], key=request.partition_key)
    instance.add_dynamic_partitions(batch_partitions.name, [key])
    return key, tick.cursor


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None:  # the innermost cause is the user's error
                error = error.cause
            return error.message.strip().splitlines()[-1].split(": ", 1)[-1]
    return "the run failed; see the Dagster UI for its logs"


def batch_summary(store: DuckDBStore, batch: str, files: int) -> dict:
    """What one batch produced, read back from DuckDB."""
    ingestion, predictions = store.read(lambda s: (s.inputs.batch_summary(batch), s.predictions.per_class(batch)))
    return {
        "batch": batch,
        "files": files,
        "ingestion": {"inputs": ingestion["inputs"], "duplicates": ingestion["duplicates"],
                      "rejected": len(ingestion["rejections"])},
        "rejections": ingestion["rejections"],
        "predictions": predictions,
    }


def load_models_in_background(detectors: list[Detector]) -> None:
    """Load the models while the run starts and ingestion reads the files: the `predictions` step then finds
    them in the process's cache. A model that fails to load fails that step, with its sentence, not here."""

    def load_all() -> None:
        for detector in detectors:
            with contextlib.suppress(Exception):
                detector.load()

    threading.Thread(target=load_all, daemon=True, name="load-models").start()


def run_batch(definitions: dg.Definitions, instance: dg.DagsterInstance, batch: str, wait_s: float,
              say: Callable[[str], object], assets: list[dg.AssetKey] | None = None) -> dg.ExecuteInProcessResult:
    """One in-process run of the batch job (or of its `assets` only); first waits (sleeping, bounded) for the
    database slot."""
    wait_for_database_slot(instance, wait_s, say)
    result = definitions.resolve_job_def("annotate_batch").execute_in_process(
        partition_key=batch, instance=instance, run_config=PROGRESS_LOGS, raise_on_error=False,
        asset_selection=assets)
    if not result.success:
        raise RuntimeError(f"The run for batch {batch} failed: {first_failure(result)}")
    return result


def run_pipeline(settings: Settings, progress: Callable[[str], None] | None = None,
                 build_version: bool = False, reroute: bool = False, rescore: bool = False,
                 retry_refused: bool = False) -> dict:
    """Finish every batch a crash left unfinished, then ingest and annotate everything new in the inbox as one
    batch (what the sensor runs); with `build_version` also today's dataset versions. A version holds the whole
    dataset, so building it costs what the dataset costs, not what the batch costs: the daily schedule builds
    it otherwise. With `reroute`, first re-routes every earlier batch routed under other rules than the tasks'
    current ones, from its stored predictions (people's decisions stay); a batch predicted at a confidence floor
    above a task's new lower threshold is predicted again first. With `rescore`, every batch whose image-level
    concept scores came from an earlier classifier than the one the task's labels give now is scored again. With
    `retry_refused`, every URL whose latest word is a refusal is fetched again with the batch (those refused for a
    private address are, by any run, once AUTOANNOTATE_ALLOW_PRIVATE_URLS=1)."""
    say = progress or (lambda text: print(text, file=sys.stderr))
    definitions = build_definitions(settings)
    resources = definitions.resources
    tasks = resources["tasks"].load()  # a broken task file fails here, before anything is ingested
    store, inbox = resources["store"], resources["inbox"]
    instance = instance_of(settings)
    for sentence in release_abandoned_runs(instance):
        say(sentence)
    models = models_by_task(tasks, resources["detector"])
    scorers = {name: {scorer.current} if rescore else scorer.counted
               for name, scorer in concept_scorers(store, tasks).items()}
    stages = store.read(lambda s: s.batches.stages(inbox.pinned_batches(), models, tasks, scorers))
    unfinished = {batch: stage for batch, stage in stages.items() if stage != "complete"}
    stale = []
    if reroute:
        routed_before = store.read(lambda s: {b for t in tasks for b in s.history.batches_routed_under_other_rules(t)})
        stale = sorted(routed_before - set(unfinished))
    bucket_inbox = None
    if inbox.is_bucket:  # its objects are pinned by key and ETag: the batch reads them as they were listed
        bucket_inbox, files, still_written = pending_objects(inbox, settings.home)
    else:
        retried = queue_refused_urls(store, Path(inbox.path), bool(settings.allow_private_urls), retry_refused)
        if retried:
            say(f"{len(retried)} refused URL(s) fetched again with the batch")
        files, still_written = pending_files(inbox)
    nothing = {"batch": None, "files": 0, "inbox": inbox.path,
               "inbox_missing": not inbox.is_bucket and not Path(inbox.path).is_dir(),
               "still_written": [str(p) for p in still_written]}
    if not files and not unfinished and not stale and not build_version:
        return {**nothing, "resumed": [], "rerouted": []}
    if files or unfinished:
        load_models_in_background(detectors_for(tasks, resources["detector"]))
        # Before pinning a batch: a run that gives up waiting leaves nothing behind.
        wait_for_database_slot(instance, settings.slot_wait_s, say)
    resumed = []
    for batch, stage in unfinished.items():
        say(f"batch {batch} is not complete for the configured tasks ({stage}); finishing it ...")
        instance.add_dynamic_partitions(batch_partitions.name, [batch])  # a crash may have come before this
        # Only the concept scores are stale (new labels, or a classifier that could not learn yet when the batch
        # ran): the detector has nothing to do again.
        run_batch(definitions, instance, batch, settings.slot_wait_s, say,
                  assets=CONCEPT_ASSETS if stage == "not scored for concepts" else None)
        resumed.append({"batch": batch, "stage": stage,
                        "inputs": len(store.read(lambda s, b=batch: s.inputs.batch_input_ids(b)))})
    predict_again = store.read(lambda s: s.batches.predicted_too_high(stale, models, tasks))
    for batch in stale:
        again = batch in predict_again
        say(f"batch {batch} was routed under earlier rules; "
            + ("its predictions stop above a task's new lower threshold: predicting and re-routing it ..." if again
               else "re-routing it ..."))
        run_batch(definitions, instance, batch, settings.slot_wait_s, say,
                  assets=[dg.AssetKey("predictions"), dg.AssetKey("annotations")] if again
                  else [dg.AssetKey("annotations")])
    summary: dict = {**nothing, "resumed": resumed, "rerouted": stale}
    if files:
        batch = create_batch(inbox, files, instance)
        if bucket_inbox:  # pinned: a run that fails now is finished by the next one, which lists no object twice
            bucket_inbox.record_taken(files)
        say(f"batch {batch}: running the pipeline over {len(files)} new files ...")
        result = run_batch(definitions, instance, batch, settings.slot_wait_s, say)
        summary = {**batch_summary(store, batch, len(files)), "resumed": resumed, "rerouted": stale,
                   "still_written": nothing["still_written"]}
        bands = result.asset_materializations_for_node("annotations")[0].metadata[metadata_keys.BANDS].value
        models = result.asset_materializations_for_node("predictions")[0].metadata[metadata_keys.INFERENCE].value
        summary["inference"] = {name: {"runtime": m["runtime"], "images_per_second": m["images_per_second"]}
                                for name, m in models.items()}
        summary["tasks"] = {name: {"bands": per_concept,
                                   "review": store.read(lambda s, n=name: s.reviews.progress(n))}
                            for name, per_concept in bands.items()}
    if build_version:
        summary["versions"] = create_versions(settings, datetime.now(UTC).date().isoformat(), definitions)
    return summary


def train_detectors(settings: Settings, day: str) -> dict:
    """Run the `train_detectors` job for one day in-process, on the persistent instance; what each task's
    training did."""
    result = build_definitions(settings).resolve_job_def("train_detectors").execute_in_process(
        partition_key=day, instance=instance_of(settings), raise_on_error=False, run_config=PROGRESS_LOGS)
    if not result.success:
        raise RuntimeError(f"Training the detectors on the versions of {day} failed: {first_failure(result)}")
    return result.asset_materializations_for_node("detector_models")[0].metadata[metadata_keys.TRAINING].value


def create_versions(settings: Settings, day: str, definitions: dg.Definitions | None = None) -> dict:
    """Run the `build_dataset_versions` job for one day in-process, on the persistent instance."""
    definitions = definitions or build_definitions(settings)
    result = definitions.resolve_job_def("build_dataset_versions").execute_in_process(
        partition_key=day, instance=instance_of(settings), raise_on_error=False,
        run_config=PROGRESS_LOGS)
    if not result.success:
        raise RuntimeError(f"Building the versions of {day} failed: {first_failure(result)}")
    return result.asset_materializations_for_node("dataset_versions")[0].metadata[metadata_keys.VERSIONS].value
