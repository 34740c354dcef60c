"""Redis/Valkey Sentinel: connecting by URL and environment, following a failover, durable submits.

A real primary, a replica and three sentinels from the embedded server binary (``tests/sentinel_group.py``);
failover is tuned to take ~2-5 s. The 10,000-job failover figure is in ``test_sentinel_figures.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskq_sdk import AsyncClient, Client, ConfigurationError, DurabilityUnconfirmed
from taskq_sdk._lifeline import Lifeline
from taskq_sdk.config import Settings
from taskq_sdk.local import WorkerProcess, WorkerThread

from .conftest import FAST, JOBS, ROOT, figure, wait_until
from .sentinel_group import SentinelGroup, worker_env

pytestmark = pytest.mark.sentinel


@pytest.fixture
def group(tmp_path: Path) -> Iterator[SentinelGroup]:
    g = SentinelGroup(tmp_path / "sentinel").start()
    try:
        yield g
    finally:
        g.stop()


def sentinel_settings(group: SentinelGroup, **overrides: Any) -> Settings:
    return Settings(redis_url=group.url, **{**FAST, **overrides})  # type: ignore[arg-type]


# ---------------------------------------------------------------- URLs and settings (no server needed)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel:///mymaster/0", "no sentinel hosts"),
        ("redis+sentinel://,/mymaster", "no sentinel hosts"),
        ("redis+sentinel://s1:http/mymaster", "bad port"),
        ("redis+sentinel://s1:70000/mymaster", "bad port"),
        ("redis+sentinel://s1:26379", "names no Sentinel primary"),
        ("redis+sentinel://s1:26379/", "names no Sentinel primary"),
        ("redis+sentinel://s1/mymaster/zero", "not a number"),
        ("redis+sentinel://s1/mymaster/0/extra", "too many parts"),
        ("redis+sentinel://s1/mymaster?ssl=1", "not understood"),
    ],
)
def test_bad_sentinel_urls_are_typed_errors(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        Settings(redis_url=url)  # type: ignore[arg-type]


def test_sentinel_url_parts_and_masking() -> None:
    s = Settings(redis_url="rediss+sentinel://app:pw@s1:26380,[::1],s3/prim/2?sentinel_password=spw")  # type: ignore[arg-type]
    a = s.sentinel()
    assert a is not None
    assert a.sentinels == (("s1", 26380), ("::1", 26379), ("s3", 26379))
    assert (a.master, a.db, a.username, a.password, a.sentinel_password, a.tls) == ("prim", 2, "app", "pw", "spw", True)
    assert "pw" not in s.safe_url().replace("sentinel_password", "") and "***" in s.safe_url()
    assert "spw" not in repr(s) and "pw@" not in repr(s)


def test_sentinel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", "s1:26379, s2:26380")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "mymaster")
    monkeypatch.setenv("REDIS_PASSWORD", "data")
    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "sent")
    monkeypatch.setenv("REDIS_DB", "3")
    a = Settings().sentinel()
    assert a is not None
    assert (a.sentinels, a.master, a.db, a.password, a.sentinel_password) == (
        (("s1", 26379), ("s2", 26380)), "mymaster", 3, "data", "sent",
    )  # fmt: skip
    monkeypatch.delenv("REDIS_SENTINEL_MASTER")
    with pytest.raises(ConfigurationError, match="REDIS_SENTINEL_MASTER"):
        Settings()
    monkeypatch.setenv("REDIS_URL", "redis://plain:6379/0")
    assert Settings().sentinel() is None, "REDIS_URL wins over REDIS_SENTINELS, as over REDIS_HOST"


def test_master_name_without_sentinels_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "mymaster")
    with pytest.raises(ConfigurationError, match="REDIS_SENTINELS is not"):
        Settings()


def test_tls_applies_to_sentinels_and_data_nodes(tmp_path: Path) -> None:
    from redis.asyncio.connection import SSLConnection

    from taskq_sdk._backend.connection import make_redis

    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made")
    settings = Settings(redis_url="rediss+sentinel://:pw@s1,s2/mymaster", tls_ca_certs=str(ca))  # type: ignore[arg-type]
    redis = make_redis(settings)
    pool = redis.connection_pool
    assert issubclass(pool.connection_class, SSLConnection), "data nodes over TLS"
    assert pool.connection_kwargs["ssl_ca_certs"] == str(ca) and pool.connection_kwargs["ssl_check_hostname"]
    for sentinel in pool.sentinel_manager.sentinels:  # type: ignore[attr-defined]
        assert issubclass(sentinel.connection_pool.connection_class, SSLConnection), "sentinels over TLS"
        assert sentinel.connection_pool.connection_kwargs["ssl_ca_certs"] == str(ca)
    plain = make_redis(Settings(redis_url="redis+sentinel://:pw@s1,s2/mymaster"))  # type: ignore[arg-type]
    assert not issubclass(plain.connection_pool.connection_class, SSLConnection)


def test_stock_arq_settings_use_arqs_sentinel_support() -> None:
    from taskq_sdk.arq_config import arq_settings

    rs = arq_settings(Settings(redis_url="redis+sentinel://:pw@s1:26379,s2:26379/mymaster/1"))["redis_settings"]  # type: ignore[arg-type]
    assert rs.sentinel and rs.sentinel_master == "mymaster" and rs.host == [("s1", 26379), ("s2", 26379)]
    assert (rs.database, rs.password) == (1, "pw") and "pw" not in repr(rs)
    with pytest.raises(ConfigurationError, match=r"python -m taskq_sdk\.worker"):
        arq_settings(Settings(redis_url="redis+sentinel://s1/mymaster?sentinel_password=x"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- a real primary, replica and three sentinels


def test_submit_wait_cancel_through_sentinel_url(group: SentinelGroup) -> None:
    settings = sentinel_settings(group)
    worker = WorkerThread(settings, [JOBS]).start()
    try:
        wait_until(lambda: worker.engine is not None and worker.engine.status == "running", what="worker running")
        with Client(settings=settings) as client:
            assert client.submit("add", 2, 3).result(timeout=30) == 5
            slow = client.submit("sleeper", 30.0)
            wait_until(lambda: slow.status().value == "in_progress", timeout=20, what="sleeper running")
            assert slow.cancel() is True
            wait_until(lambda: slow.status().value == "cancelled", timeout=20, what="sleeper cancelled")
            batch = client.map("double", range(20))
            assert batch.results(timeout=30) == [x * 2 for x in range(20)]
        # the writes are on the primary the sentinels name, and replicated
        with group.node_client(group.primary_node().port) as primary:
            assert primary.info("replication")["role"] == "master"
            assert primary.zcard("taskq:workers") == 1
    finally:
        worker.stop(now=True, timeout=20)


def test_clients_and_workers_connect_by_environment(
    group: SentinelGroup, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for k, v in group.env().items():
        monkeypatch.setenv(k, v)
    with Lifeline() as lifeline:
        worker = WorkerProcess(worker_env(group), [JOBS], tmp_path / "w.log", lifeline=lifeline).start()
        try:
            with Client(**{k: v for k, v in FAST.items() if k != "outage_budget"}) as client:  # type: ignore[arg-type]
                assert client.settings.sentinel() is not None
                wait_until(lambda: len(client.workers()) == 1, timeout=30, what=f"worker up\n{worker.log_tail()}")
                assert client.submit("add", 1, 1).result(timeout=30) == 2

            async def through_async() -> Any:
                async with AsyncClient() as aclient:
                    return await (await aclient.submit("add", 20, 22)).result(timeout=30)

            assert asyncio.run(through_async()) == 42
        finally:
            worker.stop(now=True)


def test_queue_service_and_cli_accept_a_sentinel_url(group: SentinelGroup, tmp_path: Path) -> None:
    import subprocess
    import sys

    from taskq_sdk import TaskQueueService

    async def service_roundtrip() -> Any:
        async with TaskQueueService(group.url, **FAST) as service:
            job_id = await service.enqueue("add", 1, 2)
            return await service.get_status(job_id)

    status = asyncio.run(service_roundtrip())
    assert status["status"] == "queued", status
    env = worker_env(group)
    out = subprocess.run(
        [sys.executable, "-m", "taskq_sdk.cli", "health", "--url", group.url, "--json"],
        env={k: v for k, v in env.items() if not k.startswith("REDIS_")},
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert "ConfigurationError" not in out.stderr and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stdout.strip(), out.stderr[-2000:]


# ---------------------------------------------------------------- failover


@pytest.mark.chaos
def test_failover_with_a_client_waiting_and_a_worker_running(
    group: SentinelGroup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL the primary while a job runs and a client waits on it: both follow the promoted replica.

    Polling is slowed to 60 s on both sides, so the results below arrive by the pub/sub wake-ups and
    job events, re-subscribed on the new primary, not by a fallback poll.
    """
    slow_poll = {"TASKQ_POLL_INTERVAL": "60"}
    settings = sentinel_settings(group, poll_interval=60.0, outage_budget=30.0)
    with Lifeline() as lifeline:
        worker = WorkerProcess(worker_env(group, **slow_poll), [JOBS], tmp_path / "w.log", lifeline=lifeline).start()
        try:
            with Client(settings=settings) as client:
                wait_until(lambda: len(client.workers()) == 1, timeout=30, what=f"worker up\n{worker.log_tail()}")
                assert client.submit("add", 1, 1).result(timeout=30) == 2
                running = client.submit("sleeper", 4.0)
                wait_until(lambda: running.status().value == "in_progress", timeout=20, what="sleeper running")
                group.wait_replicated()
                with caplog.at_level(logging.WARNING, logger="taskq_sdk"):
                    old = group.kill_primary()
                    t0 = time.monotonic()
                    new = group.wait_for_failover(old)
                    assert running.result(timeout=40) == 4.0, "the wait rode out the failover"
                    figure("sentinel_failover_wait_seconds", round(time.monotonic() - t0, 2))
                moved = [r.getMessage() for r in caplog.records if "moved from" in r.getMessage()]
                assert moved and f"{old[0]}:{old[1]}" in moved[0] and f"{new[0]}:{new[1]}" in moved[0], moved
                # a fresh job: the worker is woken on the new primary (no poll for 60 s) and the client told
                assert client.submit("add", 2, 2).result(timeout=20) == 4
                assert worker.is_alive(), f"the worker exited:\n{worker.log_tail()}"
            log = (tmp_path / "w.log").read_text()
            assert "moved from" in log, f"the worker did not log the failover:\n{log[-3000:]}"
        finally:
            worker.stop(now=True)


@pytest.mark.chaos
def test_a_demoted_primary_is_left_like_a_lost_connection(group: SentinelGroup) -> None:
    """A primary demoted under open connections answers writes with READONLY: clients and workers reconnect.

    A sentinel failover kills the old primary's client connections itself; a demotion by hand
    (``REPLICAOF``) does not, so the connections stay and every write meets READONLY until the
    sentinels name the new primary. The worker treats that as an outage, not a crash.
    """
    settings = sentinel_settings(group, outage_budget=30.0)
    worker = WorkerThread(settings, [JOBS]).start()
    try:
        wait_until(lambda: worker.engine is not None and worker.engine.status == "running", what="worker running")
        with Client(settings=settings) as client:
            assert client.submit("add", 1, 2).result(timeout=30) == 3
            group.wait_replicated()
            old, new = group.swap_roles_by_hand()
            wait_until(lambda: _readonly_replies(group, old.port) > 0, timeout=20, what="a write refused by READONLY")
            group.repoint_sentinels(new)
            for i in range(5):
                assert client.submit("add", i, 10).result(timeout=30) == i + 10
            assert client.map("double", range(10)).results(timeout=30) == [x * 2 for x in range(10)]
            figure("sentinel_readonly_replies_ridden_out", _readonly_replies(group, old.port))
        assert worker.engine is not None and worker.engine.status == "running", "the worker survived READONLY"
    finally:
        worker.stop(now=True, timeout=20)


def _readonly_replies(group: SentinelGroup, port: int) -> int:
    with group.node_client(port) as c:
        return int(c.info("errorstats").get("errorstat_READONLY", {}).get("count", 0))


# ---------------------------------------------------------------- durable submit


def test_durable_submit_waits_for_a_replica(group: SentinelGroup) -> None:
    settings = sentinel_settings(group, durable_timeout=1.0)
    with Client(settings=settings) as client:
        job = client.submit("add", 1, 2, _durable=True)
        client.map("double", range(50), _durable=True, chunk_size=1)  # one job per item, counted below
        with pytest.raises(ConfigurationError, match="_durable takes True or False"):
            client.submit("add", 1, 2, _durable="yes")
        replica = group.replica_nodes()[0]
        with group.node_client(replica.port) as r:  # the replica has them already, without waiting for sync
            assert r.exists(f"arq:job:{job.id}") == 1
            assert r.zcard("arq:queue") == 51
        os.kill(replica.pid, signal.SIGKILL)
        replica.proc.wait(10)  # type: ignore[union-attr]
        with pytest.raises(DurabilityUnconfirmed, match="0 of the 1 replica") as caught:
            client.submit("add", 3, 4, _durable=True)
        assert len(caught.value.job_ids) == 1
        assert client.job(caught.value.job_ids[0]).status().value == "queued", "written to the primary all the same"
        with pytest.raises(DurabilityUnconfirmed, match="the jobs of batch"):
            client.map("double", range(5), _durable=True)
        assert client.submit("add", 5, 6).status().value == "queued", "a plain submit does not wait"


def test_durable_submit_by_environment(group: SentinelGroup, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in group.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("TASKQ_DURABLE_SUBMIT", "true")
    monkeypatch.setenv("TASKQ_DURABLE_TIMEOUT", "0.5")
    with Client() as client:
        assert client.settings.durable_submit
        client.submit("add", 1, 2)
        replica = group.replica_nodes()[0]
        os.kill(replica.pid, signal.SIGKILL)
        replica.proc.wait(10)  # type: ignore[union-attr]
        with pytest.raises(DurabilityUnconfirmed):
            client.submit("add", 1, 2)
        client.submit("add", 1, 2, _durable=False)  # the per-call option wins


def test_durable_timeout_stays_below_the_socket_timeout() -> None:
    from taskq_sdk._backend.durable import durable_timeout_ms

    assert durable_timeout_ms(Settings(durable_timeout=10, socket_timeout=5)) == 4500
    assert durable_timeout_ms(Settings(durable_timeout=0.5)) == 500


def test_the_readme_sentinel_block_runs_against_sentinel(group: SentinelGroup, tmp_path: Path) -> None:
    """The README's Sentinel block is skipped by test_readme (it needs sentinels); it runs here."""
    import re
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("**Sentinel** (failover)") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    env = worker_env(group)
    with Lifeline() as lifeline:
        worker = WorkerProcess(env, ["examples.jobs"], tmp_path / "w.log", lifeline=lifeline).start()
        try:
            out = subprocess.run(
                [sys.executable, "-c", code.group(1)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
            )
        finally:
            worker.stop(now=True)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "'words': 5" in out.stdout, out.stdout


def test_sdk_jobs_run_on_the_stock_arq_command_through_sentinel(tmp_path: Path) -> None:
    """arq's own Sentinel support (``RedisSettings(sentinel=True)``), for sentinels without a password."""
    import subprocess
    import sys

    group = SentinelGroup(tmp_path / "open-sentinels", sentinel_password=None).start()
    try:
        with Client(settings=sentinel_settings(group)) as client:
            ok = client.submit("add", 20, 22)
            slow = client.submit("slow", 5, step=0.01)
            proc = subprocess.run(
                [sys.executable, "-m", "arq", "tests.stock_settings.WorkerSettings", "--burst"],
                env=worker_env(group), cwd=ROOT, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert ok.result(timeout=10) == 42
            assert slow.result(timeout=10) == 5
    finally:
        group.stop()
