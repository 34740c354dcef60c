"""client.health(): ok, degraded and down for real conditions, from the scheduled snapshot or measured now."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskq_sdk import AsyncClient, Client, JobFailed
from taskq_sdk.config import Settings
from taskq_sdk.jobs.monitoring import HISTORY_KEY
from taskq_sdk.models import HealthSnapshot

from .conftest import figure, wait_until


def test_no_worker_means_down(settings: Settings) -> None:
    with Client(settings=settings) as client:
        h = client.health()
        assert h.status == "down" and h.live_workers == 0
        assert "no live worker" in h.reasons[0] and "python -m taskq_sdk.worker" in h.reasons[0]
        client.submit("add", 1, 2)  # nothing serves it: the reason says a job is waiting
        h = client.health()
        assert "1 due job(s) are waiting" in h.reasons[0]
        assert {q.name: q.depth for q in h.queues}["default"] == 1
        assert str(h).startswith("down: no live worker")


def test_unreachable_server_is_down_not_an_exception(settings: Settings) -> None:
    gone = settings.model_copy(update={"connect_timeout": 0.5, "socket_timeout": 0.5}).with_url("redis://127.0.0.1:1/0")
    with Client(settings=gone) as client:
        started = time.monotonic()
        h = client.health()
    assert h.status == "down" and "cannot be reached" in h.reasons[0]
    assert time.monotonic() - started < 5


def test_ok_then_degraded_by_a_failure_rate(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        h = client.health(refresh=True)
        assert h.status == "ok", h.reasons
        assert h.live_workers == 1 and h.ping_ms is not None and h.ping_ms < 250
        assert h.server["used_memory"] > 0 and h.server["version"] != "?"
        for i in range(2):
            client.submit("add", i, i).result(timeout=10)
        failing = [client.submit("boom", i) for i in range(6)]
        for job in failing:
            with pytest.raises(JobFailed):
                job.result(timeout=10)
        h = client.health(refresh=True)
    assert h.status == "degraded"
    assert h.jobs.failed == 6 and h.jobs.complete == 2 and h.jobs.failure_rate == pytest.approx(0.75)
    assert any("failure rate 75%" in r for r in h.reasons), h.reasons


def test_stuck_job_is_reported(settings: Settings, start_worker: Any) -> None:
    """A job that swallows its cancellation runs past its limit while its worker keeps renewing the claim."""
    start_worker(monitoring_cron="* * * * * *")
    with Client(settings=settings, tenant="acme") as client:
        job = client.submit("ignores_cancel", 8.0)
        # its own limit (@job(timeout=0.5)) is known to the worker that runs the monitoring job;
        # stuck = still claimed after limit + claim TTL (3 s in tests)
        h = wait_until(
            lambda: (lambda s: s if s.stuck else None)(client.health()),
            timeout=15,
            interval=0.25,
            what="a stuck job",
        )
        assert h.source == "scheduled"
        assert h.status == "degraded" and any("running past their time limit" in r for r in h.reasons)
        (stuck,) = h.stuck
        assert stuck.id == job.id and stuck.function == "ignores_cancel" and stuck.tenant == "acme"
        assert stuck.timeout_s == 0.5 and stuck.running_s > 3.5
        with Client(settings=settings, tenant="globex") as other:
            assert other.health().stuck == []  # another tenant's job is not listed
        assert job.cancel()


def test_health_reads_the_scheduled_snapshot_and_rechecks_liveness(
    settings: Settings, start_worker: Any, sync_redis: Any
) -> None:
    w = start_worker(monitoring_cron="* * * * * *")
    wait_until(lambda: sync_redis.llen(HISTORY_KEY) >= 2, timeout=20, what="scheduled snapshots")
    with Client(settings=settings.model_copy(update={"monitoring_cron": "* * * * * *"})) as client:
        h = client.health()
        assert h.source == "scheduled" and h.job_id is not None and h.job_id.startswith("monitoring-")
        assert h.status == "ok" and h.age_s < 5
        history = client.health_history(10)
        assert len(history) >= 2 and history[0].taken_at >= history[1].taken_at
        w.stop(now=True)
        wait_until(
            lambda: client.health().status == "down", timeout=20, interval=0.25, what="down after the worker left"
        )
        h = client.health()
        assert h.source == "scheduled" and any("no live worker" in r for r in h.reasons)


def test_stale_snapshot_is_degraded(settings: Settings, worker: Any, sync_redis: Any) -> None:
    old = HealthSnapshot(status="ok", taken_at=datetime.now(tz=UTC) - timedelta(hours=1), source="scheduled")
    sync_redis.lpush(HISTORY_KEY, old.model_dump_json())
    with Client(settings=settings) as client:
        h = client.health()
    assert h.status == "degraded" and any("snapshot is" in r and "old" in r for r in h.reasons), h.reasons


def test_async_health_and_tenant_view(settings: Settings, worker: Any) -> None:
    async def main() -> tuple[HealthSnapshot, HealthSnapshot]:
        async with AsyncClient(settings=settings, tenant="acme") as acme, AsyncClient(settings=settings) as ops:
            await (await acme.submit("add", 1, 1)).result(timeout=10)
            await (await ops.submit("add", 2, 2)).result(timeout=10)
            started = time.perf_counter()
            mine = await acme.health(refresh=True)
            figure("health_refresh_ms", round((time.perf_counter() - started) * 1000, 1))
            return mine, await ops.health(refresh=True)

    mine, everyone = asyncio.run(main())
    assert mine.jobs.complete == 1 and set(mine.jobs_by_tenant) == {"acme"}
    assert everyone.jobs.complete == 2 and set(everyone.jobs_by_tenant) == {"acme", "default"}
