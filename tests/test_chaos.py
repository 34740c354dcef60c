"""Faults with real processes (RELIABILITY.md): blocked loops, outages, hung and restarted servers."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

from taskq_sdk import BrokerUnavailable, Client
from taskq_sdk.config import Settings

from .conftest import figure, wait_until

pytestmark = pytest.mark.chaos


def test_blocked_event_loop_never_means_two_executions(
    settings: Settings, start_worker_process: Any, sync_redis: redis.Redis
) -> None:
    """An async job that blocks its worker's loop for 2.5 claim TTLs is not started by a second worker."""
    first = start_worker_process()
    with Client(settings=settings) as client:
        job = client.submit("blocks_loop", "runs:1", settings.claim_ttl * 2.5)
        wait_until(lambda: sync_redis.llen("runs:1") == 1, what="job started")
        start_worker_process()  # an idle second worker that would steal an expired claim
        assert job.result(timeout=60) == first.pid
        runs = sync_redis.lrange("runs:1", 0, -1)
        figure("concurrent_duplicate_executions", len(runs) - 1)
        assert len(runs) == 1, f"executed more than once: {runs}"


@pytest.fixture
def own_server(tmp_path: Any) -> Any:
    """A server this test may kill, pause and restart (append-only persistence in tmp_path)."""
    from taskq_sdk._server import LocalServer

    srv = LocalServer(persist_dir=tmp_path / "data").start()
    yield srv
    srv.stop()


def _settings_for(srv: Any, **overrides: Any) -> Settings:
    from .conftest import FAST

    return Settings(redis_url=srv.url, **{**FAST, **overrides})  # type: ignore[arg-type]


def test_short_outage_workers_reconnect_and_waits_ride_it_out(own_server: Any, lifeline: Any, tmp_path: Any) -> None:
    import os

    from taskq_sdk.local import WorkerProcess

    from .conftest import FAST_ENV, JOBS, ROOT

    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env.update(FAST_ENV)
    env.update({"REDIS_URL": own_server.url, "PYTHONPATH": str(ROOT)})
    worker = WorkerProcess(env, [JOBS], tmp_path / "w.log", lifeline=lifeline).start()
    settings = _settings_for(own_server)
    try:
        with Client(settings=settings) as client:
            wait_until(lambda: len(client.workers()) == 1, timeout=30, what="worker up")
            assert client.submit("add", 1, 1).result(timeout=10) == 2
            slow = client.submit("sleeper", 2.0)
            wait_until(lambda: slow.status().value == "in_progress", what="running")
            t0 = time.monotonic()
            own_server.kill()
            time.sleep(3.0)  # the outage itself (not a synchronisation)
            own_server.start()
            assert slow.result(timeout=30) == 2.0, "the wait rode out the outage"
            assert client.submit("add", 2, 2).result(timeout=30) == 4, "the worker reconnected"
            assert worker.is_alive(), f"the worker process exited:\n{worker.log_tail()}"
            figure("outage_recovery_seconds", round(time.monotonic() - t0, 2))
    finally:
        worker.stop(now=True)


def test_hung_server_calls_time_out(own_server: Any) -> None:
    settings = _settings_for(own_server, socket_timeout=1.0, connect_timeout=1.0)
    with Client(settings=settings) as client:
        client.ping()
        own_server.pause()
        try:
            t0 = time.monotonic()
            with pytest.raises(BrokerUnavailable):
                client.submit("add", 1, 2)
            took = time.monotonic() - t0
            figure("hung_server_call_timeout_seconds", round(took, 2))
            assert took < 10
        finally:
            own_server.resume()
        assert client.ping() > 0, "usable again once the server answers"


def test_restart_without_persistence_reports_lost_jobs(tmp_path: Any) -> None:
    from taskq_sdk import JobLost
    from taskq_sdk._server import LocalServer

    srv = LocalServer().start()
    try:
        with Client(settings=_settings_for(srv)) as client:
            jobs = [client.submit("add", i, i, _defer_by=3600) for i in range(50)]
            srv.restart()  # no persistence: every queued job is gone
            lost = 0
            for j in jobs:
                lost += j.status().value == "lost"
                with pytest.raises(JobLost):
                    j.result(timeout=10)
            figure("jobs_reported_lost_after_restart_without_persistence", lost)
            assert lost == 50
    finally:
        srv.stop()


def test_restart_with_persistence_keeps_every_queued_job(own_server: Any, start_worker: Any) -> None:
    settings = _settings_for(own_server)
    n = 2200
    with Client(settings=settings) as client:
        jobs = [client.submit("add", i, 1) for i in range(n)]
        r = redis.Redis.from_url(own_server.url)
        wait_until(lambda: r.zcard("arq:queue") == n, what="all queued")
        r.close()
        own_server.restart()
        from taskq_sdk.local import WorkerThread

        from .conftest import JOBS

        w = WorkerThread(settings, [JOBS]).start()
        try:
            results = [j.result(timeout=120) for j in jobs]
        finally:
            w.stop(now=True)
        kept = sum(1 for i, v in enumerate(results) if v == i + 1)
        figure("queued_jobs_kept_across_restart_with_aof", f"{kept}/{n}")
        assert kept == n


def test_scripts_lost_by_the_server_run_once_each(sync_redis: redis.Redis, redis_url: str) -> None:
    """After SCRIPT FLUSH (a restart), a pipeline of scripts where only some are refused runs each exactly once."""
    import asyncio

    from taskq_sdk._backend.connection import make_redis, run_scripts
    from taskq_sdk.config import Settings as S

    async def main() -> list[Any]:
        r = make_redis(S(redis_url=redis_url))  # type: ignore[call-arg]
        loaded = r.register_script("return redis.call('INCR', 'ran:loaded')")
        missing = r.register_script("return redis.call('INCR', 'ran:missing') + 0 * 1")
        await r.script_flush()
        await r.script_load(loaded.script)  # the first is known to the server, the second is not
        try:
            return await run_scripts(r, [(loaded, []), (missing, []), (loaded, [])])
        finally:
            await r.aclose()

    assert asyncio.run(main()) == [1, 1, 2]
    assert sync_redis.get("ran:loaded") == b"2" and sync_redis.get("ran:missing") == b"1"
