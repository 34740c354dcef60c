"""A job's ``_limit_key`` survives its re-runs: ``job.retry()``, ``batch.retry_failed()`` and
``taskq_sdk.pandas.rerun_failed`` submit jobs that count against the same limit.

Each re-run is checked in the server: the limit's ``passed`` counter grows by the re-run jobs, and a
1-permit key keeps them one at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis

from bench.limits import max_overlap
from taskq_sdk import AsyncClient, Client
from taskq_sdk.config import Settings
from taskq_sdk.errors import JobFailed
from taskq_sdk.local import WorkerProcess

from .limit_jobs import SPANS

LIMIT_JOBS = ("tests.limit_jobs",)


def _spans(r: redis.Redis, prefix: str) -> list[tuple[float, float]]:
    out = []
    for raw in r.lrange(SPANS, 0, -1):
        start, end, _attempt, tag = raw.decode().split()
        if tag.startswith(prefix):
            out.append((float(start), float(end)))
    return out


def test_job_retry_keeps_the_limit_key(
    settings: Settings, sync_redis: redis.Redis, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    start_worker_process(modules=LIMIT_JOBS)
    with Client(settings=settings) as client:
        client.set_limit("retry-key", concurrency=1)
        job = client.submit("fails_until_fixed", "j0", _limit_key="retry-key")
        with pytest.raises(JobFailed):
            job.result(timeout=30)
        assert client.metrics().limits["key:retry-key"]["passed"] == 1
        sync_redis.set("limtest:fixed", 1)
        again = job.retry()
        assert again.result(timeout=30) == "j0"
        assert client.metrics().limits["key:retry-key"]["passed"] == 2, "the retry counted against the key"
        plain = again.retry(_limit_key=None)
        assert plain.result(timeout=30) == "j0"
        assert client.metrics().limits["key:retry-key"]["passed"] == 2, "an explicit _limit_key=None drops it"


def test_batch_retry_failed_keeps_the_limit_key(
    settings: Settings, sync_redis: redis.Redis, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    """Six items fail on a 1-permit key; their re-run passes the same key six more times, one at a time."""
    start_worker_process(env={"ARQ_MAX_JOBS": "6"}, modules=LIMIT_JOBS)

    async def main() -> tuple[int, int, list[Any]]:
        async with AsyncClient(settings=settings) as client:
            await client.set_limit("batch-key", concurrency=1)
            batch = await client.map("fails_until_fixed", [f"b{i}" for i in range(6)], _limit_key="batch-key",
                                     chunk_size=2)  # fmt: skip
            await batch.wait(timeout=60)
            first = (await client.metrics()).limits["key:batch-key"]["passed"]
            sync_redis.set("limtest:fixed", 1)
            assert await batch.retry_failed() == 6
            values = await batch.results(timeout=60)
            second = (await client.metrics()).limits["key:batch-key"]["passed"]
            return first, second, values

    first, second, values = asyncio.run(main())
    assert values == [f"b{i}" for i in range(6)]
    assert (first, second) == (3, 6), "three chunk jobs, then three re-run jobs, each through the key"
    spans = _spans(sync_redis, "b")
    assert len(spans) == 12
    assert max_overlap(spans) == 1, "the re-runs held the key's single permit too"


def test_pandas_rerun_failed_keeps_the_limit_key(
    settings: Settings, sync_redis: redis.Redis, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    pd = pytest.importorskip("pandas")
    import taskq_sdk.pandas as tqpd

    start_worker_process(modules=LIMIT_JOBS)
    with Client(settings=settings) as client:
        client.set_limit("frame-key", concurrency=2)
        df = pd.DataFrame({"tag": [f"p{i}" for i in range(4)]})
        out = df["tag"].taskq.apply("fails_until_fixed", client=client, chunk_size=1, _limit_key="frame-key")
        assert (out["taskq_status"] == "failed").all()
        sync_redis.set("limtest:fixed", 1)
        fixed = tqpd.rerun_failed(out, client=client, progress=False)
        assert list(fixed["fails_until_fixed"]) == [f"p{i}" for i in range(4)]
        assert client.metrics().limits["key:frame-key"]["passed"] == 8
