"""Where things live and how a deployment is tuned: one `Settings` object, read from the environment once.

`Settings.from_env()` is the only place that reads `AUTOANNOTATE_*` variables. The CLI reads it
once per command, the Dagster code location once at load, and everything else receives it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.image_checks import DEFAULT_MAX_PIXELS
from core.locations import is_remote, joined

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_WEIGHTS = REPO_ROOT / "models" / "demo_detector.pt"
DEMO_TASK = REPO_ROOT / "tasks" / "demo.yaml"
TASK_RECORD = "tasks.txt"  # in the home: the task files of the last `autoannotate run --task-file`
# The detector keeps detections above this floor unless a task's lower threshold (or AUTOANNOTATE_CONF_FLOOR) asks
# for a lower one; also the floor of predictions stored before floors were recorded.
DEFAULT_CONF_FLOOR = 0.05
# The first day of daily dataset-version partitions unless AUTOANNOTATE_VERSIONS_START says otherwise.
DEFAULT_VERSIONS_START = "2026-11-01"

# Variable name -> Settings field, for the values a deployment tunes (listed in docs/tasks.md).
ENVIRONMENT = {
    "AUTOANNOTATE_WEIGHTS": "weights",
    "AUTOANNOTATE_IMGSZ": "imgsz",
    "AUTOANNOTATE_BATCH_SIZE": "batch_size",
    "AUTOANNOTATE_DEVICE": "device",
    "AUTOANNOTATE_CONF_FLOOR": "conf_floor",
    "AUTOANNOTATE_RUNTIME": "runtime",
    "AUTOANNOTATE_PRECISION": "precision",
    "AUTOANNOTATE_SETTLE_SECONDS": "settle_seconds",
    "AUTOANNOTATE_MAX_PIXELS": "max_pixels",
    "AUTOANNOTATE_VAL_RATIO": "val_ratio",
    "AUTOANNOTATE_TEST_RATIO": "test_ratio",
    "AUTOANNOTATE_VERSIONS_START": "versions_start",
    "AUTOANNOTATE_SENSOR_INTERVAL": "sensor_interval_s",
    "AUTOANNOTATE_CATCH_UP_CRON": "catch_up_cron",
    "AUTOANNOTATE_VERSIONS_INTERVAL": "versions_interval_s",
    "AUTOANNOTATE_VERSIONS_CRON": "versions_cron",
    "AUTOANNOTATE_SLOT_WAIT_S": "slot_wait_s",
    "AUTOANNOTATE_STORE_WAIT_S": "store_wait_s",
    "AUTOANNOTATE_CATALOG": "catalog",
    "AUTOANNOTATE_DATA_PATH": "data_path",
    "AUTOANNOTATE_IMAGES": "images",
    "AUTOANNOTATE_SHARED": "shared",
    "AUTOANNOTATE_DAGSTER_STORAGE": "dagster_storage",
    "AUTOANNOTATE_CELERY_BROKER": "celery_broker",
    "AUTOANNOTATE_CELERY_REDELIVER_S": "celery_redeliver_s",
    "AUTOANNOTATE_MAINTENANCE_CRON": "maintenance_cron",
    "AUTOANNOTATE_QUALITY_CRON": "quality_cron",
    "AUTOANNOTATE_SNAPSHOT_DAYS": "snapshot_days",
    "AUTOANNOTATE_TEAM_POSTGRES_PORT": "team_postgres_port",
    "AUTOANNOTATE_TEAM_WEB_PORT": "team_web_port",
    "AUTOANNOTATE_TEAM_REDIS_PORT": "team_redis_port",
    "AUTOANNOTATE_TEAM_S3_PORT": "team_s3_port",
    "AUTOANNOTATE_TEAM_WORKERS": "team_workers",
    "AUTOANNOTATE_TEAM_ADDRESS": "team_address",
    "AUTOANNOTATE_TRAIN_EPOCHS": "train_epochs",
    "AUTOANNOTATE_TRAIN_IMGSZ": "train_imgsz",
    "AUTOANNOTATE_TRAIN_BATCH": "train_batch",
    "AUTOANNOTATE_TRAIN_ARCHITECTURE": "train_architecture",
    "AUTOANNOTATE_DAGSTER_URL": "dagster_url",
    "AUTOANNOTATE_VIDEO_FPS": "video_fps",
    "AUTOANNOTATE_VIDEO_MAX_FRAMES": "video_max_frames",
    "AUTOANNOTATE_VIDEO_SKIP_SIMILAR": "video_skip_similar",
    "AUTOANNOTATE_ALLOW_PRIVATE_URLS": "allow_private_urls",
    "AUTOANNOTATE_URL_MAX_BYTES": "url_max_bytes",
    "AUTOANNOTATE_URL_TIMEOUT_S": "url_timeout_s",
    "AUTOANNOTATE_URL_DEADLINE_S": "url_deadline_s",
}


@dataclass(frozen=True)
class Settings:
    """Everything a deployment configures; defaults are the embedded demo setup."""

    home: Path
    inbox: Path | None = None  # None: <home>/inbox
    inbox_url: str = ""  # an inbox that is a bucket prefix (AUTOANNOTATE_INBOX=s3://bucket/prefix)
    task_files: tuple[str, ...] = (str(DEMO_TASK),)
    weights: str = str(DEMO_WEIGHTS)
    imgsz: int = 0
    batch_size: int = 16
    device: str = "cpu"
    conf_floor: float = DEFAULT_CONF_FLOOR
    runtime: str = "auto"
    precision: str = "fp32"  # or int8 (opt in: engines/int8.py)
    settle_seconds: float = 10.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    val_ratio: float = 0.2
    test_ratio: float = 0.1
    versions_start: str = DEFAULT_VERSIONS_START
    sensor_interval_s: int = 30
    catch_up_cron: str = "0 * * * *"
    versions_interval_s: int = 300  # at most one rebuild of today's versions this often, after new batches
    versions_cron: str = "15 0 * * *"  # the daily cut: yesterday's versions, final, shortly after midnight UTC
    slot_wait_s: float = 600.0  # how long a CLI run waits for another run to free the database slot
    store_wait_s: float = 60.0  # how long a unit of work waits for the file's lock, or for a lost catalog server
    catalog: str = ""  # "" embedded DuckDB file; "ducklake" a DuckLake with a local catalog; "postgres:CONNINFO"
    data_path: str = ""  # a DuckLake's Parquet files ("" : <shared>/lake)
    images: str = ""  # the image store: a folder or s3://bucket/prefix ("" : <shared>/images)
    # What every machine of a deployment must see (batch manifests, trained models and classifiers, the promoted
    # detectors, and by default the images and the lake): a folder or s3://bucket/prefix ("" : the home).
    shared: str = ""
    dagster_storage: str = ""  # "" SQLite under <home>/dagster; "postgres:CONNINFO" one instance for a team
    quality_cron: str = "45 0 * * *"  # label quality measured, after the daily versions, UTC
    maintenance_cron: str = "30 3 * * *"  # store housekeeping (a DuckLake's small files and old snapshots), UTC
    snapshot_days: int = 7  # a DuckLake keeps snapshots (time travel) this many days
    celery_broker: str = ""  # team mode: "redis://host:6379/0" sends the batch job's steps to Celery workers
    celery_redeliver_s: int = 3600  # a step whose worker died goes to another worker after this long
    team_postgres_port: int = 55432  # `make team-up`: its PostgreSQL (loopback) and Dagster UI ports
    team_web_port: int = 3000
    team_redis_port: int = 56379  # `make team-up`: the Celery broker (Redis, loopback) and how many workers
    team_workers: int = 2
    team_s3_port: int = 58333  # `make team-up`: SeaweedFS's S3 gateway (loopback; its own servers on the next 7)
    # `make team-up`: the address PostgreSQL, Redis and SeaweedFS listen on and team.env names: loopback, or this
    # machine's address on the network its workers' machines reach it by (the Dagster UI stays on loopback).
    team_address: str = "127.0.0.1"
    train_epochs: int = 3  # `detector_models`: CPU-sized fine-tuning (AUTOANNOTATE_TRAIN_*); imgsz 0: the weights'
    train_imgsz: int = 0
    train_batch: int = 8
    train_architecture: str = ""  # a model YAML to train from scratch instead of fine-tuning
    dagster_url: str = "http://127.0.0.1:3000"  # where the tasks page links a task's assets in the Dagster UI
    video_fps: float = 2.0  # videos in the inbox: frames sampled a second, at most this many a video, and a
    video_max_frames: int = 10_000  # sampled frame more alike the last kept one than `video_skip_similar` skipped
    video_skip_similar: float = 0.95
    allow_private_urls: int = 0  # 1: URL inputs may reach loopback and private addresses (never link-local ones)
    url_max_bytes: int = 200_000_000  # a URL's answer above this many bytes is refused
    url_timeout_s: float = 30.0  # a URL that answers nothing this long is tried again (3 tries), then refused
    url_deadline_s: float = 60.0  # a URL not fetched whole this long after its first try is refused (a trickle)
    from_environment: frozenset[str] = field(default_factory=frozenset)  # fields a variable set

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        environ = os.environ if environ is None else environ
        defaults = cls(home=Path("."))
        values: dict[str, Any] = {}
        for variable, name in ENVIRONMENT.items():
            if variable in environ:
                kind = type(getattr(defaults, name))
                try:
                    values[name] = kind(environ[variable])
                except ValueError:
                    raise ValueError(f"{variable}={environ[variable]!r} is not a valid {kind.__name__}.") from None
        if "AUTOANNOTATE_TASKS" in environ:
            values["task_files"] = tuple(environ["AUTOANNOTATE_TASKS"].split(os.pathsep))
        if "AUTOANNOTATE_INBOX" in environ:
            inbox = environ["AUTOANNOTATE_INBOX"]
            if is_remote(inbox):
                values["inbox_url"] = inbox.rstrip("/")
            else:
                values["inbox"] = Path(inbox)
        home = Path(environ.get("AUTOANNOTATE_HOME", "data")).resolve()
        remembered: dict[str, Any] = {}
        record = home / TASK_RECORD
        if "task_files" not in values and record.is_file():
            # The task files the last `run --task-file` used: what review, status, import and the sensor see too.
            remembered["task_files"] = tuple(line for line in record.read_text().splitlines() if line.strip())
        return cls(home=home, from_environment=frozenset(values), **values, **remembered)

    def with_run_options(self, inbox: Path | str | None = None, task_files: list[str] | None = None) -> Settings:
        """These settings with a run's own `--inbox` (a folder, or a bucket prefix s3://bucket/prefix) and
        `--task-file` (None keeps what is configured)."""
        chosen = tuple(str(Path(f).resolve()) for f in task_files) if task_files else self.task_files
        if isinstance(inbox, str):
            return replace(self, inbox_url=inbox.rstrip("/"), task_files=chosen)
        return replace(self, inbox=inbox or self.inbox, inbox_url="" if inbox else self.inbox_url,
                       task_files=chosen)

    def prepare_home(self) -> None:
        """The home, readable by its owner alone when this creates it: it holds the database, the images and the
        team's secrets (a folder that exists already keeps its mode)."""
        from core.private_files import private_folder

        private_folder(self.home)

    def remember_task_files(self) -> None:
        """Keep these task files in the home, for the commands and the Dagster code location that follow."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / TASK_RECORD).write_text("".join(f"{path}\n" for path in self.task_files))

    @property
    def inbox_path(self) -> Path:
        return (self.inbox or self.home / "inbox").resolve()

    @property
    def database_path(self) -> Path:
        return self.home / "autoannotate.duckdb"

    @property
    def lake_catalog(self) -> str:
        """The DuckLake catalog `Database` attaches ("" in embedded mode)."""
        if self.catalog in ("", "duckdb"):
            return ""
        if self.catalog == "ducklake":
            return str(self.home / "lake.ducklake")
        if self.catalog.startswith("postgres:"):
            return self.catalog
        raise ValueError(f"AUTOANNOTATE_CATALOG={self.catalog!r} is not a catalog: use duckdb (the default, one "
                         "DuckDB file), ducklake (a DuckLake with its catalog in the home) or postgres:CONNINFO "
                         "(e.g. postgres:dbname=autoannotate host=db.internal user=autoannotate).")

    @property
    def database_writers(self) -> int:
        """How many steps may write the database at once: a DuckLake on PostgreSQL takes concurrent writers,
        a DuckDB file (or a DuckLake whose catalog is one) a single one."""
        return 8 if self.lake_catalog.startswith("postgres:") else 1

    @property
    def inbox_location(self) -> str:
        """The inbox the sensor watches: a folder, or a bucket prefix."""
        return self.inbox_url or str(self.inbox_path)

    @property
    def shared_root(self) -> str:
        return self.shared or str(self.home)

    @property
    def lake_data_path(self) -> str:
        return self.data_path or joined(self.shared_root, "lake")

    @property
    def images_root(self) -> str:
        return self.images or joined(self.shared_root, "images")

    @property
    def models_location(self) -> str:
        """Trained detectors and concept classifiers, and the record of each task's promoted detector."""
        return joined(self.shared_root, "models")

    @property
    def cache_dir(self) -> Path:
        """This machine's copies of what lives in a remote store (images for an export, models to load)."""
        return self.home / "cache"

    @property
    def versions_location(self) -> str:
        """Dataset-version manifests."""
        return joined(self.shared_root, "versions")

    @property
    def batches_location(self) -> str:
        """The batch manifests: every machine that runs a batch reads which files it pinned there."""
        return joined(self.shared_root, "batches")

    @property
    def kept_locations(self) -> dict[str, str]:
        """What autoannotate keeps, by name: no command may replace, delete or write its output into these."""
        return {"the home": str(self.home), "the inbox": self.inbox_location, "the image store": self.images_root,
                "the shared store": self.shared_root, "the lake's data files": self.lake_data_path}

    @property
    def downloads_dir(self) -> Path:
        """Where URL inputs' answers are kept (by the URL's sha256), so the same URL is fetched once."""
        return self.home / "downloads"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"
