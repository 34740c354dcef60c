"""Load and crash tests (RELIABILITY.md, Load): nothing lost, nothing duplicated, every result right.

The big ones are marked ``heavy`` (run with ``python -m pytest -m heavy``); key expiry runs always.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
import redis

from taskq_sdk import Client
from taskq_sdk.config import Settings

from .conftest import figure, wait_until


def bulk_submit(client: Client, n: int, seconds: float = 0.0) -> list[str]:
    core = client.async_client.core

    async def go() -> list[str]:
        rows = [core.prepare("mark", (i, seconds), {}) for i in range(n)]
        await core.call(lambda s: s.submit(rows, wake_queue="default"))
        return [r.job_id for r in rows]

    return client.portal.call(go)


def collect(r: redis.Redis, ids: list[str], timeout: float) -> list[Any]:
    """Every job's result, read straight from the result envelopes once all are there."""
    from taskq_sdk.serialization import Codec

    codec = Codec()
    keys = [f"arq:result:{i}" for i in ids]

    def present() -> int:
        return sum(int(r.exists(*keys[s : s + 1000])) for s in range(0, len(keys), 1000))

    # every job has run once by now, but a re-run of one caught by a kill may still be finishing
    wait_until(lambda: present() == len(keys), timeout=timeout, interval=0.1, what="every result written")
    out: list[Any] = []
    for start in range(0, len(ids), 1000):
        for blob in r.mget([f"arq:result:{i}" for i in ids[start : start + 1000]]):
            out.append(codec.deserializer(blob)["r"] if blob else None)
    return out


@pytest.mark.heavy
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_10k_jobs_lost_0_duplicated_0(
    settings: Settings, start_worker_process: Any, sync_redis: redis.Redis, workers: int
) -> None:
    for _ in range(workers):
        start_worker_process()
    n = 10_000
    with Client(settings=settings) as client:
        t0 = time.monotonic()
        ids = bulk_submit(client, n)
        wait_until(lambda: sync_redis.hlen("load:runs") >= n, timeout=300, interval=0.05, what="all jobs ran")
        took = time.monotonic() - t0
        results = collect(sync_redis, ids, timeout=60)
    runs = {int(k): int(v) for k, v in sync_redis.hgetall("load:runs").items()}
    lost = n - len(runs)
    duplicated = sum(1 for v in runs.values() if v > 1)
    wrong = sum(1 for i, r in enumerate(results) if r != 2 * i)
    figure(f"load_10k_{workers}w_jobs_per_s", round(n / took))
    figure(f"load_10k_{workers}w_lost", lost)
    figure(f"load_10k_{workers}w_duplicated", duplicated)
    assert (lost, duplicated, wrong) == (0, 0, 0)


@pytest.mark.heavy
@pytest.mark.chaos
def test_2000_jobs_worker_sigkilled_at_25_50_75_percent(
    settings: Settings, start_worker_process: Any, sync_redis: redis.Redis
) -> None:
    n = 2000
    worker = start_worker_process()
    with Client(settings=settings) as client:
        ids = bulk_submit(client, n, seconds=0.01)
        for fraction in (0.25, 0.5, 0.75):
            wait_until(
                lambda f=fraction: sync_redis.hlen("load:runs") >= n * f, timeout=120, what=f"{fraction:.0%} done"
            )
            holder = sync_redis.keys("arq:in-progress:*")
            assert holder, "the killed worker provably holds jobs"
            os.kill(worker.pid, signal.SIGKILL)
            worker.proc.wait(10)
            worker = start_worker_process()
        wait_until(lambda: sync_redis.hlen("load:runs") >= n, timeout=300, interval=0.05, what="all jobs ran")
        results = collect(sync_redis, ids, timeout=120)
    runs = {int(k): int(v) for k, v in sync_redis.hgetall("load:runs").items()}
    lost = n - sum(1 for i, r in enumerate(results) if r == 2 * i)
    rerun = sum(v - 1 for v in runs.values() if v > 1)
    figure("sigkill_2000_jobs_lost", lost)
    figure("sigkill_2000_jobs_rerun_after_kill", rerun)
    assert lost == 0
    assert rerun <= 3 * settings.max_jobs, "only jobs in flight at a kill run again (at-least-once)"


def test_every_key_expires(settings: Settings, start_worker: Any, sync_redis: redis.Redis) -> None:
    quick = settings.model_copy(update={"keep_result": 1, "tombstone_ttl": 1})
    start_worker(keep_result=1, tombstone_ttl=1)
    with Client(settings=quick, tenant="acme", workspace="w") as client:
        jobs = [client.submit("add", i, i) for i in range(30)] + [client.submit("boom", 1)]
        for j in jobs:
            j.exception(timeout=30)
        later = client.submit("add", 1, 1, _defer_by=600)
        later.cancel()

    def without_ttl() -> list[str]:
        return [k.decode() for k in sync_redis.scan_iter(count=1000) if sync_redis.pttl(k) == -1]

    # nothing is kept forever: queue/abort sets empty out (and vanish), everything else has a TTL
    assert without_ttl() == []
    wait_until(lambda: not sync_redis.keys("arq:result:*"), timeout=10, what="results expired")
    wait_until(lambda: not sync_redis.keys("taskq:t:acme:job:*"), timeout=10, what="tombstones expired")
    figure("keys_without_ttl_after_run", len(without_ttl()))
