"""Team mode's services on one machine: a PostgreSQL cluster for the DuckLake catalog, in a folder of its own.

Debian's PostgreSQL server binaries live outside PATH (`/usr/lib/postgresql/<major>/bin`), and `initdb`
refuses to run as root, so as root the cluster belongs to the `postgres` user. It listens on loopback only,
trusts loopback connections (nothing else can reach it) and keeps its socket in its own folder.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

DATABASE = "autoannotate"


class ServiceError(RuntimeError):
    """A service could not be started; the message says which and why."""


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL server's binaries, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def _as_owner(command: list[str], folder: Path) -> list[str]:
    """Run as the `postgres` user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return command
    shutil.chown(folder, "postgres", "postgres")
    return ["runuser", "-u", "postgres", "--", *command]


def start_postgres(folder: Path, port: int) -> str:
    """Initialise (once) and start a cluster in `folder` on 127.0.0.1:`port` with the database `autoannotate`;
    returns its libpq connection string."""
    binaries = postgres_bin()
    if binaries is None:
        raise ServiceError("PostgreSQL is not installed (Debian: apt-get install postgresql); team mode needs it.")
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    if not (data / "PG_VERSION").exists():
        _run(_as_owner([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                       folder), "initdb")
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder}"
    _run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"),
                    "-w", "start"], folder), "pg_ctl start", log=folder / "server.log")
    conninfo = f"host=127.0.0.1 port={port} user=postgres"
    exists = subprocess.run([str(binaries / "psql"), *_psql_args(port), "-tAc",
                             f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"],
                            capture_output=True, text=True, check=False)
    if exists.stdout.strip() != "1":
        _run([str(binaries / "createdb"), *_psql_args(port), DATABASE], "createdb")
    return f"dbname={DATABASE} {conninfo}"


def stop_postgres(folder: Path, mode: str = "fast") -> None:
    """Stop the cluster in `folder` (if it runs)."""
    binaries = postgres_bin()
    data = folder / "data"
    if binaries is None or not (data / "postmaster.pid").exists():
        return
    subprocess.run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"], folder),
                   capture_output=True, check=False)


def _psql_args(port: int) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        tail = log.read_text().strip().splitlines()[-1:] if log and log.exists() else []
        raise ServiceError(f"{what} failed: {' '.join(detail[-1:] + tail) or f'exit {result.returncode}'}")
