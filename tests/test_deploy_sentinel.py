"""The Sentinel deployment run for real: a primary, a replica, three sentinels and 3 workers in podman.

Marker ``deploy``; skips with the install line where no engine is available (``tests/deploy_engine.py``).
``examples/deploy/docker-compose.sentinel.yml`` is built and brought up with ``--scale arq-worker=3``; the
sentinels announce container host names (``redis-primary``) that only the podman network resolves, so the
client runs inside a worker container (``podman exec``), with the container's own ``REDIS_SENTINELS``
settings. A batch is submitted with ``_durable=True``; while it runs the primary container is SIGKILLed, the
sentinels promote the replica, every worker logs that the primary moved and follows it, and every job of the
batch is answered with its value. The teardown leaves no container behind.

    python -m pytest -p no:cacheprovider -m deploy tests/test_deploy_sentinel.py
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest

from .conftest import ROOT, wait_until
from .deploy_engine import Stack, build_base_images, engine_env, missing, project_name, running

pytestmark = pytest.mark.deploy

COMPOSE = ROOT / "examples" / "deploy" / "docker-compose.sentinel.yml"
WORKER = "arq-worker"

_why_not = missing()
if _why_not:
    pytest.skip(f"deploy tier: {_why_not}", allow_module_level=True)

# Runs inside a worker container: submits a durable batch, says when half of it is done, then waits for all.
BATCH_SCRIPT = """
import json, sys, time, traceback
from taskq_sdk import Client

n, steps = int(sys.argv[1]), int(sys.argv[2])
with Client() as client:
    jobs = [client.submit("crunch", steps, step=0.1, _durable=True) for _ in range(n)]
    print("acknowledged", len(jobs), flush=True)
    deadline = time.monotonic() + 120
    while sum(job.info().status == "complete" for job in jobs) < n // 3:
        assert time.monotonic() < deadline, "a third of the batch never finished"
        time.sleep(0.2)
    print("kill now", flush=True)
    sys.stdin.readline()  # the host killed the primary
    # waits ride a failover out (TASKQ_OUTAGE_BUDGET); one-shot reads such as info() fail fast, so they come after
    results = []
    for job in jobs:
        try:
            results.append(job.result(timeout=240))
        except Exception as exc:
            results.append(f"{type(exc).__name__}: {exc}")
            traceback.print_exc()
    attempts = [job.info().attempts for job in jobs]
    after = client.submit("word_count", "submitted after the failover").result(timeout=60)
    print(json.dumps({"results": results, "attempts": attempts, "after": after}), flush=True)
"""


class SentinelStack:
    """The stack that is up, with ways to run a command inside it."""

    def __init__(self, stack: Stack, password: str, sentinel_password: str) -> None:
        self.stack, self.password, self.sentinel_password = stack, password, sentinel_password

    def run_in_worker(self, *command: str) -> str:
        worker = self.stack.containers(WORKER)[0]
        out = self.stack.exec(worker, *command)
        assert out.returncode == 0, f"{command} in {worker}: {out.stdout[-2000:]}{out.stderr[-2000:]}"
        return out.stdout

    def live_workers(self) -> list[dict[str, object]]:
        """What ``taskq workers --json`` says inside the network, minus workers that stopped."""
        try:
            listed = json.loads(self.run_in_worker("taskq", "workers", "--json"))
        except AssertionError:
            return []
        return [w for w in listed if w["status"] != "stopped"]

    def redis_cli(self, container: str, password: str, *args: str, port: int = 6379) -> str:
        """``redis-cli`` inside a container; empty when it does not answer in time."""
        cli = ["redis-cli", "-p", str(port), "-a", password, "--no-auth-warning", *args]
        try:
            return self.stack.exec(container, *cli, timeout=30).stdout
        except subprocess.TimeoutExpired:
            return ""

    def primary(self) -> str:
        """The primary's host name as the first sentinel reports it."""
        sentinel = self.stack.containers("sentinel-1")[0]
        reply = self.redis_cli(
            sentinel, self.sentinel_password, "sentinel", "get-master-addr-by-name", "mymaster", port=26379
        )
        return reply.split("\n")[0].strip()

    def sentinels_ready(self) -> bool:
        """Every sentinel sees the replica and the two other sentinels: a failover can be agreed on."""
        for sentinel in (self.stack.containers(f"sentinel-{i}")[0] for i in (1, 2, 3)):
            reply = self.redis_cli(sentinel, self.sentinel_password, "sentinel", "master", "mymaster", port=26379)
            fields = reply.split("\n")
            seen = dict(zip(fields[::2], fields[1::2], strict=False))
            if seen.get("num-slaves") != "1" or seen.get("num-other-sentinels") != "2":
                return False
        return True

    def replica_online(self) -> bool:
        """The primary container has its replica connected (durable submits need it)."""
        info = self.redis_cli(self.stack.containers("redis-primary")[0], self.password, "info", "replication")
        return "connected_slaves:1" in info and "state=online" in info

    def logs(self, container: str) -> str:
        out = subprocess.run(
            ["podman", "logs", container], env=self.stack.env, capture_output=True, text=True, timeout=60
        )
        return out.stdout + out.stderr


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelStack]:
    env = engine_env(tmp_path_factory.mktemp("engine"))
    password, sentinel_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    # a failover whose first elections fail is retried every 2 x failover-timeout (20 s): give the workers and
    # the batch room for a few retries, so the test checks what it is about (nothing lost), not one election
    env.update(REDIS_PASSWORD=password, REDIS_SENTINEL_PASSWORD=sentinel_password, TASKQ_OUTAGE_BUDGET="180")
    t0 = time.monotonic()
    print(build_base_images(env), f"({time.monotonic() - t0:.0f}s)")
    stack = Stack(COMPOSE, project_name("taskqsent"), env)
    with running(stack, service=WORKER, replicas=3):
        yield SentinelStack(stack, password, sentinel_password)


def test_three_workers_find_the_primary_through_the_sentinels(deployed: SentinelStack) -> None:
    workers = wait_until(lambda: (ws := deployed.live_workers()) and len(ws) == 3 and ws, 120, 1.0, "3 live workers")
    assert len({w["host"] for w in workers}) == 3, "one worker per container"
    wait_until(lambda: deployed.primary() == "redis-primary", 60, 0.5, "the sentinels name redis-primary")
    wait_until(deployed.replica_online, 60, 0.5, "the replica connected to the primary")
    wait_until(deployed.sentinels_ready, 60, 0.5, "each sentinel sees the replica and the other two")


def test_primary_killed_mid_batch_the_replica_takes_over_and_nothing_is_lost(deployed: SentinelStack) -> None:
    wait_until(lambda: len(deployed.live_workers()) == 3, 120, 1.0, "3 live workers")
    wait_until(deployed.replica_online, 60, 0.5, "the replica connected to the primary")
    wait_until(deployed.sentinels_ready, 60, 0.5, "each sentinel sees the replica and the other two")
    n, steps = 60, 30
    expected = sum(i * i for i in range(1, steps + 1))
    worker = deployed.stack.containers(WORKER)[0]
    args = ["podman", "exec", "-i", worker, "python", "-c", BATCH_SCRIPT, str(n), str(steps)]
    with subprocess.Popen(
        args, env=deployed.stack.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as batch:
        assert batch.stdin is not None and batch.stdout is not None and batch.stderr is not None
        lines = [batch.stdout.readline(), batch.stdout.readline()]
        assert lines == [f"acknowledged {n}\n", "kill now\n"], "".join(lines) + batch.stderr.read()
        t0 = time.monotonic()
        deployed.stack.kill(deployed.stack.containers("redis-primary")[0])
        batch.stdin.write("\n")
        batch.stdin.flush()
        try:
            promoted = wait_until(lambda: deployed.primary() == "redis-replica", 170, 0.5, "the replica promoted")
        except AssertionError:
            for i in (1, 2, 3):  # why the sentinels did not promote it: their view and their election log
                name = deployed.stack.containers(f"sentinel-{i}")[0]
                print(f"--- sentinel-{i}:", deployed.logs(name)[-3000:])
            raise
        print(f"failover: the sentinels named the replica {time.monotonic() - t0:.1f}s after the kill")
        out, err = batch.communicate(timeout=300)
    assert promoted and batch.returncode == 0, f"{out[-2000:]}\n{err[-3000:]}"
    report = json.loads(out.strip().splitlines()[-1])
    assert report["results"] == [expected] * n, f"every acknowledged (durable) job answered:\n{err[-4000:]}"
    assert report["after"]["words"] == 4, "a submit after the failover reached the new primary"
    print(f"jobs that ran again after the failover: {sum(a > 1 for a in report['attempts'])} of {n}")
    for name in deployed.stack.containers(WORKER):
        log = deployed.logs(name)
        assert "primary 'mymaster' moved from" in log and "redis-replica" in log, (
            f"{name} did not follow:\n{log[-2000:]}"
        )
    wait_until(lambda: len(deployed.live_workers()) == 3, 120, 1.0, "3 live workers on the new primary")
