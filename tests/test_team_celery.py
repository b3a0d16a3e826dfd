"""Team mode with Celery: `make team-up` starts the daemon, the webserver and two Celery workers on one DuckLake;
a backfill's steps spread over the workers, and a worker killed mid-batch leaves its step to the other one."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from helpers import autoannotate, exactly_once, in_home, malicious_weights, table_counts, write_task_file

from apps.demo_scenes import write_demo_images

pytestmark = pytest.mark.team


@contextlib.contextmanager
def team_services(home: Path, **extra: str) -> Iterator[dict]:
    """`make team-up` for `home` on free ports (with `extra` variables in every service's environment); yields
    the ports, the variables of `team.env`, the webserver's URL and, after `make team-down`, its exit status."""
    from apps.team_services import ServiceError, cluster_folder, free_team_ports, read_team_env, wait_for_webserver
    from core.settings import Settings

    if shutil.which("redis-server") is None:
        pytest.skip("Debian's redis-server package is not installed (.ci/run installs it)")
    ports = free_team_ports()
    environment = {**os.environ, "AUTOANNOTATE_HOME": str(home), **ports, **extra}
    team = {"ports": ports, "url": f"http://127.0.0.1:{ports['AUTOANNOTATE_TEAM_WEB_PORT']}",
            "address": extra.get("AUTOANNOTATE_TEAM_ADDRESS", "127.0.0.1")}
    up = subprocess.run([sys.executable, "-m", "apps.team_services", "up"], env=environment, capture_output=True,
                        text=True, timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        try:
            wait_for_webserver(team["url"])
        except ServiceError as error:
            pytest.fail(f"{error}\n{(home / 'team' / 'webserver.log').read_text()[-3000:]}")
        wait_for_workers(home)
        team["variables"] = read_team_env(home)
        # This process pins batches as a coordinator's shell with `team.env` sourced does: in the bucket.
        with mock.patch.dict(os.environ, {k: v for k, v in team["variables"].items() if k.startswith("AWS_")}):
            yield team
    finally:
        down = subprocess.run([sys.executable, "-m", "apps.team_services", "down"], env=environment,
                              capture_output=True, text=True, timeout=120)
        shutil.rmtree(cluster_folder(Settings(home=home)), ignore_errors=True)
        team["down"] = (down.returncode, down.stderr)


def services_ask_for_their_passwords(home: Path, team: dict, namespace: str = "") -> None:
    """PostgreSQL and Redis refuse a client without the generated passwords (from the network namespace
    `namespace`, as another machine, when one is named); the files holding them are 0600."""
    from apps.team_services import PASSWORD_FILE, cluster_folder, postgres_bin
    from core.settings import Settings

    cluster = cluster_folder(Settings(home=home))
    for secret in (home / "team.env", home / "team" / "redis.conf", home / "team" / "celery.yaml",
                   cluster / PASSWORD_FILE, *(home / "team").glob("worker-*/dagster/dagster.yaml")):
        assert secret.stat().st_mode & 0o777 == 0o600, secret
    inside = ["ip", "netns", "exec", namespace] if namespace else []
    address, port = team["address"], team["ports"]["AUTOANNOTATE_TEAM_POSTGRES_PORT"]
    for password in ("", "guessed"):
        refused = subprocess.run([*inside, str(postgres_bin() / "psql"), "-h", address, "-p", port, "-U", "postgres",
                                  "-d", "postgres", "-w", "-c", "SELECT 1"], capture_output=True, text=True,
                                 env={**os.environ, "PGPASSWORD": password})
        assert refused.returncode == 2 and ("password authentication failed" in refused.stderr or
                                            "no password supplied" in refused.stderr), refused.stderr
    ping = ("import socket, sys; r = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5); "
            "r.sendall(b'PING\\r\\n'); print(r.recv(200).decode())")
    answer = subprocess.run([*inside, sys.executable, "-c", ping, address,
                             team["ports"]["AUTOANNOTATE_TEAM_REDIS_PORT"]], capture_output=True, text=True,
                            check=True).stdout
    assert answer.startswith("-NOAUTH"), answer
    broker, redis_port = team["variables"]["AUTOANNOTATE_CELERY_BROKER"], team["ports"]["AUTOANNOTATE_TEAM_REDIS_PORT"]
    assert broker.startswith("redis://:") and broker.endswith(f"@{address}:{redis_port}/0")


@contextlib.contextmanager
def machines_network(count: int) -> Iterator[tuple[str, list[str]]]:
    """A network as separate machines would have: a bridge holding this machine's address and one network
    namespace per worker machine joined to it by a veth pair (each with an address of its own, nothing else
    reachable). Yields the coordinator's address and the namespaces' names; all of it is removed after."""
    tag = f"{os.getpid() % 100000}"
    subnet = f"10.250.{os.getpid() % 250}"
    bridge, namespaces = f"aab{tag}", [f"aa{tag}w{n}" for n in range(1, count + 1)]

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    try:
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"{subnet}.1/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for n, namespace in enumerate(namespaces, start=2):
            ip("netns", "add", namespace)
            ip("link", "add", f"aa{tag}h{n}", "type", "veth", "peer", "name", f"aa{tag}n{n}")
            ip("link", "set", f"aa{tag}h{n}", "master", bridge)
            ip("link", "set", f"aa{tag}h{n}", "up")
            ip("link", "set", f"aa{tag}n{n}", "netns", namespace)
            ip("netns", "exec", namespace, "ip", "addr", "add", f"{subnet}.{n}/24", "dev", f"aa{tag}n{n}")
            ip("netns", "exec", namespace, "ip", "link", "set", f"aa{tag}n{n}", "up")
            ip("netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        yield f"{subnet}.1", namespaces
    finally:
        for namespace in namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True, check=False)


def worker_logs(home: Path) -> dict[str, str]:
    return {path.stem: path.read_text() for path in sorted((home / "team").glob("worker-*.log"))}


def wait_for_workers(home: Path, timeout_s: float = 240) -> None:
    """Until every Celery worker has said it is ready (on a loaded 2-core machine a worker can take a minute to
    import torch: steps sent before then all go to the other one)."""
    deadline = time.monotonic() + timeout_s
    while not all(" ready." in text for text in worker_logs(home).values()):
        if time.monotonic() > deadline:
            pytest.fail("\n".join(f"{name}: {text[-2000:]}" for name, text in worker_logs(home).items()))
        time.sleep(1)


def new_batches(home: Path, team: dict, sizes: list[int], seed: int) -> list[str]:
    """Batches of new demo images in the home's inbox, pinned as the sensor pins them."""
    from apps.runner import create_batch, instance_of, pending_files
    from core.settings import Settings
    from resources import build_resources

    settings = Settings.from_env({"AUTOANNOTATE_HOME": str(home), **team["ports"], **team["variables"]})
    inbox, instance = build_resources(settings)["inbox"], instance_of(settings)
    batches = []
    for index, size in enumerate(sizes):
        write_demo_images(settings.inbox_path, size, seed=seed + index, prefix=f"wave{seed + index}-")
        batches.append(create_batch(inbox, pending_files(inbox).ready, instance))
    return batches


def backfill_and_wait(url: str, batches: list[str], runs_in_all: int, timeout_s: float = 400) -> list[str]:
    """Launch the batches as one backfill through the webserver (the daemon runs them: their steps go to the
    Celery workers) and wait until `runs_in_all` runs have ended; their statuses."""
    from apps.team_services import launch_backfill, run_statuses

    launch_backfill(url, batches)
    deadline = time.monotonic() + timeout_s
    while True:
        ended = [r["status"] for r in run_statuses(url) if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
        if len(ended) == runs_in_all:
            return sorted(ended)
        assert time.monotonic() < deadline, run_statuses(url)
        time.sleep(3)


def test_team_up_runs_batches_on_two_celery_workers_and_team_down_stops_everything(tmp_path: Path) -> None:
    """`make team-up` on this machine: PostgreSQL, SeaweedFS, Redis, two Celery workers, the daemon and the
    webserver. A CLI run with `team.env` (in its own process) shows in the webserver; four batches launched as a
    backfill run through the daemon, their steps spread over both workers, every input is stored exactly once,
    the images and the lake in the bucket; `make team-down` leaves nothing."""
    from apps.team_services import run_statuses
    from core.s3 import S3Connection
    from storage.s3_blobs import S3Blobs

    home = tmp_path / "home"
    task = write_task_file(tmp_path)  # the demo task, where this test can point it at other weights later
    with team_services(home, AUTOANNOTATE_TASKS=str(task)) as team:
        services_ask_for_their_passwords(home, team)
        write_demo_images(tmp_path / "inbox", 3, seed=91)
        autoannotate("run", "--inbox", str(tmp_path / "inbox"), home=home, env={**team["ports"], **team["variables"]})
        assert [(r["jobName"], r["status"]) for r in run_statuses(team["url"])] == [("annotate_batch", "SUCCESS")]
        batches = new_batches(home, team, [4, 4, 4, 4], seed=200)
        assert backfill_and_wait(team["url"], batches, runs_in_all=5) == ["SUCCESS"] * 5
        logs = worker_logs(home)
        assert sorted(logs) == ["worker-1", "worker-2"]
        assert all("Task execute_plan" in text for text in logs.values()), {  # both workers ran steps
            name: text[-2000:] for name, text in logs.items()}
        counts = table_counts(home, team["variables"])
        assert counts["inputs"] == counts["input_sources"] == counts["task_inputs"] == 3 + 4 * 4
        assert exactly_once(home, team["variables"]) == 0
        # The images and the lake's Parquet files are in SeaweedFS's bucket, not in the home.
        bucket = S3Connection.from_env(team["variables"])
        images = S3Blobs(team["variables"]["AUTOANNOTATE_SHARED"] + "/images", connection=bucket)
        assert len(list(images.listing())) == counts["inputs"]
        lake = [info.key for info in S3Blobs(team["variables"]["AUTOANNOTATE_SHARED"] + "/lake",
                                             connection=bucket).listing()]
        assert lake and all(key.endswith(".parquet") for key in lake)
        assert not (home / "images").exists() and not (home / "lake").exists()

        # Weights whose pickle runs code, put in the task after team-up: the worker refuses them unread.
        weights, marker = malicious_weights(tmp_path)
        write_task_file(tmp_path, model={"weights": str(weights)})
        poisoned = new_batches(home, team, [2], seed=300)
        assert backfill_and_wait(team["url"], poisoned, runs_in_all=6) == ["FAILURE"] + ["SUCCESS"] * 5
        assert not marker.exists()
        assert any(f"Detector weights {weights} were refused unread" in text for text in worker_logs(home).values())
    assert team["down"][0] == 0, team["down"][1]
    assert not list((home / "team").glob("*.pid"))
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{team['url']}/server_info", timeout=5)


def test_a_worker_killed_mid_batch_leaves_its_step_to_the_other_worker(tmp_path: Path) -> None:
    """kill -9 of a whole Celery worker (its machine gone) while it runs a batch's inference: the step, never
    acknowledged, goes to the other worker after AUTOANNOTATE_CELERY_REDELIVER_S, and the run ends complete with
    every input, prediction and event exactly once."""
    from core.faults import PAUSE_VARIABLE, RESUME_VARIABLE

    home, resume = tmp_path / "home", tmp_path / "resume"
    with team_services(home, AUTOANNOTATE_CELERY_REDELIVER_S="60", **{PAUSE_VARIABLE: "inference",
                                                                      RESUME_VARIABLE: str(resume)}) as team:
        logs = {name: home / "team" / f"{name}.log" for name in ("worker-1", "worker-2")}
        batches = new_batches(home, team, [6], seed=93)
        killed: list[str] = []

        def kill_the_worker_at_inference() -> None:
            deadline = time.monotonic() + 300
            while not killed and time.monotonic() < deadline:
                killed.extend(name for name, log in logs.items() if "paused at inference" in log.read_text())
                time.sleep(0.5)
            os.killpg(int((home / "team" / f"{killed[0]}.pid").read_text()), signal.SIGKILL)
            resume.touch()

        killer = threading.Thread(target=kill_the_worker_at_inference)
        killer.start()
        assert backfill_and_wait(team["url"], batches, runs_in_all=1) == ["SUCCESS"]
        killer.join()
        survivor = ({"worker-1", "worker-2"} - {killed[0]}).pop()
        assert "paused at inference" in logs[survivor].read_text()  # it ran the step again
        counts = table_counts(home, team["variables"])
        assert counts["inputs"] == counts["processed_inputs"] == counts["task_inputs"] == 6
        stored = in_home(home, team["variables"], "store.read(lambda s: s.scalar('SELECT count(*) - count(DISTINCT "
                         "prediction_id) FROM predictions'))")
        assert counts["predictions"] > 0 and stored == 0
        assert exactly_once(home, team["variables"]) == 0


def start_worker_without(hidden: Path, home: Path, name: str, env: dict[str, str], namespace: str) -> subprocess.Popen:
    """A Celery worker as on a machine of its own: in the network namespace `namespace` (it reaches the services
    only through the coordinator's address) and a mount namespace where `hidden` (the coordinator's home) is an
    empty read-only folder (what it reads or writes there fails), with a home of its own."""
    from apps.team_services import celery_worker_command

    shutil.copyfile(hidden / "team" / "celery.yaml", home / "celery.yaml")
    worker = celery_worker_command(home / "celery.yaml", name)
    with (home / "worker.log").open("w") as log:
        return subprocess.Popen(["ip", "netns", "exec", namespace, "unshare", "--mount", "--propagation", "private",
                                 "--", "sh", "-c", 'mount -t tmpfs -o ro,size=1m tmpfs "$0" && exec "$@"', str(hidden),
                                 *worker], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def test_workers_on_machines_of_their_own_run_a_backfill_through_the_coordinators_address(tmp_path: Path) -> None:
    """Beyond one host: two workers, each in a network namespace of its own joined to the coordinator by a veth
    pair, as separate machines are; the services listen on the coordinator's address with their passwords (asked
    for from a worker's namespace too). No shared folder: each worker has its own home and sees the coordinator's
    as an empty read-only folder; the inbox is a bucket prefix, batch manifests, images and the lake are in the
    bucket. A backfill of three batches pinned by the coordinator runs on both, every input and event stored once,
    nothing written to their homes but caches and Dagster's scratch files."""
    from apps.runner import create_bucket_batch, instance_of
    from apps.team_services import worker_home
    from core.s3 import S3Connection
    from core.settings import Settings
    from resources import build_resources
    from storage.s3_blobs import S3Blobs

    probe = subprocess.run(["unshare", "--mount", "--net", "--", "sh", "-c", "mount -t tmpfs -o ro tmpfs /mnt && "
                            "ip link add aaprobe0 type veth peer name aaprobe1"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        pytest.skip(f"this machine cannot make mount and network namespaces for workers: {probe.stderr.strip()}")
    home = tmp_path / "home"
    with machines_network(2) as (address, namespaces), \
            team_services(home, AUTOANNOTATE_TEAM_WORKERS="0", AUTOANNOTATE_TEAM_ADDRESS=address) as team:
        services_ask_for_their_passwords(home, team, namespaces[0])
        variables = {**team["ports"], **team["variables"], "AUTOANNOTATE_INBOX": "s3://autoannotate/camera"}
        assert all(address in variables[name] for name in ("AUTOANNOTATE_CATALOG", "AWS_ENDPOINT_URL"))
        connection = S3Connection.from_env(variables)
        camera = S3Blobs("s3://autoannotate/camera", connection=connection)
        settings = Settings.from_env({"AUTOANNOTATE_HOME": str(home), **variables})
        workers = []
        for n, namespace in enumerate(namespaces, start=1):
            own = tmp_path / f"worker-{n}"
            env = {**os.environ, **variables, **worker_home(own, settings),  # dagster-celery starts `celery`
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
            workers.append((own, start_worker_without(home, own, f"own-{n}", env, namespace)))
        try:
            deadline = time.monotonic() + 240
            while not all(" ready." in (own / "worker.log").read_text() for own, _ in workers):
                assert all(process.poll() is None for _, process in workers), {
                    str(own): (own / "worker.log").read_text()[-2000:] for own, _ in workers}
                assert time.monotonic() < deadline
                time.sleep(1)
            inbox, instance, cursor, batches = build_resources(settings)["inbox"], instance_of(settings), None, []
            for wave in range(3):
                scenes = tmp_path / f"wave{wave}"
                write_demo_images(scenes, 3, seed=300 + wave, prefix=f"wave{wave}-")
                for path in sorted(scenes.iterdir()):
                    camera.put(f"wave{wave}/{path.name}", path.read_bytes())
                batch, cursor = create_bucket_batch(inbox, instance, cursor)
                batches.append(batch)
            assert backfill_and_wait(team["url"], batches, runs_in_all=3) == ["SUCCESS"] * 3
        finally:
            for _, process in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        logs = {own.name: (own / "worker.log").read_text() for own, _ in workers}
        assert all("Task execute_plan" in text for text in logs.values()), {k: v[-2000:] for k, v in logs.items()}
        counts = table_counts(home, variables)
        assert counts["inputs"] == counts["input_sources"] == counts["task_inputs"] == 9
        assert exactly_once(home, variables) == 0
        images = S3Blobs("s3://autoannotate/images", connection=connection)
        assert len(list(images.listing())) == 9
        assert [info.key for info in S3Blobs("s3://autoannotate/batches", connection=connection).listing()] == [
            f"{batch}.json" for batch in sorted(batches)]
        for own, _ in workers:  # a worker's home: caches (fetched objects) and Dagster's scratch files, no rows
            assert {"celery.yaml", "dagster", "worker.log", "downloads"} <= {p.name for p in own.iterdir()} <= {
                "celery.yaml", "dagster", "worker.log", "downloads", "cache"}


def test_the_team_throughput_benchmark_runs_at_a_tiny_size_and_prints_its_figures(tmp_path: Path) -> None:
    """tests/test_benchmarks.py's smoke run for the benchmark that starts team mode twice (here, after the other
    team tests rather than beside them)."""
    from helpers import run_benchmark_at_a_tiny_size

    run_benchmark_at_a_tiny_size("team_throughput.py", ["--images", "4", "--batches", "2"],
                                 r"^2 worker\(s\): row counts equal to one embedded run of the same photos in (\d+) "
                                 r"of \1 tables$", tmp_path)
