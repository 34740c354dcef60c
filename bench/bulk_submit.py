"""Bulk submit: 10,000 jobs via ``client.map`` vs arq's one-by-one ``enqueue_job``, same server, same run.

    python -m bench.bulk_submit            # --jobs 10000 --rounds 3

Both sides write the same no-op job with the SDK's msgpack codec to an embedded server with no
worker attached (submission only). The SDK rows: ``Client.map`` (the blocking client, as in a
notebook), ``AsyncClient.map``, and a keyed (idempotent) ``map`` whose ids are content-hashed. The
baseline: ``arq.connections.create_pool`` + ``await pool.enqueue_job(...)`` for each job, the
way arq documents it. Medians of ``--rounds`` runs; the server is flushed before each.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from arq.connections import RedisSettings, create_pool

from taskq_sdk import AsyncClient, Client
from taskq_sdk.serialization import Codec

from ._harness import flush, median, server, table


async def arq_one_by_one(url: str, n: int) -> float:
    codec = Codec()
    pool = await create_pool(
        RedisSettings.from_dsn(url), job_serializer=codec.serializer, job_deserializer=codec.deserializer
    )
    try:
        start = time.perf_counter()
        for i in range(n):
            await pool.enqueue_job("noop", i)
        return time.perf_counter() - start
    finally:
        await pool.aclose()


async def async_map(url: str, n: int, key: str | None) -> float:
    async with AsyncClient(url) as client:
        await client.ping()
        start = time.perf_counter()
        batch = await client.map("noop", range(n), key=key)
        took = time.perf_counter() - start
        assert batch.size == n
        return took


def sync_map(url: str, n: int) -> float:
    with Client(url) as client:
        client.ping()
        start = time.perf_counter()
        batch = client.map("noop", range(n))
        took = time.perf_counter() - start
        assert batch.size == n
        return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n = args.jobs
    runs: dict[str, list[float]] = {"arq": [], "sync": [], "async": [], "keyed": []}
    with server() as srv:
        url = srv.url
        for r in range(args.rounds):
            flush(url)
            runs["arq"].append(asyncio.run(arq_one_by_one(url, n)))
            flush(url)
            runs["sync"].append(sync_map(url, n))
            flush(url)
            runs["async"].append(asyncio.run(async_map(url, n, None)))
            flush(url)
            runs["keyed"].append(asyncio.run(async_map(url, n, f"bench-{r}")))
        version = srv.version
    base = median(runs["arq"])
    rows = []
    for label, name in (
        ("arq 0.28: `await pool.enqueue_job()` one by one", "arq"),
        ("taskq `Client.map` (bulk, blocking client)", "sync"),
        ("taskq `AsyncClient.map` (bulk)", "async"),
        ("taskq `AsyncClient.map(key=...)` (idempotent ids)", "keyed"),
    ):
        took = median(runs[name])
        rows.append([label, f"{took * 1000:,.0f} ms", f"{n / took:,.0f}", f"{base / took:.1f}x"])
    print(
        table(
            f"Bulk submit of {n:,} no-op jobs (median of {args.rounds}; embedded server {version}, no worker)",
            ["how", "time", "jobs/s", "vs arq"],
            rows,
        )
    )
    print(f"\ntarget: >= 10x arq -> {'met' if base / median(runs['sync']) >= 10 else 'MISSED'}")


if __name__ == "__main__":
    main()
