"""Drain rate: N queued no-op jobs, one worker process; taskq (full wrapper) vs raw arq, same server.

    python -m bench.drain                 # --n 5000 50000 --max-jobs 10

Jobs are queued first, then one worker starts; the rate is N / (last finish - first start), read
from the result envelopes, so worker start-up is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import redis
from arq.connections import RedisSettings, create_pool

from taskq_sdk import AsyncClient
from taskq_sdk.serialization import Codec

from ._harness import arq_worker, flush, server, table, taskq_worker

codec = Codec()


async def enqueue_taskq(url: str, n: int) -> None:
    async with AsyncClient(url) as client:
        rows = [client.core.prepare("noop", (), {}) for _ in range(n)]
        await client.core.call(lambda s: s.submit(rows, wake_queue=None))


async def enqueue_arq(url: str, n: int) -> None:
    pool = await create_pool(RedisSettings.from_dsn(url), job_serializer=codec.serializer)
    sem = asyncio.Semaphore(64)

    async def one() -> None:
        async with sem:
            await pool.enqueue_job("arq_noop")

    await asyncio.gather(*(one() for _ in range(n)))
    await pool.aclose()


def wait_drained(url: str, n: int, timeout: float) -> float:
    r: Any = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout
    while r.zcard("arq:queue") and time.monotonic() < deadline:
        time.sleep(0.05)
    keys = [k for k in r.scan_iter(match="arq:result:*", count=5000)]
    starts: list[float] = []
    ends: list[float] = []
    for i in range(0, len(keys), 2000):
        for blob in r.mget(keys[i : i + 2000]):
            if blob:
                d = codec.deserializer(blob)
                starts.append(d["st"])
                ends.append(d["ft"])
    r.close()
    if len(ends) < n:
        raise RuntimeError(f"only {len(ends)} of {n} jobs finished")
    return float(n / ((max(ends) - min(starts)) / 1000.0))


def run(url: str, n: int, kind: str, max_jobs: int) -> float:
    flush(url)
    env = {"ARQ_MAX_JOBS": str(max_jobs)}
    if kind == "taskq":
        asyncio.run(enqueue_taskq(url, n))
        ctx = taskq_worker(url, "bench.noop_jobs", **env)
    else:
        asyncio.run(enqueue_arq(url, n))
        ctx = arq_worker(url, f"bench.arq_baseline.{kind}", **env)
    with ctx:
        return wait_drained(url, n, timeout=600)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, nargs="+", default=[5000, 50000])
    p.add_argument("--max-jobs", type=int, default=10)
    args = p.parse_args()
    rows = []
    with server() as srv:
        for n in args.n:
            rates = {kind: run(srv.url, n, kind, args.max_jobs) for kind in ("Default", "Fast", "taskq")}
            base = rates["Default"]
            rows.append([n, "arq 0.28, defaults", f"{rates['Default']:,.0f}", "1.00x", ""])
            rows.append([n, "arq, polling at 5 ms", f"{rates['Fast']:,.0f}", f"{rates['Fast'] / base:.2f}x", ""])
            rows.append(
                [
                    n,
                    "taskq worker (wrapper, progress, metrics, events)",
                    f"{rates['taskq']:,.0f}",
                    f"{rates['taskq'] / base:.2f}x",
                    f"{rates['taskq'] / rates['Fast']:.2f}x",
                ]
            )
    print(
        table(
            f"Drain: queued no-op jobs, one worker process, max_jobs={args.max_jobs}",
            ["jobs", "system", "jobs/s", "vs arq default", "vs arq 5 ms"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
