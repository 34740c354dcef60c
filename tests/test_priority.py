"""Priorities within a queue: ``_priority=`` on submit and map, ``@job(priority=)``; a head start in the
queue's due-time order that ages, so a job that waited long enough goes first anyway."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

import taskq_sdk
from taskq_sdk import AsyncClient, Client, JobStatus
from taskq_sdk._callables import with_default_priority
from taskq_sdk.config import Settings
from taskq_sdk.errors import ConfigurationError

from .conftest import figure, wait_until


def test_a_high_priority_job_starts_next_behind_10000_queued(
    settings: Settings, start_worker: Callable[..., Any], sync_redis: redis.Redis
) -> None:
    queue = f"prio{uuid.uuid4().hex[:8]}"
    key = f"prio:{queue}:order"
    start_worker(queue=queue, max_jobs=1)
    with Client(settings=settings, queue=queue) as client:
        blocker = client.submit("sleeper", 2.0)  # the worker's only slot is busy meanwhile
        wait_until(lambda: blocker.status() is JobStatus.in_progress, timeout=20, what="the blocker running")
        lows = client.map("record_job_id", [key] * 10_000, chunk_size=1)
        high = client.submit("record_job_id", key, _priority=1)
        assert blocker.status() is JobStatus.in_progress, "the queue filled while the only slot was busy"
        assert high.result(timeout=30) == high.id
        first = sync_redis.lrange(key, 0, 0)
        assert first == [high.id.encode()], "the high-priority job ran before every low one"
        freed = blocker.info().finished_at
        started = high.info().started_at
        assert freed is not None and started is not None
        figure("priority_wait_behind_10000_ms", round(max(0.0, (started - freed).total_seconds()) * 1000))
        # a priority map goes ahead of the rest of the low batch too
        urgent = client.map("record_job_id", [key] * 3, chunk_size=1, _priority=2)
        assert urgent.results(timeout=30) == urgent.job_ids()
        assert lows.counts().done < 10_000, "the urgent batch did not wait for the 10,000"
        lows.cancel()
    sync_redis.delete(key)


def test_priority_is_a_head_start_that_ages(settings: Settings) -> None:
    step = settings.priority_step
    with Client(settings=settings) as client:
        core = client.async_client.core
        before = int(time.time() * 1000)
        row = core.prepare("double", (1,), {"_priority": 3})
        after = int(time.time() * 1000)
        # priority p queues as if submitted p x TASKQ_PRIORITY_STEP earlier: a job that has waited
        # longer than that is still ahead of it, so low priority cannot starve
        assert before - 3 * step * 1000 <= row.score_ms <= after - 3 * step * 1000
        assert row.state == "queued"
        plain = core.prepare("double", (1,), {})
        assert plain.score_ms >= before
        for bad in (-1, 101, 1.5, True, "high"):
            with pytest.raises(ConfigurationError, match="_priority is an integer from 0"):
                core.prepare("double", (1,), {"_priority": bad})
        with pytest.raises(ConfigurationError, match="deferred job"):
            core.prepare("double", (1,), {"_priority": 2, "_defer_by": 5})
        with pytest.raises(ConfigurationError, match="unknown option"):
            client.map("double", [1], _prio=2)


def test_job_decorator_sets_the_default_priority(settings: Settings, worker: Any) -> None:
    @taskq_sdk.job(priority=7)
    def urgent(x: int) -> int:
        return x

    assert with_default_priority(urgent, {}) == {"_priority": 7}
    assert with_default_priority(urgent, {"_priority": 1}) == {"_priority": 1}
    assert with_default_priority("urgent", {}) == {}
    with pytest.raises(ConfigurationError, match="priority is an integer"):
        taskq_sdk.job(priority=500)(lambda x: x)

    async def story() -> None:
        async with AsyncClient(settings=settings) as aclient:
            job = await aclient.submit("double", 4, _priority=3)
            assert await job.result(timeout=30) == 8
            batch = await aclient.map("double", [1, 2, 3], _priority=3)
            assert await batch.results(timeout=30) == [2, 4, 6]

    import asyncio

    asyncio.run(story())
