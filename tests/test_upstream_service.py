"""TaskQueueService (the seed's id-based API) with jobs as arguments and with the result cache, real worker.

The service is async only (the seed's API): the story runs on one event loop per test. Runs are counted
in Redis keys, so "served from the cache" is a count that did not move, not a timing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import redis

from taskq_sdk import JobFailed, JobNotFound
from taskq_sdk.config import Settings
from taskq_sdk.queue_service import TaskQueueService

from .conftest import JOBS


@pytest.fixture
def cache_worker(start_worker: Any) -> Any:
    return start_worker(modules=(JOBS, "tests.cachefns"))


def test_a_job_takes_another_jobs_result_by_id(settings: Settings, cache_worker: Any) -> None:
    async def story() -> None:
        async with TaskQueueService(settings=settings) as queue:
            slow_id = await queue.enqueue("slow", 10, step=0.1)
            add_id = await queue.enqueue("add", 1, 2)
            both_id = await queue.enqueue("add", await queue.result_of(slow_id), await queue.result_of(add_id))
            status = await queue.get_status(both_id)
            assert status["status"] == "waiting" and status["info"]["parents"] == [slow_id, add_id]
            assert await queue.wait(both_id, timeout=30) == 13
            done = await queue.get_status(both_id)
            assert done["status"] == "complete" and done["result"] == 13
            assert (await queue.get_status(slow_id))["info"]["children"] == [both_id]

            bad_id = await queue.enqueue("boom", 1)
            after_bad = await queue.enqueue("add", await queue.result_of(bad_id), 1)
            with pytest.raises(JobFailed) as failed:
                await queue.wait(after_bad, timeout=30)
            assert failed.value.remote_type == "UpstreamFailed" and bad_id in failed.value.remote_message
            gone = await queue.get_status(after_bad)
            assert gone["status"] == "failed" and bad_id in gone["error"]
            with pytest.raises(JobNotFound):
                await queue.result_of("no-such-job")

    asyncio.run(story())


def test_identical_enqueues_with_the_cache_share_one_run(
    settings: Settings, cache_worker: Any, sync_redis: redis.Redis
) -> None:
    """By name (the service's way) the cache is asked for per call: ``_cache=True`` or a timedelta."""

    async def story() -> None:
        async with TaskQueueService(settings=settings) as queue:
            first = await queue.enqueue("uncached_count", "svc:runs", 5, _cache=True)
            assert await queue.wait(first, timeout=10) == 5
            again = await queue.enqueue("uncached_count", "svc:runs", 5, _cache=timedelta(hours=1))
            assert again == first and (await queue.get_status(again))["status"] == "complete"
            other = await queue.enqueue("uncached_count", "svc:runs", 6, _cache=True)  # other inputs: a run
            assert other != first and await queue.wait(other, timeout=10) == 6
            # a job that takes the cached job's result
            child = await queue.enqueue("add", await queue.result_of(again), 1)
            assert await queue.wait(child, timeout=10) == 6

    asyncio.run(story())
    assert int(sync_redis.get("svc:runs") or 0) == 2
