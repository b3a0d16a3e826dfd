"""`autoannotate check`, as `git fsck` or `restic check` do: is everything the home keeps what it says it is?

Every stored image and video hashes to its name, every image a row names is stored, every version's manifest
hashes to the sha256 its row recorded, every table reads whole with its keys unique, and a DuckLake's catalog and
data files agree. Nothing is changed: a damaged thing is named, with what to do, and left for a person.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from core.digests import file_sha256, stream_sha256
from services.ports import StoredImages, UnitsOfWork
from storage.blobs import BlobStore, BlobStoreError, blob_store
from storage.versions import ManifestStore
from store import DatabaseUnavailableError, Session
from store.integrity import NamedBlob, VersionRecord
from store.tables import TABLES

CONTENT_KEY = re.compile(r"^([0-9a-f]{2})/(\1[0-9a-f]{62})$")  # an image or video: <id[:2]>/<id>
T = TypeVar("T")
HASHING_THREADS = 8  # a bucket answers each read in ~15 ms: reads overlap; a folder's hashing releases the GIL


class DamageKind(StrEnum):
    BLOB_CHANGED = "stored bytes changed"
    BLOB_MISSING = "stored bytes missing"
    MANIFEST_CHANGED = "manifest changed"
    MANIFEST_MISSING = "manifest missing"
    DATABASE_UNREADABLE = "database unreadable"
    TABLE_UNREADABLE = "table unreadable"
    DUPLICATE_KEYS = "keys held twice"
    LAKE_FILE_MISSING = "lake file missing"
    LAKE_FILE_SIZE = "lake file size differs"


@dataclass(frozen=True)
class Damage:
    kind: DamageKind
    where: str  # the blob id, version key, table or file it is about
    sentence: str


@dataclass
class IntegrityReport:
    checked: dict[str, int] = field(default_factory=dict)
    damaged: list[Damage] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "damaged": [asdict(d) for d in self.damaged], "seconds": self.seconds}

    def summary(self) -> str:
        checked = ", ".join(f"{n} {what}" for what, n in self.checked.items())
        found = f"{len(self.damaged)} damaged" if self.damaged else "nothing damaged"
        return f"Checked {checked} in {self.seconds:.1f} s: {found}."


@dataclass(frozen=True)
class HomeParts:
    """What `check` reads: the store (a unit of work per question) and where it is, the image store's and the
    manifests' blobs, and the lake's data files when the store is a DuckLake."""

    store: UnitsOfWork
    database: str
    images: BlobStore
    manifests: ManifestStore
    lake_data: str = ""


def check_home(home: HomeParts) -> IntegrityReport:
    started = time.monotonic()
    report = IntegrityReport()
    named, versions = check_database(home, report)
    check_blobs(home.images, named, report)
    check_manifests(home.manifests, versions, report)
    if home.lake_data:
        check_lake(home, report)
    report.seconds = round(time.monotonic() - started, 2)
    return report


def check_database(home: HomeParts, report: IntegrityReport) -> tuple[list[NamedBlob] | None, list[VersionRecord]]:
    """Every table read whole, its keys unique; the blobs and versions the rows name (None: not readable)."""
    try:
        home.store.read(lambda s: s.scalar("SELECT 1"))
    except (duckdb.Error, DatabaseUnavailableError) as error:
        report.damaged.append(Damage(DamageKind.DATABASE_UNREADABLE, home.database, (
            f"The database {home.database} cannot be opened ({first_line(error)}): restore it from a backup; the "
            "stored images and manifests are checked below.")))
        return None, []
    rows = 0
    for table in TABLES:
        try:
            read, repeated = home.store.read(lambda s, t=table: (s.integrity.scan(t), s.integrity.duplicate_keys(t)))
        except duckdb.Error as error:
            report.damaged.append(Damage(DamageKind.TABLE_UNREADABLE, table, (
                f"Table {table} cannot be read whole ({first_line(error)}): restore the database from a backup.")))
            continue
        rows += read
        if repeated:
            key = ", ".join(TABLES[table].primary_key)
            report.damaged.append(Damage(DamageKind.DUPLICATE_KEYS, table, (
                f"Table {table} holds {repeated} row(s) whose key ({key}) an earlier row holds: a write was repeated "
                "outside autoannotate's writers.")))
    report.checked.update({"tables": len(TABLES), "rows": rows})
    return readable(home, lambda s: s.integrity.named_images()), readable(home, lambda s: s.integrity.versions()) or []


def readable(home: HomeParts, question: Callable[[Session], list[T]]) -> list[T] | None:
    """The rows a question reads, or None where a table it reads is damaged (and named already)."""
    try:
        return home.store.read(question)
    except duckdb.Error:
        return None


def check_blobs(images: BlobStore, named: list[NamedBlob] | None, report: IntegrityReport) -> None:
    """Each stored image and video hashes to its name; each one a row names is stored."""
    stored = [info.key for info in images.listing() if CONTENT_KEY.match(info.key)]
    with ThreadPoolExecutor(HASHING_THREADS) as pool:
        for key, digest in zip(stored, pool.map(lambda k: blob_sha256(images, k), stored)):
            blob_id = key.split("/")[1]
            if digest is None:
                continue  # removed while listed: a purge that ran meanwhile
            if digest != blob_id:
                report.damaged.append(Damage(DamageKind.BLOB_CHANGED, blob_id, (
                    f"{images.url(key)} hashes to {digest[:16]}..., not its name: its bytes were changed after they "
                    "were stored; put the original back (any export or backup of it has the same name).")))
    report.checked["stored images and videos"] = len(stored)
    if named is None:
        return
    present = {key.split("/")[1] for key in stored}
    for blob in named:
        if blob.blob_id not in present:
            report.damaged.append(Damage(DamageKind.BLOB_MISSING, blob.blob_id, (
                f"{blob.named_by} names {blob.blob_id[:16]}..., which the image store {images.location} does not "
                "hold: put the file back under its name, or delete the input (`autoannotate input delete`).")))


def checked_image(images: StoredImages, input_id: str, refused: str) -> Path:
    """The stored image's file, its bytes checked against its id (the sha256 it is stored by): a damaged one is
    refused by name (`refused` says what was then left undone), so no export or version holds bytes that are not
    the ones its rows were made from."""
    try:
        path = images.path_for(input_id)
    except KeyError:
        raise ValueError(f"The stored image {input_id} is missing from the image store; {refused}. `autoannotate "
                         "check` lists every missing file.") from None
    digest = file_sha256(path)
    if digest != input_id:
        raise ValueError(f"The stored image {input_id} is damaged: its bytes hash to {digest[:16]}..., not its id "
                         f"({path}); {refused}. `autoannotate check` lists every damaged file.")
    return path


def blob_sha256(blobs: BlobStore, key: str) -> str | None:
    local = blobs.local_path(key)
    try:
        if local is not None:
            return file_sha256(local)
        with blobs.open(key) as body:
            return stream_sha256(body)
    except (FileNotFoundError, KeyError):
        return None


def check_manifests(manifests: ManifestStore, versions: Iterable[VersionRecord], report: IntegrityReport) -> None:
    """Each version's manifest hashes to the sha256 its row recorded when it was built."""
    count = 0
    for version in versions:
        count += 1
        key = manifests.key(version.task, version.version_key[len(version.task) + 1:])
        try:
            data = manifests.blobs.read(key)
        except (KeyError, FileNotFoundError):
            report.damaged.append(Damage(DamageKind.MANIFEST_MISSING, version.version_key, (
                f"Version {version.version_key}: its manifest {manifests.blobs.url(key)} is missing; a dated version "
                "is rebuilt by materializing its partition again, a named one only from a backup.")))
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != version.manifest_sha256:
            report.damaged.append(Damage(DamageKind.MANIFEST_CHANGED, version.version_key, (
                f"Version {version.version_key}: its manifest {manifests.blobs.url(key)} hashes to {digest[:16]}..., "
                f"not the {version.manifest_sha256[:16]}... recorded when it was built: it was edited; a dated "
                "version is rebuilt by materializing its partition again, a named one only from a backup.")))
    report.checked["version manifests"] = count


def check_lake(home: HomeParts, report: IntegrityReport) -> None:
    """Every data and delete file the DuckLake's catalog lists is in its data path, at the size recorded."""
    try:
        files = home.store.read(lambda s: s.integrity.lake_files())
        data = blob_store(home.lake_data)
        sizes = {normalized(data.url(info.key)): info.size for info in data.listing()}
    except (duckdb.Error, BlobStoreError) as error:
        report.damaged.append(Damage(DamageKind.DATABASE_UNREADABLE, home.lake_data, (
            f"The DuckLake's files at {home.lake_data} cannot be listed ({first_line(error)}).")))
        return
    for file in files:
        size = sizes.get(normalized(file.path))
        if size is None:
            report.damaged.append(Damage(DamageKind.LAKE_FILE_MISSING, file.path, (
                f"Table {file.table}: its data file {file.path} is missing from the lake: restore it from a backup "
                "of the data path.")))
        elif size != file.size:
            report.damaged.append(Damage(DamageKind.LAKE_FILE_SIZE, file.path, (
                f"Table {file.table}: its data file {file.path} holds {size} bytes, not the {file.size} the catalog "
                "recorded: restore it from a backup of the data path.")))
    report.checked["lake files"] = len(files)


def normalized(location: str) -> str:
    return location if "://" in location else str(Path(location).resolve())


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
