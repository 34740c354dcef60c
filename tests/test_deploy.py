"""The seed's deployment run for real: examples/deploy built and brought up in podman, used from the host.

Marker ``deploy``; skips with the install line where no engine is available (``tests/deploy_engine.py``).
Each compose file in ``STACKS`` goes through the same steps: base images (cached), image build, compose up
with 3 workers, a job submitted from the host through the published port, 3 live workers in
``taskq workers``, scale to 1 and back to 3, one worker container SIGKILLed mid-batch with every job of the
batch still answered, and a teardown that leaves no container behind. More stacks (a Sentinel variant) are
added to ``STACKS`` as a :class:`StackSpec` (its own worker service and client URL), or named by
``TASKQ_DEPLOY_COMPOSE=path/to/compose.yml`` (same service name and URL shape as the seed's file).

    python -m pytest -p no:cacheprovider -m deploy tests/test_deploy.py
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskq_sdk import Client

from .conftest import ROOT, wait_until
from .deploy_engine import (
    Stack,
    build_base_images,
    engine_env,
    free_port,
    missing,
    project_name,
    running,
    sweep_orphans,
)

pytestmark = pytest.mark.deploy


@dataclass(frozen=True)
class StackSpec:
    """A compose file to deploy, its worker service, and the URL a host client uses (``{password}``, ``{port}``:
    ``REDIS_PASSWORD`` and ``TASKQ_REDIS_HOST_PORT``, both set by the test for the compose file to use)."""

    compose: Path
    worker_service: str = "arq-worker"
    url: str = "redis://:{password}@127.0.0.1:{port}/0"


STACKS = [StackSpec(ROOT / "examples" / "deploy" / "docker-compose.yml")]
if os.environ.get("TASKQ_DEPLOY_COMPOSE"):
    STACKS += [StackSpec(Path(p).resolve()) for p in os.environ["TASKQ_DEPLOY_COMPOSE"].split(os.pathsep)]

_why_not = missing()
if _why_not:
    pytest.skip(f"deploy tier: {_why_not}", allow_module_level=True)


class Deployed:
    """A stack that is up, with its URL on the host."""

    def __init__(self, stack: Stack, url: str, worker_service: str) -> None:
        self.stack, self.url, self.worker_service = stack, url, worker_service

    def live_workers(self) -> list[dict[str, object]]:
        """What ``taskq workers --json`` says from the host, minus workers that stopped."""
        taskq = Path(sys.executable).parent / "taskq"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "TASKQ_"))}
        out = subprocess.run(
            [str(taskq), "workers", "--json", "--url", self.url], capture_output=True, text=True, timeout=60, env=env
        )
        if out.returncode != 0:
            return []
        return [w for w in json.loads(out.stdout) if w["status"] != "stopped"]

    def wait_for_workers(self, n: int, timeout: float = 120) -> list[dict[str, object]]:
        return wait_until(
            lambda: (ws := self.live_workers()) and len(ws) == n and ws, timeout, 1.0, f"{n} live workers"
        )


@pytest.fixture(scope="module", params=STACKS, ids=lambda s: s.compose.name)
def deployed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    spec: StackSpec = request.param
    compose_file = spec.compose
    env = engine_env(tmp_path_factory.mktemp("engine"))
    password = secrets.token_urlsafe(16)
    port = free_port()
    env.update(REDIS_PASSWORD=password, TASKQ_REDIS_HOST_PORT=str(port))
    t0 = time.monotonic()
    print(build_base_images(env), f"({time.monotonic() - t0:.0f}s)")
    stack = Stack(compose_file, project_name("taskqtest"), env)
    with running(stack, service=spec.worker_service, replicas=3):
        yield Deployed(stack, spec.url.format(password=password, port=port), spec.worker_service)


def test_three_workers_serve_a_job_submitted_from_the_host(deployed: Deployed) -> None:
    workers = deployed.wait_for_workers(3)
    assert len({w["host"] for w in workers}) == 3, "one worker per container"
    assert all("crunch" in w["functions"] for w in workers)  # type: ignore[operator]
    with Client(deployed.url) as client:
        assert client.submit("word_count", "to be or not to be").result(timeout=120)["words"] == 6


def test_scale_to_one_and_back(deployed: Deployed) -> None:
    deployed.wait_for_workers(3)
    deployed.stack.scale(deployed.worker_service, 1)
    assert len(deployed.stack.containers(deployed.worker_service)) == 1
    deployed.wait_for_workers(1)
    deployed.stack.scale(deployed.worker_service, 3)
    assert len(deployed.stack.containers(deployed.worker_service)) == 3
    deployed.wait_for_workers(3)


def test_a_worker_container_killed_mid_batch_loses_nothing(deployed: Deployed) -> None:
    deployed.wait_for_workers(3)
    n, steps = 45, 40
    expected = sum(i * i for i in range(1, steps + 1))
    with Client(deployed.url) as client:
        jobs = [client.submit("crunch", steps, step=0.1) for _ in range(n)]
        busy = wait_until(
            lambda: [w for w in client.workers() if w.ongoing >= 3 and w.status != "stopped"], 60, 0.2, "a busy worker"
        )
        victim = busy[0]
        deployed.stack.kill(victim.host)  # the container's hostname is its short id
        results = [job.result(timeout=300) for job in jobs]
        infos = [job.info() for job in jobs]
    assert results == [expected] * n, "every job of the batch answered, once, with its value"
    retaken = [i for i in infos if i.attempts > 1]
    assert retaken, "the killed worker had running jobs; they ran again elsewhere"
    assert all(i.worker != victim.id for i in infos), "no job's final run is credited to the dead worker"
    deployed.wait_for_workers(2)


def test_stacks_of_killed_runs_are_swept(tmp_path: Path) -> None:
    """A network and volume left by a run whose process is gone are removed; a live run's are kept."""
    env = engine_env(tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs (the owner of a run killed before its teardown)
    orphan, mine = f"taskqtest{dead.pid}x0a0b0c", project_name("taskqtest")
    label = "io.podman.compose.project"
    made = []
    try:
        for project in (orphan, mine):
            for kind in ("network", "volume"):
                name = f"{project}_default"
                subprocess.run(["podman", kind, "create", "--label", f"{label}={project}", name], env=env, check=True)
                made.append((kind, name))
        base = subprocess.run(["podman", "images", "-q"], env=env, capture_output=True, text=True).stdout.split()
        if base:  # an image built for a stack is named <project>_<service>
            for project in (orphan, mine):
                subprocess.run(["podman", "tag", base[0], f"localhost/{project}_arq-worker"], env=env, check=True)
                made.append(("image", f"localhost/{project}_arq-worker"))
        swept = sweep_orphans(env)
        assert orphan in swept and mine not in swept

        def names(kind: str) -> list[str]:
            out = subprocess.run(
                ["podman", kind, "ls", "--format", "{{.Name}}"], env=env, capture_output=True, text=True
            )
            return out.stdout.split()

        for kind in ("network", "volume"):
            assert f"{orphan}_default" not in names(kind), f"the orphaned {kind} is still there"
            assert f"{mine}_default" in names(kind), f"a live run's {kind} was removed"
        if base:
            images = subprocess.run(
                ["podman", "images", "--format", "{{.Repository}}"], env=env, capture_output=True, text=True
            ).stdout.split()
            assert f"localhost/{orphan}_arq-worker" not in images, "the orphaned stack's image is still there"
            assert f"localhost/{mine}_arq-worker" in images, "a live run's image was removed"
    finally:
        for kind, name in made:
            rm = ["podman", "rmi", "--force", name] if kind == "image" else ["podman", kind, "rm", "--force", name]
            subprocess.run(rm, env=env, capture_output=True)
