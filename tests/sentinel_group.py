"""A real Sentinel deployment for tests: a primary, a replica and three sentinels, all from the embedded binary.

Every process binds loopback, runs from a temp dir, and dies with the test process (PDEATHSIG), or
is stopped by :meth:`SentinelGroup.stop`. Failover is tuned to take seconds, not the default 30+::

    group = SentinelGroup(tmp_path).start()
    group.url                         # redis+sentinel://:pw@127.0.0.1:p1,.../mymaster/0?sentinel_password=...
    group.kill_primary()              # SIGKILL; the sentinels promote the replica in ~2-5 s
    group.wait_for_failover(old)      # the new primary's (host, port)
    group.stop()
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from taskq_sdk._lifeline import _pdeathsig_preexec
from taskq_sdk._server import _free_port, find_server_binary

from .conftest import FAST_ENV, ROOT

HOST = "127.0.0.1"
MASTER = "mymaster"
DATA_PASSWORD = "data-pw-1"
SENTINEL_PASSWORD = "sentinel-pw-2"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


@dataclass
class Node:
    """One server process of the group."""

    role: str
    port: int
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class SentinelGroup:
    """A primary, ``replicas`` replicas and three sentinels on loopback, with short failover timings."""

    root: Path
    replicas: int = 1
    sentinel_password: str | None = SENTINEL_PASSWORD  # None: sentinels without a password (arq's limit)
    binary: str = field(default_factory=find_server_binary)
    data: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)

    # ------------------------------------------------------------------ addresses
    @property
    def sentinel_hosts(self) -> str:
        """``127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`` (the REDIS_SENTINELS form)."""
        return ",".join(f"{HOST}:{n.port}" for n in self.sentinels)

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL with both passwords."""
        url = f"redis+sentinel://:{DATA_PASSWORD}@{self.sentinel_hosts}/{MASTER}/0"
        return url + (f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else "")

    def env(self) -> dict[str, str]:
        """The same target as environment variables."""
        env = {"REDIS_SENTINELS": self.sentinel_hosts, "REDIS_SENTINEL_MASTER": MASTER, "REDIS_PASSWORD": DATA_PASSWORD}
        if self.sentinel_password:
            env["REDIS_SENTINEL_PASSWORD"] = self.sentinel_password
        return env

    def node_client(self, port: int) -> redis.Redis:
        return redis.Redis(host=HOST, port=port, password=DATA_PASSWORD, socket_timeout=2, socket_connect_timeout=2)

    def sentinel_client(self, node: Node) -> redis.Redis:
        return redis.Redis(
            host=HOST, port=node.port, password=self.sentinel_password, socket_timeout=2, socket_connect_timeout=2
        )

    def primary_address(self) -> tuple[str, int] | None:
        """Where a majority of the live sentinels say the primary is (None while they disagree or are down)."""
        votes: dict[tuple[str, int], int] = {}
        for node in self.sentinels:
            if not node.alive():
                continue
            try:
                with self.sentinel_client(node) as s:
                    host, port = s.sentinel_get_master_addr_by_name(MASTER)
                    key = (host.decode() if isinstance(host, bytes) else host, int(port))
                    votes[key] = votes.get(key, 0) + 1
            except redis.RedisError:
                continue
        best = max(votes.items(), key=lambda kv: kv[1], default=None)
        return best[0] if best is not None and best[1] >= 2 else None

    def primary_node(self) -> Node:
        address = self.primary_address()
        assert address is not None, "the sentinels name no primary"
        return next(n for n in self.data if n.port == address[1])

    def replica_nodes(self) -> list[Node]:
        primary = self.primary_address()
        return [n for n in self.data if n.alive() and (primary is None or n.port != primary[1])]

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 30.0) -> SentinelGroup:
        self.root.mkdir(parents=True, exist_ok=True)
        primary_port = _free_port()
        self.data.append(self._data_node("primary", primary_port, None))
        for i in range(self.replicas):
            self.data.append(self._data_node(f"replica{i}", _free_port(), primary_port))
        for node in self.data:
            self._spawn(node)
        for i in range(3):
            node = self._sentinel_node(f"sentinel{i}", _free_port(), primary_port)
            self.sentinels.append(node)
            self._spawn(node, "--sentinel")
        self._wait_ready(primary_port, timeout)
        return self

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            if node.alive():
                assert node.proc is not None
                node.proc.kill()
                node.proc.wait(10)

    def kill_primary(self) -> tuple[str, int]:
        """SIGKILL the current primary; returns its old address."""
        node = self.primary_node()
        os.kill(node.pid, signal.SIGKILL)
        assert node.proc is not None
        node.proc.wait(10)
        return HOST, node.port

    def wait_for_failover(self, old: tuple[str, int], timeout: float = 30.0) -> tuple[str, int]:
        """Wait until the sentinels name a new primary that answers as a primary; return its address."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            address = self.primary_address()
            if address is not None and address != old:
                try:
                    with self.node_client(address[1]) as c:
                        if c.info("replication").get("role") == "master":
                            return address
                except redis.RedisError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"no failover within {timeout}s: the sentinels still say {self.primary_address()}")

    def wait_replicated(self, timeout: float = 10.0) -> None:
        """Wait until every live replica has the primary's whole replication stream."""
        primary = self.primary_node()
        with self.node_client(primary.port) as c:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                info = c.info("replication")
                offset = int(info["master_repl_offset"])
                replicas = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
                if replicas and all(int(r["offset"]) >= offset for r in replicas):
                    return
                time.sleep(0.02)
        raise AssertionError(f"the replicas did not catch up within {timeout}s")

    def swap_roles_by_hand(self) -> tuple[Node, Node]:
        """Promote the replica and demote the primary with REPLICAOF, behind the sentinels' back.

        Unlike a sentinel failover, this kills no client connection: writes on them meet READONLY.
        Returns (old primary, new primary).
        """
        old, new = self.primary_node(), self.replica_nodes()[0]
        with self.node_client(new.port) as c:
            c.execute_command("REPLICAOF", "NO", "ONE")
        with self.node_client(old.port) as c:
            c.execute_command("REPLICAOF", HOST, new.port)
        return old, new

    def repoint_sentinels(self, primary: Node) -> None:
        """What an operator does after moving the primary by hand: monitor the new one."""
        for node in self.sentinels:
            with self.sentinel_client(node) as s:
                s.execute_command("SENTINEL", "REMOVE", MASTER)
                s.execute_command("SENTINEL", "MONITOR", MASTER, HOST, primary.port, 2)
                s.execute_command(
                    "SENTINEL", "SET", MASTER, "auth-pass", DATA_PASSWORD,
                    "down-after-milliseconds", DOWN_AFTER_MS, "failover-timeout", FAILOVER_TIMEOUT_MS,
                )  # fmt: skip

    def restart_node(self, node: Node) -> None:
        """Start a killed data node again from its (sentinel-rewritten or original) config."""
        self._spawn(node)

    # ------------------------------------------------------------------ internals
    def _data_node(self, role: str, port: int, primary_port: int | None) -> Node:
        lines = [
            f"bind {HOST}",
            f"port {port}",
            "protected-mode yes",
            f'requirepass "{DATA_PASSWORD}"',
            f'masterauth "{DATA_PASSWORD}"',
            "maxmemory-policy noeviction",
            'save ""',
            "appendonly no",
            f'dir "{self.root}"',
            f'dbfilename "{role}.rdb"',
            f'logfile "{self.root / (role + ".log")}"',
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",
        ]
        if primary_port is not None:
            lines.append(f"replicaof {HOST} {primary_port}")
        conf = self.root / f"{role}.conf"
        conf.write_text("\n".join(lines) + "\n")
        return Node(role, port, conf)

    def _sentinel_node(self, role: str, port: int, primary_port: int) -> Node:
        lines = [
            f"bind {HOST}",
            f"port {port}",
            f'dir "{self.root}"',
            f'logfile "{self.root / (role + ".log")}"',
            f"sentinel monitor {MASTER} {HOST} {primary_port} 2",
            f'sentinel auth-pass {MASTER} "{DATA_PASSWORD}"',
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER} 1",
        ]
        if self.sentinel_password:
            lines += [f'requirepass "{self.sentinel_password}"', f'sentinel sentinel-pass "{self.sentinel_password}"']
        conf = self.root / f"{role}.conf"
        conf.write_text("\n".join(lines) + "\n")
        return Node(role, port, conf)

    def _spawn(self, node: Node, *extra: str) -> None:
        node.proc = subprocess.Popen(
            [self.binary, str(node.conf), *extra],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=str(self.root),
            preexec_fn=_pdeathsig_preexec(),
            start_new_session=True,
        )

    def _respawn_elsewhere(self, node: Node, primary_port: int) -> None:
        """Start a replica or sentinel again on a fresh port: its port was taken between choosing and binding it
        (another process's outgoing connection got it); nothing else names a replica's or a sentinel's port."""
        port = _free_port()
        if node in self.sentinels:
            fresh = self._sentinel_node(node.role, port, primary_port)
            self.sentinels[self.sentinels.index(node)] = fresh
            self._spawn(fresh, "--sentinel")
        else:
            fresh = self._data_node(node.role, port, primary_port)
            self.data[self.data.index(node)] = fresh
            self._spawn(fresh)

    def _wait_ready(self, primary_port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        respawned = 0
        while time.monotonic() < deadline:
            for node in [*self.data, *self.sentinels]:
                if not node.alive():
                    log = self.root / f"{node.role}.log"
                    tail = log.read_text()[-2000:] if log.exists() else "(no log)"
                    if "Address already in use" in tail and node.role != "primary" and respawned < 3:
                        respawned += 1
                        log.unlink()
                        self._respawn_elsewhere(node, primary_port)
                        continue
                    raise RuntimeError(f"{node.role} exited at start:\n{tail}")
            try:
                ready = True
                for node in self.sentinels:
                    with self.sentinel_client(node) as s:
                        state = s.sentinel_master(MASTER)
                        last = state
                        if int(state["num-slaves"]) < self.replicas or int(state["num-other-sentinels"]) < 2:
                            ready = False
                for node in self.data[1:]:
                    with self.node_client(node.port) as c:
                        if c.info("replication").get("master_link_status") != "up":
                            ready = False
                if ready:
                    return
            except redis.RedisError as exc:
                last = exc
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the sentinel group was not ready within {timeout}s (last: {last})")


def worker_env(group: SentinelGroup, **extra: str) -> dict[str, str]:
    """A worker process's environment for ``group``: the test settings, no inherited REDIS_/ARQ_/TASKQ_ ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env.update(FAST_ENV)
    env.update(group.env())
    env.update({"PYTHONPATH": str(ROOT), "TASKQ_OUTAGE_BUDGET": "30"})
    env.update(extra)
    return env
