"""A container engine for the deploy tier: podman with runc and explicit limits, compose stacks up and down.

Used by ``tests/test_deploy.py``; also a command for trying a stack by hand::

    python -m tests.deploy_engine check                                   # says what is missing, exit 0 if ready
    python -m tests.deploy_engine up examples/deploy/docker-compose.yml  # base images, build, up (3 workers)
    python -m tests.deploy_engine down examples/deploy/docker-compose.yml

The engine is Debian's ``podman`` with the ``runc`` runtime (crun fails on this machine's hybrid cgroups)
and explicit ulimits (the defaults exceed the machine's hard limits), both set through a private
``containers.conf`` (``CONTAINERS_CONF``) so that every ``podman`` call, the ones ``podman-compose`` makes
included, uses them. No registry is reachable, so the base images the Dockerfile and compose file name
come from ``examples/deploy/build_base_image.sh`` (debootstrap, cached by a hash of that script).

podman-compose 1.6 only ever adds replicas on ``up --scale``: :meth:`Stack.scale` then stops (SIGTERM,
the service's grace period) and removes the highest-numbered ones, as ``docker compose`` does.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .conftest import pid_alive

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE_SCRIPT = ROOT / "examples" / "deploy" / "build_base_image.sh"
ULIMITS = ("nofile=10000:10000", "nproc=4096:4096")
CONTAINERS_CONF = f"""\
[containers]
default_ulimits = [{", ".join(f'"{u}"' for u in ULIMITS)}]

[engine]
runtime = "runc"
"""


def engine_env(conf_dir: Path) -> dict[str, str]:
    """The environment for ``podman``/``podman-compose`` calls: runc and the ulimits via ``CONTAINERS_CONF``."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    conf = conf_dir / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(conf)
    return env


def compose_command() -> list[str] | None:
    """``podman-compose`` from this interpreter's environment or PATH, or None."""
    beside = Path(sys.executable).parent / "podman-compose"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("podman-compose")
    return [found] if found else None


def missing() -> str | None:
    """Why the deploy tier cannot run here, with the install line; None when it can."""
    if not shutil.which("podman"):
        return "no container engine: apt-get install -y podman runc debootstrap"
    if not shutil.which("runc"):
        return "podman needs the runc runtime here: apt-get install -y runc"
    if compose_command() is None:
        return "no compose tool: pip install podman-compose"
    probe = subprocess.run(["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"podman does not run here: {probe.stderr.strip()[-300:]}"
    if not shutil.which("debootstrap") and os.geteuid() == 0:
        images = subprocess.run(["podman", "image", "exists", "docker.io/library/python:3.11-slim"], check=False)
        if images.returncode != 0:
            return "no base images and no debootstrap to build them: apt-get install -y debootstrap"
    if os.geteuid() != 0:
        return "the deploy tier runs as root (debootstrap, rootful podman networks)"
    return None


def build_base_images(env: dict[str, str]) -> str:
    """Build (or find cached) the base images; returns the script's one-line report."""
    out = subprocess.run(["bash", str(BASE_IMAGE_SCRIPT)], env=env, capture_output=True, text=True, timeout=1200)
    if out.returncode != 0:
        raise RuntimeError(f"{BASE_IMAGE_SCRIPT.name} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    """One compose project: ``up``, ``scale``, ``kill``, ``down``, with every call's output kept in ``log``."""

    compose_file: Path
    project: str
    env: dict[str, str]
    log: list[str] = field(default_factory=list)

    def _run(self, args: Sequence[str], *, timeout: float = 600, check: bool = True) -> str:
        out = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=timeout)
        self.log.append(f"$ {' '.join(args)}\n{out.stdout[-4000:]}{out.stderr[-4000:]}")
        if check and out.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
            )
        return out.stdout

    def compose(self, *args: str, timeout: float = 600) -> str:
        tool = compose_command()
        assert tool is not None, "no podman-compose"
        return self._run([*tool, "-p", self.project, "-f", str(self.compose_file), *args], timeout=timeout)

    def containers(self, service: str, *, running: bool = True) -> list[str]:
        """Container names of a service in this project, by replica number."""
        args = ["podman", "ps", "--format", "json", "--filter", f"label=io.podman.compose.project={self.project}"]
        listed = json.loads(self._run([*args, *([] if running else ["-a"])]) or "[]")
        mine = [c for c in listed if c.get("Labels", {}).get("com.docker.compose.service") == service]
        mine.sort(key=lambda c: int(c["Labels"].get("com.docker.compose.container-number", "0")))
        return [c["Names"][0] for c in mine]

    def up(self, *, service: str, replicas: int) -> None:
        self.compose("up", "-d", "--build", "--scale", f"{service}={replicas}", timeout=1200)

    def scale(self, service: str, replicas: int, *, grace: float = 75) -> None:
        """Run exactly ``replicas`` containers of ``service``: compose adds, the highest numbers are stopped."""
        self.compose("up", "-d", "--no-deps", "--scale", f"{service}={replicas}", service)
        for name in self.containers(service, running=False)[replicas:]:
            self._run(["podman", "stop", "--time", str(int(grace)), name], timeout=grace + 30)
            self._run(["podman", "rm", name])

    def exec(self, container: str, *command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command inside a container (no stdin, not checked); a timeout raises ``TimeoutExpired``."""
        args = ["podman", "exec", container, *command]
        return subprocess.run(
            args, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )

    def kill(self, name: str) -> None:
        """SIGKILL one container: its processes die at once, no drain."""
        self._run(["podman", "kill", "--signal", "KILL", name])

    def down(self, *, grace: float = 20) -> None:
        """Stop and remove everything: extra replicas first (compose down knows only the file's count)."""
        label = f"label=io.podman.compose.project={self.project}"
        listed = json.loads(self._run(["podman", "ps", "-a", "--format", "json", "--filter", label]) or "[]")
        extra = [c["Names"][0] for c in listed if c["Labels"].get("com.docker.compose.container-number", "1") != "1"]
        if extra:
            self._run(["podman", "stop", "--time", str(int(grace)), *extra], timeout=grace + 60, check=False)
            self._run(["podman", "rm", "--force", *extra], check=False)
        # --rmi local: the image built for this project (559 MB) goes too; every run builds its own
        self.compose("down", "--volumes", "--rmi", "local", "--timeout", str(int(grace)), timeout=300)

    def leftovers(self) -> list[str]:
        """Containers, pods, networks, volumes and built images of this project still there (none after ``down``)."""
        label = f"label=io.podman.compose.project={self.project}"
        found = self._run(["podman", "ps", "-a", "--format", "{{.Names}}", "--filter", label]).split()
        found += self._run(
            ["podman", "pod", "ls", "--format", "{{.Name}}", "--filter", f"name=pod_{self.project}"]
        ).split()
        found += [
            n for n in self._run(["podman", "network", "ls", "--format", "{{.Name}}"]).split() if self.project in n
        ]
        found += [
            n for n in self._run(["podman", "volume", "ls", "--format", "{{.Name}}"]).split() if self.project in n
        ]
        found += [
            n
            for n in self._run(["podman", "images", "--format", "{{.Repository}}"]).split()
            if n.rsplit("/", 1)[-1].startswith(f"{self.project}_")
        ]
        return found


#: a test stack's project: its prefix, the pid of the test process that owns it, a random part
_OWNED = re.compile(r"^(taskq[a-z]+?)(\d+)x[0-9a-f]+$")


def project_name(prefix: str) -> str:
    """A compose project name for a test stack, naming its owner's pid (``taskqtest4242x9f3a``).

    A test run killed from outside (SIGKILL, a CI timeout) skips its teardown; the next run's
    :func:`sweep_orphans` recognises the stack as orphaned by that pid and removes it.
    """
    return f"{prefix}{os.getpid()}x{secrets.token_hex(3)}"


def sweep_orphans(env: dict[str, str]) -> list[str]:
    """Remove the containers, pods, networks, volumes and images of test stacks whose owning process is gone.

    Example::

        sweep_orphans(engine_env(tmp))   # ['taskqtest4242x9f3a'] after a run killed mid-test
    """

    def run(*args: str) -> str:
        out = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=300)
        return out.stdout if out.returncode == 0 else ""

    def orphaned(project: str) -> bool:
        m = _OWNED.match(project)
        return bool(m) and not pid_alive(int(m.group(2)))  # type: ignore[union-attr]

    label = "io.podman.compose.project"
    listed = json.loads(run("podman", "ps", "-a", "--format", "json") or "[]")
    projects = {c.get("Labels", {}).get(label, "") for c in listed}
    networks = run("podman", "network", "ls", "--format", "{{.Name}}").split()
    volumes = run("podman", "volume", "ls", "--format", "{{.Name}}").split()
    images = [n.rsplit("/", 1)[-1] for n in run("podman", "images", "--format", "{{.Repository}}").split()]
    projects |= {n.split("_", 1)[0] for n in networks + volumes + images}
    swept = sorted(p for p in projects if p and orphaned(p))
    for project in swept:
        ids = [c["Id"] for c in listed if c.get("Labels", {}).get(label) == project]
        if ids:
            run("podman", "rm", "--force", "--time", "0", *ids)
        run("podman", "pod", "rm", "--force", f"pod_{project}")
        for n in networks:
            if n.split("_", 1)[0] == project:
                run("podman", "network", "rm", "--force", n)
        for v in volumes:
            if v.split("_", 1)[0] == project:
                run("podman", "volume", "rm", "--force", v)
        for i in images:
            if i.split("_", 1)[0] == project:
                run("podman", "rmi", "--force", f"localhost/{i}")
    return swept


@contextmanager
def running(stack: Stack, *, service: str, replicas: int) -> Iterator[Stack]:
    """Bring a stack up with ``replicas`` of ``service``; on exit tear it down and check nothing is left.

    Stacks that killed test runs left behind are removed first (:func:`sweep_orphans`).
    """
    swept = sweep_orphans(stack.env)
    if swept:
        print(f"removed stacks of test runs that were killed before their teardown: {', '.join(swept)}")
    try:
        t0 = time.monotonic()
        stack.up(service=service, replicas=replicas)
        print(f"{stack.compose_file.name}: built and up in {time.monotonic() - t0:.0f}s")
        yield stack
    finally:
        try:
            stack.down()
        finally:
            left = stack.leftovers()
            assert not left, f"teardown left these behind: {left}\n" + "\n".join(stack.log[-5:])


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tests.deploy_engine check|up|down [compose file]``."""
    args = list(sys.argv[1:] if argv is None else argv)
    verb = args[0] if args else "check"
    reason = missing()
    if verb == "check" or reason:
        print(reason or "ready: podman (runc), podman-compose, base images buildable")
        return 1 if reason else 0
    compose_file = Path(args[1] if len(args) > 1 else ROOT / "examples" / "deploy" / "docker-compose.yml").resolve()
    env = engine_env(Path.home() / ".cache" / "taskq" / "deploy" / "conf")
    env.setdefault("REDIS_PASSWORD", "change-me")
    stack = Stack(compose_file, "taskqdeploy", env)
    t0 = time.monotonic()
    if verb == "up":
        print(build_base_images(env))
        stack.up(service="arq-worker", replicas=3)
    elif verb == "down":
        stack.down()
    print(f"{verb} done in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
