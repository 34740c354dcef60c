"""Workers on many hosts: the server and each worker in its own network namespace, over veth links.

The quick checks of the netns tier (tests/netns_hosts.py): jobs flow over a real network stack to
workers on two hosts, the server answers only on its host's address and only with its password, and a
run that crashed leaves no namespace, link or process behind once the next run starts. The partition
cases live in tests/test_partitions.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from taskq_sdk import Client
from taskq_sdk.config import Settings

from .conftest import FAST, ROOT, pid_alive, wait_until
from .netns_hosts import NS_PREFIX, Network, network_or_skip, remove_stale, worker_env

pytestmark = pytest.mark.netns

MODULES = ["tests.partition_jobs"]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Network]:
    network = network_or_skip(tmp_path)
    try:
        yield network
    finally:
        network.close()


def test_workers_on_two_hosts_share_a_batch_over_the_network(net: Network) -> None:
    """Two worker hosts drain one batch from a server on a third host; every result is right, both hosts worked."""
    srv = net.start_server(net.add_host("srv"))
    workers = [net.start_worker(net.add_host(f"w{i}"), worker_env(srv.url), MODULES) for i in (1, 2)]
    settings = Settings(redis_url=srv.url, **FAST)  # type: ignore[arg-type]
    with Client(settings=settings) as client:
        wait_until(lambda: len(client.workers()) == 2, timeout=30, what="both worker hosts registered")
        jobs = [client.submit("where", i) for i in range(200)]
        results = [job.result(timeout=60) for job in jobs]
    assert [doubled for _, doubled in results] == [i * 2 for i in range(200)]
    ran_on = {pid for pid, _ in results}
    assert ran_on <= {w.pid for w in workers}
    assert len(ran_on) == 2, f"only worker {ran_on} ran jobs:\n{workers[0].log_tail()}\n{workers[1].log_tail()}"


def test_the_server_answers_only_on_its_host_address_and_with_its_password(net: Network) -> None:
    """The server binds its host's address only (not the host's loopback) and refuses clients without its password."""
    srv = net.start_server(net.add_host("srv"))
    no_password = redis.Redis(host=srv.host.ip, port=6379, socket_connect_timeout=2)
    with pytest.raises(redis.AuthenticationError):
        no_password.ping()
    no_password.close()
    inside = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            srv.host.ns,
            sys.executable,
            "-c",
            "import socket; s = socket.socket(); s.settimeout(2); print(s.connect_ex(('127.0.0.1', 6379)))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert inside.stdout.strip() not in ("", "0"), f"the server also listens on the host's loopback: {inside}"


def test_a_crashed_run_leaves_nothing_behind(tmp_path: Path) -> None:
    """A run killed with SIGKILL leaves its namespaces, bridge and processes; the next run removes them all."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHING_RUN, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        if line and line[0] == "skip":
            pytest.skip(" ".join(line[1:]))
        assert line and line[0] == "ready", line
        sleeper = int(line[1])
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    left = [ns for ns in _namespaces() if ns.startswith(f"{NS_PREFIX}{child.pid}-")]
    assert left, "the crashed run should have left its namespace behind (else this test proves nothing)"
    removed = remove_stale()
    assert set(left) <= set(removed)
    assert not [ns for ns in _namespaces() if ns.startswith(f"{NS_PREFIX}{child.pid}-")]
    assert f"tqhb{child.pid}" not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    wait_until(lambda: not pid_alive(sleeper), timeout=10, what=f"process {sleeper} left in the namespace is gone")


def _namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


_CRASHING_RUN = """
import subprocess, sys, time
from pathlib import Path
from tests.netns_hosts import Network, unavailable_reason
reason = unavailable_reason()
if reason:
    print("skip", reason, flush=True)
    sys.exit(0)
net = Network(Path(sys.argv[1]))
host = net.add_host("h")
# not tied to the lifeline: the stale sweep itself must kill what runs inside a left-over namespace
p = subprocess.Popen(["ip", "netns", "exec", host.ns, "sleep", "600"], start_new_session=True)
print("ready", p.pid, flush=True)
time.sleep(600)
"""
