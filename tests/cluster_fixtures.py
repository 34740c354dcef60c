"""A real Redis Cluster for tests: 3 primaries + 3 replicas of the embedded server, joined from Python.

No ``valkey-cli``: the nodes are started with ``--cluster-enabled yes``, introduced with
``CLUSTER MEET``, given slots with ``CLUSTER ADDSLOTSRANGE`` and paired with ``CLUSTER REPLICATE``.
A short ``cluster-node-timeout`` lets a replica take over a killed primary within seconds::

    with RealCluster(tmp_dir).start() as cluster:
        cluster.url            # 'redis+cluster://:<pw>@127.0.0.1:p1,127.0.0.1:p2,.../0'
        cluster.owner(slot)    # the primary that serves a slot now
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_sdk._server import find_server_binary

#: the slot ranges of the three primaries
SLOT_RANGES = ((0, 5460), (5461, 10922), (10923, 16383))
NODE_TIMEOUT_MS = 1000


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            value = predicate()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"cluster fixture: timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Node:
    """One server process of the cluster."""

    port: int
    proc: subprocess.Popen[bytes]
    password: str
    bus_port: int
    node_id: str = ""

    def client(self, **kw: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=5, **kw)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class RealCluster:
    """Six server processes joined into a cluster (see the module docstring)."""

    directory: Path
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    nodes: list[Node] = field(default_factory=list)

    def start(self) -> RealCluster:
        binary = find_server_binary()
        ports = _free_ports(12)  # a data port and an explicit cluster-bus port per node
        for port, bus_port in zip(ports[:6], ports[6:], strict=True):
            d = self.directory / str(port)
            d.mkdir(parents=True, exist_ok=True)
            args = [
                binary,
                "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", str(bus_port),
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-replica-validity-factor", "0",
                "--cluster-require-full-coverage", "no",
                "--cluster-allow-replica-migration", "no",
                "--save", "", "--appendonly", "no",
                "--requirepass", self.password, "--masterauth", self.password,
            ]  # fmt: skip
            proc = subprocess.Popen(args, stdout=open(d / "log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
            self.nodes.append(Node(port, proc, self.password, bus_port))
        try:
            self._join()
        except BaseException:
            self.stop()
            raise
        return self

    def _join(self) -> None:
        for n in self.nodes:
            n.node_id = _wait(lambda n=n: n.client().execute_command("CLUSTER", "MYID").decode(), 10, "node up")
        first = self.nodes[0].client()
        for n in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", n.port, n.bus_port)
        for n, (lo, hi) in zip(self.nodes[:3], SLOT_RANGES, strict=True):
            n.client().execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for n in self.nodes:
            _wait(lambda n=n: n.client().execute_command("CLUSTER", "NODES").decode().count("\n") >= 6, 10, "meet")
        for primary, replica in zip(self.nodes[:3], self.nodes[3:], strict=True):
            # a replica must know its primary as a primary with slots before it can follow it
            _wait(
                lambda r=replica, p=primary: r.client().execute_command("CLUSTER", "REPLICATE", p.node_id),
                10,
                "replicate",
            )
        for n in self.nodes:
            _wait(lambda n=n: b"cluster_state:ok" in n.client().execute_command("CLUSTER", "INFO"), 15, "state ok")
        for replica in self.nodes[3:]:
            _wait(lambda r=replica: r.client().info("replication").get("master_link_status") == "up", 15, "sync")
        self.wait_healthy()

    def _converged(self, n: Node, replicas: bool = True) -> bool:
        """Whether ``n`` sees every slot served by a live primary (that has a replica, with ``replicas``)."""
        rows = n.client().execute_command("CLUSTER", "SLOTS")
        live = {m.port for m in self.nodes if m.alive}
        served = sum(r[1] - r[0] + 1 for r in rows if int(r[2][1]) in live)
        return served == 16384 and (not replicas or all(len(r) >= 4 for r in rows))

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self.nodes if n.alive)
        return f"redis+cluster://:{self.password}@{hosts}/0"

    def any_client(self) -> redis.Redis:
        return next(n for n in self.nodes if n.alive).client()

    def cluster_client(self) -> redis.RedisCluster:
        n = next(n for n in self.nodes if n.alive)
        return redis.RedisCluster(host="127.0.0.1", port=n.port, password=self.password)

    def node_by_id(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)

    def owner(self, slot: int) -> Node:
        """The primary serving ``slot`` now, as a live node sees it."""
        for lo, hi, primary, *_ in self._slots():
            if lo <= slot <= hi:
                return self.node_by_id(primary[2].decode())
        raise AssertionError(f"slot {slot} is not served")

    def _slots(self) -> list[Any]:
        return list(self.any_client().execute_command("CLUSTER", "SLOTS"))

    def slot_of(self, key: str) -> int:
        return int(self.any_client().execute_command("CLUSTER", "KEYSLOT", key))

    def primaries(self) -> list[Node]:
        ids = {row[2][2].decode() for row in self._slots()}
        return [self.node_by_id(i) for i in ids]

    def replica_of(self, primary: Node) -> Node:
        for n in self.nodes:
            if n.alive and n is not primary:
                role = n.client().execute_command("ROLE")
                if role[0] == b"slave" and int(role[2]) == primary.port:
                    return n
        raise AssertionError(f"no live replica follows {primary.port}")

    def kill(self, node: Node) -> None:
        """SIGKILL a node (a crash: nothing is flushed, no goodbye to the cluster)."""
        node.proc.send_signal(signal.SIGKILL)
        node.proc.wait(10)

    def wait_healthy(self, timeout: float = 20.0, *, replicas: bool = True) -> None:
        """Until every live node reports the cluster state ok and sees every slot served, with a replica.

        After a failover the new primary has no replica (its old primary is dead): then pass
        ``replicas=False``."""
        for n in self.nodes:
            if n.alive:
                _wait(lambda n=n: b"cluster_state:ok" in n.client().execute_command("CLUSTER", "INFO"), timeout, "ok")
                _wait(lambda n=n: self._converged(n, replicas), timeout, "every slot served (with replicas)")

    def stop(self) -> None:
        for n in self.nodes:
            if n.alive:
                with contextlib.suppress(OSError):
                    n.proc.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    n.proc.wait(10)

    def __enter__(self) -> RealCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealCluster]:
    """A fresh 3+3 cluster per test module (a failover test leaves it changed)."""
    cluster = RealCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


__all__ = ["NODE_TIMEOUT_MS", "RealCluster", "real_cluster"]
