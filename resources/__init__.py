"""Dagster resources over `core` and `store`, all configured in one place from one `Settings`."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from core.locations import joined
from core.settings import ENVIRONMENT, Settings
from resources.concepts import ConceptModels
from resources.detector import Detector
from resources.image_store import ImageStore
from resources.inbox import Inbox
from resources.store import DuckDBStore
from resources.tasks import LabelingTasks
from resources.training import DetectorTraining
from resources.versions import VersionStore

_VARIABLE_OF = {field: variable for variable, field in ENVIRONMENT.items()}
# Settings Dagster shows as the variable that set them (EnvVar exists for str and int fields only; `runtime`
# is a Literal that pydantic checks before Dagster would resolve the variable).
SHOWN_AS_VARIABLES = {"weights", "device", "imgsz", "batch_size", "max_pixels"}


def configured(settings: Settings, name: str, show_variables: bool) -> object:
    """A setting's value, or (in the Dagster code location) the `dg.EnvVar` it came from, so the
    resource's page shows which variable configured it."""
    value = getattr(settings, name)
    if not show_variables or name not in settings.from_environment or name not in SHOWN_AS_VARIABLES:
        return value
    return dg.EnvVar.int(_VARIABLE_OF[name]) if isinstance(value, int) else dg.EnvVar(_VARIABLE_OF[name])


def build_resources(settings: Settings, show_variables: bool = False) -> dict:
    """The resources every job, sensor and CLI command of one AUTOANNOTATE_HOME shares."""

    def value(name: str) -> object:
        return configured(settings, name, show_variables)

    return {
        "tasks": LabelingTasks(task_files=[str(Path(t).resolve()) for t in settings.task_files],
                               models=settings.models_location, cache=str(settings.cache_dir / "models")),
        "store": DuckDBStore(path=str(settings.database_path), lock_timeout_s=settings.store_wait_s,
                             catalog=settings.lake_catalog,
                             data_path=settings.lake_data_path if settings.lake_catalog else "",
                             snapshot_days=settings.snapshot_days),
        "images": ImageStore(root=settings.images_root, cache_root=str(settings.cache_dir / "images"),
                             wait_s=settings.store_wait_s),
        "versions": VersionStore(root=settings.versions_location, val_ratio=value("val_ratio"),
                                 test_ratio=value("test_ratio")),
        "detector": Detector(weights=value("weights"), imgsz=value("imgsz"), batch_size=value("batch_size"),
                             device=value("device"), runtime=value("runtime"), conf_floor=value("conf_floor"),
                             precision=value("precision")),
        "training": DetectorTraining(root=str(settings.home / "models" / "trained"),
                                     shared=joined(settings.models_location, "trained"), epochs=value("train_epochs"),
                                     imgsz=value("train_imgsz"), batch=value("train_batch"), device=value("device"),
                                     architecture=value("train_architecture")),
        "concept_models": ConceptModels(root=settings.models_location, cache=str(settings.cache_dir / "models"),
                                        device=value("device")),
        "inbox": Inbox(path=settings.inbox_location, batches=settings.batches_location,
                       store_wait_s=settings.store_wait_s,
                       settle_seconds=value("settle_seconds"), max_pixels=value("max_pixels"),
                       video_fps=value("video_fps"), video_max_frames=value("video_max_frames"),
                       video_skip_similar=value("video_skip_similar"), downloads_dir=str(settings.downloads_dir),
                       allow_private_urls=bool(value("allow_private_urls")), url_max_bytes=value("url_max_bytes"),
                       url_timeout_s=value("url_timeout_s"), url_deadline_s=value("url_deadline_s")),
    }
