"""Hosts on a real network stack: a Linux network namespace per host, veth links to one bridge.

The test process stays in the root namespace and reaches every host over the bridge, as a client on
another machine would. Each host gets one address; the server runs in its own host and binds only
that address, with a password; each worker runs in another host. Cutting a host takes its link to
the bridge down: its packets are dropped silently (a blackhole, no RST), TCP connections stay open
and retransmit, as across a partitioned switch. Healing brings the link back.

Example::

    with Network(tmp_path) as net:
        srv = net.start_server(net.add_host("srv"))
        worker = net.start_worker(net.add_host("w1"), srv.url, env, ["tests.jobfns"])
        net.cut("w1"); ...; net.heal("w1")

Needs root and iproute2 (``ip netns``); :func:`unavailable_reason` says why not, for a skip.
Namespaces and links are named after the creating process (``tqh-<pid>-<host>``, ``tqhb<pid>``, ``tqhv<pid>...``), so
a run that crashed leaves names whose pid is gone: the next :class:`Network` removes them, and the
processes still inside them, before it builds its own.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis

from taskq_sdk import _lifeline
from taskq_sdk._lifeline import ENV_VAR, Lifeline
from taskq_sdk._server import find_server_binary

NS_PREFIX = "tqh-"
LINK_PREFIXES = ("tqhb", "tqhv")
SERVER_PORT = 6379


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be used here (for ``pytest.skip``), or None when they can."""
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "network namespaces need root (run the netns tier as root, as .ci/run does)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is missing (apt-get install iproute2)"
    probe = f"{NS_PREFIX}{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner_pid(name: str) -> int | None:
    """The creating pid encoded in a namespace or link name of ours, or None if the name is not ours."""
    if name.startswith(NS_PREFIX):
        rest = name[len(NS_PREFIX) :]
    elif name.startswith(LINK_PREFIXES):
        rest = name[4:]
    else:
        return None
    digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
    return int(digits) if digits else None


def _kill_namespace_processes(ns: str) -> None:
    pids = _ip("netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def remove_stale() -> list[str]:
    """Remove namespaces and links left by runs whose process is gone (and kill what runs inside them)."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        ns = line.split()[0] if line.strip() else ""
        owner = _owner_pid(ns)
        if owner is not None and owner != os.getpid() and not _pid_alive(owner):
            _kill_namespace_processes(ns)
            _ip("netns", "del", ns, check=False)
            removed.append(ns)
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        link = parts[1].strip().split("@", 1)[0]
        owner = _owner_pid(link)
        if owner is not None and owner != os.getpid() and not _pid_alive(owner):
            _ip("link", "del", link, check=False)
            removed.append(link)
    return removed


@dataclass
class Host:
    """One simulated machine: a namespace, its address on the bridge, and the bridge side of its link."""

    name: str
    ns: str
    ip: str
    bridge_port: str
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


@dataclass
class ServerOnHost:
    """The embedded server running inside a host, bound to that host's address only."""

    host: Host
    password: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@{self.host.ip}:{SERVER_PORT}/0"


@dataclass
class WorkerOnHost:
    """A ``python -m taskq_sdk.worker`` process running inside a host."""

    host: Host
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def is_alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM twice (running jobs go back to the queue), SIGKILL at the deadline."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class Network:
    """A bridge in the root namespace and one namespace per host; everything is removed on close()."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pid = os.getpid()
        self.bridge = f"tqhb{self.pid}"
        # one /24 per creating pid; the root namespace is .1 on it, hosts from .10
        self.subnet = f"10.213.{self.pid % 250}"
        self.hosts: dict[str, Host] = {}
        self.lifeline = Lifeline()
        self._closed = False
        remove_stale()
        _ip("link", "add", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ building
    def add_host(self, name: str) -> Host:
        """A new namespace joined to the bridge by a veth pair; its address is returned on the Host."""
        index = len(self.hosts)
        ns = f"{NS_PREFIX}{self.pid}-{name}"
        outer, inner = f"tqhv{self.pid}-{index}", f"tqhv{self.pid}i{index}"
        ip = f"{self.subnet}.{10 + index}"
        _ip("netns", "add", ns)
        host = Host(name, ns, ip, outer)
        self.hosts[name] = host
        _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
        _ip("link", "set", outer, "master", self.bridge)
        _ip("link", "set", outer, "up")
        _ip("link", "set", inner, "netns", ns)
        _ip("-n", ns, "link", "set", inner, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return host

    def _spawn(self, host: Host, cmd: Sequence[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
        fd = self.lifeline.child_fd
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", host.ns, *cmd],  # ip execs cmd itself: proc.pid is cmd's pid
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                start_new_session=True,
            )
        host.processes.append(proc)
        return proc

    def start_server(self, host: Host, *, password: str | None = None, ready_timeout: float = 15.0) -> ServerOnHost:
        """The embedded server in ``host``, bound to its address only, with a password; ready when it answers."""
        password = password or secrets.token_urlsafe(18)
        data = self.workdir / f"server-{host.name}"
        data.mkdir(parents=True, exist_ok=True)
        conf = data / "server.conf"
        conf.write_text(
            "\n".join(
                [
                    f"bind {host.ip}",
                    f"port {SERVER_PORT}",
                    "protected-mode yes",
                    f'requirepass "{password}"',
                    "maxmemory-policy noeviction",
                    "daemonize no",
                    f'dir "{data}"',
                    'save ""',
                    "appendonly no",
                ]
            )
            + "\n"
        )
        conf.chmod(0o600)
        supervisor = [
            sys.executable,
            "-I",
            os.path.abspath(_lifeline.__file__),
            "--fd",
            str(self.lifeline.child_fd),
            "--",
            find_server_binary(),
            str(conf),
        ]
        log_path = data / "server.log"
        proc = self._spawn(host, supervisor, {"PATH": os.environ.get("PATH", "")}, log_path)
        server = ServerOnHost(host, password, proc, log_path)
        deadline = time.monotonic() + ready_timeout
        while True:
            try:
                r = redis.Redis.from_url(server.url, socket_connect_timeout=1, socket_timeout=1)
                try:
                    if r.ping():
                        return server
                finally:
                    r.close()
            except redis.RedisError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"server in {host.ns} did not answer at {host.ip}:{SERVER_PORT}:\n"
                    + log_path.read_text(errors="replace")[-2000:]
                )
            time.sleep(0.05)

    def start_worker(
        self, host: Host, env: dict[str, str], modules: Sequence[str], *, args: Sequence[str] = ()
    ) -> WorkerOnHost:
        """``python -m taskq_sdk.worker MODULES`` in ``host`` (the caller waits for it to heartbeat)."""
        log_path = self.workdir / f"worker-{host.name}-{len(host.processes)}.log"
        env = dict(env)
        env[ENV_VAR] = str(self.lifeline.child_fd)
        proc = self._spawn(host, [sys.executable, "-m", "taskq_sdk.worker", *modules, *args], env, log_path)
        return WorkerOnHost(host, proc, log_path)

    # ------------------------------------------------------------------ faults
    def cut(self, name: str) -> None:
        """Partition a host: its link to the bridge goes down, its packets vanish (no RST, no ICMP)."""
        _ip("link", "set", self.hosts[name].bridge_port, "down")

    def heal(self, name: str) -> None:
        """End a host's partition: its link comes back up."""
        _ip("link", "set", self.hosts[name].bridge_port, "up")

    # ------------------------------------------------------------------ teardown
    def close(self) -> None:
        """Stop every process this network started (by pid), then remove its namespaces and bridge."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            for proc in host.processes:
                if proc.poll() is None:
                    proc.terminate()
            for proc in host.processes:
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
            _kill_namespace_processes(host.ns)  # anything a process of ours left behind in the host
            _ip("netns", "del", host.ns, check=False)
            _ip("link", "del", host.bridge_port, check=False)
        _ip("link", "del", self.bridge, check=False)
        self.lifeline.close()

    def __enter__(self) -> Network:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def worker_env(url: str, **extra: str) -> dict[str, str]:
    """A worker's environment: this machine's, minus connection settings, plus the tests' fast timings."""
    from .conftest import FAST_ENV, ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env.update(FAST_ENV)
    env.update({"REDIS_URL": url, "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def network_or_skip(workdir: Path) -> Network:
    """A new :class:`Network`, or ``pytest.skip`` with the reason namespaces are unavailable."""
    import pytest

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return Network(workdir)
