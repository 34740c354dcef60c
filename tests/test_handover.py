"""Jobs handed straight to an idle worker by the submit itself: faster, never lost, never over max_jobs."""

from __future__ import annotations

import os
import signal
from typing import Any

import redis

from taskq_sdk import Client, JobStatus
from taskq_sdk._backend import layout
from taskq_sdk.config import Settings

from .conftest import async_wait_until, wait_until

READY = layout.ready_key("default")


def _entries(r: redis.Redis) -> list[str]:
    return [m.decode() for m in r.zrange(READY, 0, -1)]


def test_idle_worker_takes_the_job_from_the_submit(settings: Settings, worker: Any, sync_redis: redis.Redis) -> None:
    engine = worker.engine
    wait_until(lambda: _entries(sync_redis), what="the idle worker offers itself")
    (entry,) = _entries(sync_redis)
    assert entry.endswith("|" + engine.worker_id) and entry.startswith(str(int(settings.claim_ttl * 1000)) + "|")
    with Client(settings=settings) as client:
        # one at a time, as in a notebook: the worker offers itself again in the round trip that
        # writes each result, so every next submit finds it
        for i in range(20):
            job = client.submit("add", i, 1)
            assert job.result(timeout=10) == i + 1
            assert job.info().attempts == 1
        assert engine.jobs_handed == 20
        # many at once: one is handed over, the rest wait in the queue as before, in order
        jobs = [client.submit("add", i, 1) for i in range(20)]
        assert [j.result(timeout=10) for j in jobs] == [i + 1 for i in range(20)]
        assert [j.info().attempts for j in jobs] == [1] * 20
    wait_until(lambda: _entries(sync_redis), what="the worker offers itself again once idle")


def test_entry_of_a_gone_worker_never_loses_a_job(
    settings: Settings, start_worker: Any, sync_redis: redis.Redis
) -> None:
    # an entry whose worker listens nowhere (died without cleaning up): the submit must see that
    sync_redis.zadd(READY, {"3000|1|ghost:1:dead": 9_999_999_999_999})
    with Client(settings=settings) as client:
        job = client.submit("add", 2, 3)
        assert "3000|1|ghost:1:dead" not in _entries(sync_redis), "the dead entry was dropped"
        assert job.status() is JobStatus.queued
        start_worker()
        assert job.result(timeout=10) == 5
        assert job.info().attempts == 1


def test_handed_over_jobs_respect_max_jobs(settings: Settings, start_worker: Any, sync_redis: redis.Redis) -> None:
    w = start_worker(max_jobs=2)
    wait_until(lambda: _entries(sync_redis), what="the idle worker offers itself")
    with Client(settings=settings) as client:
        jobs = [client.submit("concurrency_probe", "probe", 0.2) for _ in range(12)]
        for j in jobs:
            j.result(timeout=30)
    assert int(sync_redis.get("probe:max") or 0) <= 2
    assert w.engine.jobs_handed >= 1


def test_cancel_right_after_a_hand_over(settings: Settings, worker: Any, sync_redis: redis.Redis) -> None:
    wait_until(lambda: _entries(sync_redis), what="the idle worker offers itself")
    with Client(settings=settings) as client:
        job = client.submit("sleeper", 30)
        assert job.cancel()
        assert job.exception(timeout=10) is not None
        assert job.status() is JobStatus.cancelled
        assert worker.engine.jobs_handed == 1


def test_a_stopping_worker_leaves_the_ready_set(
    settings: Settings, start_worker_process: Any, sync_redis: redis.Redis
) -> None:
    w = start_worker_process()
    wait_until(
        lambda: any(e.endswith(f":{w.pid}:" + e.rsplit(":", 1)[-1]) for e in _entries(sync_redis)),
        what="the worker process offers itself",
    )
    os.kill(w.pid, signal.SIGTERM)
    assert w.proc.wait(20) == 0
    assert not [e for e in _entries(sync_redis) if f":{w.pid}:" in e]
    with Client(settings=settings) as client:
        job = client.submit("add", 1, 1)
        assert job.status() is JobStatus.queued, "nothing was handed to the stopped worker"


def test_waits_follow_the_clients_reply_channel(settings: Settings, worker: Any, sync_redis: redis.Redis) -> None:
    """A client's own jobs report to its one reply channel: no subscription per job on the server."""
    import asyncio

    from taskq_sdk import AsyncClient

    def numsub(channel: str) -> int:
        return int(dict(sync_redis.pubsub_numsub(channel))[channel.encode()])

    async def main() -> None:
        async with AsyncClient(settings=settings) as client:
            job = await client.submit("sleeper", 0.3)
            waiting = asyncio.ensure_future(job.result(timeout=10))
            reply = layout.reply_channel("default", client.core.client_id)
            await async_wait_until(job.status, what="the job's state")  # the wait is under way meanwhile
            assert not waiting.done()
            assert numsub(layout.job_channel(job.id)) == 0
            assert numsub(reply) == 1
            assert await waiting == 0.3
            # a wait that starts after the job finished (its early events no longer kept) reads the result
            late = await client.submit("add", 1, 2)
            await async_wait_until(lambda: sync_redis.exists(layout.result_key(late.id)), what="late job done")
            (await client.core.events()).release(late._presub)
            assert await late.result(timeout=10) == 3
            # someone else's wait (another client) uses the job's own channel
            async with AsyncClient(settings=settings) as other:
                slow = await client.submit("sleeper", 0.3)
                assert await (await other.job(slow.id)).result(timeout=10) == 0.3

    asyncio.run(main())


def test_a_reply_channel_only_speaks_for_its_own_tenant(settings: Settings) -> None:
    import asyncio

    from taskq_sdk._backend.events import EventHub

    async def main() -> None:
        hub = EventHub(settings)
        event = layout.REPLY_MAGIC + b"acme:j1\0" + b'{"e": "done"}'
        with hub.local(layout.job_channel("acme:j1")) as sub:
            hub._dispatch({"type": "message", "channel": b"taskq:t:other:rc:c1", "data": event})
            assert sub.drain() == [], "another tenant's reply channel cannot feed acme's waiters"
            hub._dispatch({"type": "message", "channel": b"taskq:t:acme:rc:c1", "data": event})
            assert sub.drain() == [{"e": "done"}]
        await hub.close()

    asyncio.run(main())
