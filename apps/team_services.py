"""Team mode's services on one machine: PostgreSQL (the DuckLake catalog and Dagster's storage) in a folder of
its own, SeaweedFS (the bucket for images and the lake's Parquet files, `apps/seaweedfs.py`), Redis and Celery
workers, and the Dagster daemon and webserver on them (`make team-up` / `make team-down`).

Debian's PostgreSQL server binaries live outside PATH (`/usr/lib/postgresql/<major>/bin`), and `initdb`
refuses to run as root, so as root the cluster belongs to the `postgres` user. It listens on loopback (or on the
address AUTOANNOTATE_TEAM_ADDRESS names, for workers on other machines of that network), asks
every connection for the superuser's generated password (scram-sha-256: a local user cannot connect as superuser
and run `COPY ... TO PROGRAM`) and keeps its socket in its own folder. Redis asks for a generated password too;
both are in the home's `team.env` (0600), as the bucket's keys are.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import ipaddress
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import yaml

from apps.seaweedfs import (
    LOOPBACK,
    ObjectStore,
    ServiceError,
    create_bucket,
    free_port,
    free_port_run,
    start_seaweedfs,
    stop_seaweedfs,
)
from core.private_files import write_private
from core.settings import REPO_ROOT, Settings
from pipelines.instance import instance_yaml, persistent_instance
from pipelines.jobs import celery_config

DATABASE = "autoannotate"
# pg_hba.conf's rule for the team's other machines: any address of the server's own subnets, with the password.
SAME_NETWORK = "host all all samenet scram-sha-256"
PASSWORD_FILE = "superuser-password"  # beside the cluster's data folder, 0600
REDIS_PASSWORD_FILE = "redis-password"  # in the home's team/ folder, 0600


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


def start_postgres(folder: Path, port: int, address: str = LOOPBACK) -> str:
    """Initialise (once) and start (unless it runs) a cluster in `folder` on `address`:`port` with the database
    `autoannotate`; returns its libpq connection string. Every connection, loopback included, authenticates with
    scram-sha-256 as `postgres`, whose password is generated once and kept in the folder (0600); clients of the
    address's own network may connect (`samenet`: the workers' machines)."""
    binaries = postgres_bin()
    if binaries is None:
        raise ServiceError("PostgreSQL is not installed (Debian: apt-get install postgresql); team mode needs it.")
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    password = team_secret(folder / PASSWORD_FILE)
    if not (data / "PG_VERSION").exists():
        pwfile = folder / ".initdb-password"  # initdb reads it as the cluster's owner; removed once it has
        write_private(pwfile, password + "\n")
        try:
            if os.geteuid() == 0:
                shutil.chown(pwfile, "postgres", "postgres")
            _run(_as_owner([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256",
                            f"--pwfile={pwfile}", "-E", "UTF8"], folder), "initdb")
        finally:
            pwfile.unlink(missing_ok=True)
    hba = data / "pg_hba.conf"
    widened = SAME_NETWORK not in hba.read_text()  # a cluster made before its address could be another's
    if widened:
        hba.write_text(hba.read_text() + SAME_NETWORK + "\n")
    status = subprocess.run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "status"], folder),
                            capture_output=True, check=False)
    if status.returncode == 0 and widened:
        _run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "reload"], folder), "pg_ctl reload")
    if status.returncode != 0:  # not running yet
        options = f"-c listen_addresses={address} -c port={port} -c unix_socket_directories={folder}"
        _run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "server.log"),
                        "-w", "start"], folder), "pg_ctl start", log=folder / "server.log")
    require_password(binaries, folder, port, password, address)
    server = server_conninfo(folder, port, address)
    ensure_database(server, DATABASE)
    return f"dbname={DATABASE} {server}"


def require_password(binaries: Path, folder: Path, port: int, password: str, address: str) -> None:
    """A cluster made before passwords (`--auth=trust`) gets the superuser's password and scram-sha-256 for
    every connection, then reloads its configuration."""
    hba = folder / "data" / "pg_hba.conf"
    rules = hba.read_text()
    if not any(line.split()[-1:] == ["trust"] for line in rules.splitlines() if not line.startswith("#")):
        return
    setting = subprocess.run([str(binaries / "psql"), "-h", address, "-p", str(port), "-U", "postgres", "-d",
                              "postgres", "-v", "ON_ERROR_STOP=1"], input=f"ALTER USER postgres PASSWORD '{password}';",
                             capture_output=True, text=True, check=False)  # on stdin: `ps` would show an argument
    if setting.returncode != 0:
        raise ServiceError(f"setting the superuser's password failed: {setting.stderr.strip()}")
    hba.write_text("\n".join(line.rsplit("trust", 1)[0] + "scram-sha-256" if line.split()[-1:] == ["trust"] and
                             not line.startswith("#") else line for line in rules.splitlines()) + "\n")
    _run(_as_owner([str(binaries / "pg_ctl"), "-D", str(folder / "data"), "reload"], folder), "pg_ctl reload")


def server_conninfo(folder: Path, port: int, address: str = LOOPBACK) -> str:
    """How to reach the cluster in `folder` as its superuser (no database named)."""
    return f"host={address} port={port} user=postgres password={team_secret(folder / PASSWORD_FILE)}"


def team_secret(path: Path) -> str:
    """The secret kept at `path`: made once (32 random URL-safe characters, fit for a libpq string, a URL and a
    config file as they are), in a file only its owner reads."""
    if not path.exists():
        write_private(path, secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def ensure_database(server: str, name: str) -> None:
    """Create the database `name` on the cluster `server` (`server_conninfo`) reaches, unless it exists."""
    binaries = postgres_bin()
    fields = dict(part.split("=", 1) for part in server.split())
    args = ["-h", fields["host"], "-p", fields["port"], "-U", fields["user"]]
    env = {**os.environ, "PGPASSWORD": fields.get("password", "")}  # not an argument: `ps` would show it
    exists = subprocess.run([str(binaries / "psql"), *args, "-d", "postgres", "-tAc",
                             f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
                            capture_output=True, text=True, check=False, env=env)
    if exists.stdout.strip() != "1":
        _run([str(binaries / "createdb"), *args, name], f"createdb {name}", env=env)


def stop_postgres(folder: Path, mode: str = "fast") -> None:
    """Stop the cluster in `folder` (if it runs)."""
    binaries = postgres_bin()
    data = folder / "data"
    if binaries is None or not (data / "postmaster.pid").exists():
        return
    subprocess.run(_as_owner([str(binaries / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"], folder),
                   capture_output=True, check=False)


def _run(command: list[str], what: str, log: Path | None = None, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        tail = log.read_text().strip().splitlines()[-1:] if log and log.exists() else []
        raise ServiceError(f"{what} failed: {' '.join(detail[-1:] + tail) or f'exit {result.returncode}'}")


def cluster_folder(settings: Settings) -> Path:
    """Where `team_up` keeps its cluster: in the home, or, as root (the cluster then belongs to `postgres`, who
    may not reach the home), under the `postgres` user's own folder."""
    if os.geteuid() != 0:
        return settings.home / "team" / "postgres"
    digest = hashlib.sha256(str(settings.home).encode()).hexdigest()[:12]
    return Path("/var/lib/postgresql") / f"autoannotate-{digest}"


BUCKET = "autoannotate"


def free_team_ports() -> dict[str, str]:
    """Team mode's port variables, each on a loopback port free now (for tests and benchmarks beside others)."""
    return {"AUTOANNOTATE_TEAM_POSTGRES_PORT": str(free_port()), "AUTOANNOTATE_TEAM_WEB_PORT": str(free_port()),
            "AUTOANNOTATE_TEAM_REDIS_PORT": str(free_port()), "AUTOANNOTATE_TEAM_S3_PORT": str(free_port_run())}


def team_env(settings: Settings, objects: ObjectStore) -> dict[str, str]:
    """The variables that put a home in team mode on this machine's PostgreSQL, Redis and SeaweedFS: the
    catalog and Dagster's storage in PostgreSQL; the images, the lake's Parquet files, batch manifests and models
    in the bucket (AUTOANNOTATE_SHARED), so that a worker needs no folder of another machine. Each service's
    password is in them."""
    server = server_conninfo(cluster_folder(settings), settings.team_postgres_port, settings.team_address)
    redis = team_secret(settings.home / "team" / REDIS_PASSWORD_FILE)
    return {"AUTOANNOTATE_CATALOG": f"postgres:dbname={DATABASE} {server}",
            "AUTOANNOTATE_DAGSTER_STORAGE": f"postgres:dbname=dagster {server}",
            "AUTOANNOTATE_CELERY_BROKER": f"redis://:{redis}@{settings.team_address}:{settings.team_redis_port}/0",
            "AUTOANNOTATE_SHARED": f"s3://{BUCKET}", **objects.env()}


def read_team_env(home: Path) -> dict[str, str]:
    """The variables `team_up` wrote to the home's `team.env`."""
    return dict(shlex.split(line.removeprefix("export "))[0].split("=", 1)
                for line in (home / "team.env").read_text().splitlines())


def wait_for_webserver(url: str, timeout_s: float = 120.0) -> None:
    """Return once the Dagster webserver at `url` answers; ServiceError when it has not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{url}/server_info", timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise ServiceError(f"The Dagster webserver at {url} did not answer within {timeout_s:g} s.") from None
            time.sleep(1)


def celery_worker_command(config: Path, name: str) -> list[str]:
    """A Celery worker of the batch job's executor (`config`: the YAML of `celery_config`), one step at a time:
    inference already spreads over every core of its machine (ONNX Runtime's threads), so two at once on one
    machine would each run at half speed."""
    return [str(Path(sys.executable).parent / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y",
            str(config), "-n", f"{name}@%h", "--", "--concurrency=1"]


def worker_home(home: Path, settings: Settings) -> dict[str, str]:
    """Make a Celery worker's own home (its caches and Dagster's scratch files: it reads nothing of the
    coordinator's home, as on another machine, where only the catalog, Redis and the bucket are shared), with the
    team's dagster.yaml; the variables that point the worker at it, and at the task files it runs: the
    coordinator's (`settings`), which every machine has at the same paths, as it has the code."""
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    write_private(home / "dagster" / "dagster.yaml", instance_yaml(settings.database_writers, settings.dagster_storage))
    return {"AUTOANNOTATE_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
            "AUTOANNOTATE_TASKS": os.pathsep.join(str(Path(t).resolve()) for t in settings.task_files)}


def checked_address(address: str) -> str:
    """The team's service address, if it is an IP address of this machine (the services bind it)."""
    try:
        ipaddress.ip_address(address)
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as probe:
            probe.bind((address, 0))
    except (ValueError, OSError) as error:
        raise ServiceError(f"AUTOANNOTATE_TEAM_ADDRESS={address!r} is not an IP address of this machine ({error}); "
                           "name one of its interfaces' addresses, or leave it unset for loopback.") from None
    return address


def team_up(settings: Settings) -> dict[str, object]:
    """PostgreSQL (catalog and Dagster storage), Redis (the Celery broker), Celery workers, the Dagster daemon and
    the webserver on this machine, in the background; `team.env` in the home holds the variables every later
    command needs."""
    if shutil.which("redis-server") is None:
        raise ServiceError("Redis is not installed (Debian: apt-get install redis-server); team mode's Celery "
                           "workers need it as their broker.")
    address = checked_address(settings.team_address)
    folder = settings.home / "team"
    folder.mkdir(parents=True, exist_ok=True)
    start_postgres(cluster_folder(settings), settings.team_postgres_port, address)
    ensure_database(server_conninfo(cluster_folder(settings), settings.team_postgres_port, address), "dagster")
    objects = start_seaweedfs(folder / "seaweedfs", settings.team_s3_port, address=address)
    create_bucket(objects, BUCKET)
    variables = team_env(settings, objects)
    write_private(settings.home / "team.env", "".join(f"export {k}='{v}'\n" for k, v in variables.items()))
    team = replace(settings, catalog=variables["AUTOANNOTATE_CATALOG"],
                   dagster_storage=variables["AUTOANNOTATE_DAGSTER_STORAGE"],
                   celery_broker=variables["AUTOANNOTATE_CELERY_BROKER"], shared=variables["AUTOANNOTATE_SHARED"])
    # Dagster's tables in PostgreSQL made now, once: workers, daemon and webserver starting together would race
    # to create them ("type run_tags already exists").
    persistent_instance(team.dagster_home, team.database_writers, team.dagster_storage)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, **variables, "AUTOANNOTATE_HOME": str(settings.home), "DAGSTER_HOME": str(team.dagster_home),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}  # dagster-celery starts `celery`
    # The workers' side of the executor's config (the same broker, acknowledgement and redelivery settings).
    write_private(folder / "celery.yaml", yaml.safe_dump({"execution": {"config": celery_config(team)}}))
    # Redis reads its password from a file of its own (a command line argument would show in `ps`).
    write_private(folder / "redis.conf", f"port {settings.team_redis_port}\nbind {address}\nsave \"\"\n"
                                         f"dir {folder}\nrequirepass {team_secret(folder / REDIS_PASSWORD_FILE)}\n")
    commands = {
        "redis": ["redis-server", str(folder / "redis.conf")],
        **{f"worker-{n}": celery_worker_command(folder / "celery.yaml", f"worker-{n}")
           for n in range(1, settings.team_workers + 1)},
        "daemon": [str(bin_dir / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
        "webserver": [str(bin_dir / "dagster-webserver"), "-w", str(REPO_ROOT / "workspace.yaml"), "-h", LOOPBACK,
                      "-p", str(settings.team_web_port)],
    }
    for name, command in commands.items():
        if _alive(folder / f"{name}.pid"):
            continue
        own = worker_home(folder / name, team) if name.startswith("worker-") else {}
        with (folder / f"{name}.log").open("a") as log:
            process = subprocess.Popen(command, cwd=REPO_ROOT, env={**env, **own}, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        (folder / f"{name}.pid").write_text(str(process.pid))
    return {"webserver": f"http://{LOOPBACK}:{settings.team_web_port}", "env_file": str(settings.home / "team.env"),
            **variables}


def team_down(settings: Settings) -> None:
    """Stop what `team_up` started (each process group: workers, daemon, webserver, then Redis), then SeaweedFS and
    PostgreSQL."""
    folder = settings.home / "team"
    for pid_file in sorted(folder.glob("*.pid"), key=lambda p: p.stem == "redis"):  # the broker last
        if _alive(pid_file):
            _stop_group(int(pid_file.read_text()))
        pid_file.unlink(missing_ok=True)
    stop_seaweedfs(folder / "seaweedfs")
    stop_postgres(cluster_folder(settings))


def _alive(pid_file: Path) -> bool:
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _stop_group(pid: int, grace_s: float = 15.0) -> None:
    """SIGTERM the process group, SIGKILL it if it is still there after `grace_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    """One request to the Dagster webserver's GraphQL API at `url`; its `data`."""
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables or {}})
                                     .encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def launch_backfill(url: str, batches: list[str]) -> None:
    """What the UI's "Launch backfill" does for the batch job's partitions: one run per batch, queued for the
    daemon, whose steps go to the Celery workers."""
    launched = graphql(url, """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
        __typename ... on PythonError { message } } }""", {"p": {"partitionNames": batches, "selector": {
        "partitionSetName": "annotate_batch_partition_set", "repositorySelector": {
            "repositoryLocationName": "pipelines.definitions:defs", "repositoryName": "__repository__"}}}})
    outcome = launched["launchPartitionBackfill"]
    if outcome["__typename"] != "LaunchBackfillSuccess":
        raise ServiceError(f"The backfill of {len(batches)} batches was refused: {outcome.get('message', outcome)}")


def run_statuses(url: str) -> list[dict]:
    """Every run the webserver knows: job name and status."""
    return graphql(url, "{ runsOrError { ... on Runs { results { jobName status } } } }")["runsOrError"]["results"]


def main(argv: list[str] | None = None) -> int:
    """`python -m apps.team_services up|down` (what `make team-up` and `make team-down` run)."""
    action = (argv or sys.argv[1:] or ["up"])[0]
    settings = Settings.from_env()
    if action == "down":
        team_down(settings)
        print("team services stopped")
        return 0
    try:
        started = team_up(settings)
    except ServiceError as error:
        print(f"autoannotate: {error}", file=sys.stderr)
        return 1
    print(f"team services up: Dagster UI {started['webserver']} (daemon running, storage and catalog in "
          f"PostgreSQL on {settings.team_address}:{settings.team_postgres_port}, images and the lake in the bucket "
          f"s3://{BUCKET} on SeaweedFS at {settings.team_address}:{settings.team_s3_port}, {settings.team_workers} "
          f"Celery workers on Redis {settings.team_address}:{settings.team_redis_port}).\n"
          f"Run `source {started['env_file']}` before autoannotate commands; `make team-down` stops everything.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
