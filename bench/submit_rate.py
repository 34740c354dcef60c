"""One-by-one and concurrent submit rates: taskq's ``AsyncClient``/``Client`` vs arq's ``enqueue_job``, same run.

    python -m bench.submit_rate            # --n 2000 --concurrent 100 --rounds 3

What a notebook user feels in a ``for`` loop: one ``await client.submit("noop")`` after another
(and ``client.submit`` on the blocking client), next to ``await pool.enqueue_job("noop")`` with
arq's own pool and the same msgpack codec. "Concurrent" submits ``--concurrent`` jobs at a time
with ``asyncio.gather`` (and, for ``Client``, from that many threads sharing one client), repeated
until ``--n`` jobs are written. No worker serves the queue
(submission only, as bench.bulk_submit; ``--worker`` adds a warm idle taskq worker, which then
also drains what is submitted). Rounds are interleaved (arq, taskq, arq, ...); the server is flushed before each run;
figures are medians of ``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import time
from collections.abc import Callable

from arq.connections import RedisSettings, create_pool

from taskq_sdk import AsyncClient, Client
from taskq_sdk.serialization import Codec

from ._harness import flush, median, server, table, taskq_worker


async def arq_rate(url: str, n: int, concurrent: int) -> float:
    codec = Codec()
    pool = await create_pool(
        RedisSettings.from_dsn(url), job_serializer=codec.serializer, job_deserializer=codec.deserializer
    )
    try:
        await pool.ping()
        start = time.perf_counter()
        if concurrent <= 1:
            for _ in range(n):
                await pool.enqueue_job("noop")
        else:
            for _ in range(0, n, concurrent):
                await asyncio.gather(*(pool.enqueue_job("noop") for _ in range(concurrent)))
        return n / (time.perf_counter() - start)
    finally:
        await pool.aclose()


async def async_rate(url: str, n: int, concurrent: int) -> float:
    async with AsyncClient(url) as client:
        await client.submit("noop")  # warm: connection, registry cache, reply channel
        start = time.perf_counter()
        if concurrent <= 1:
            for _ in range(n):
                await client.submit("noop")
        else:
            for _ in range(0, n, concurrent):
                await asyncio.gather(*(client.submit("noop") for _ in range(concurrent)))
        return n / (time.perf_counter() - start)


def sync_rate(url: str, n: int, threads: int) -> float:
    with Client(url) as client:
        client.submit("noop")
        start = time.perf_counter()
        if threads <= 1:
            for _ in range(n):
                client.submit("noop")
        else:
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda _: client.submit("noop"), range(n)))
        return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--concurrent", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worker", action="store_true", help="with a warm idle taskq worker serving the queue")
    args = ap.parse_args()
    n, c = args.n, args.concurrent
    cases: dict[str, Callable[[str], float]] = {
        "arq one-by-one": lambda u: asyncio.run(arq_rate(u, n, 1)),
        "arq gather": lambda u: asyncio.run(arq_rate(u, n, c)),
        "taskq AsyncClient one-by-one": lambda u: asyncio.run(async_rate(u, n, 1)),
        "taskq AsyncClient gather": lambda u: asyncio.run(async_rate(u, n, c)),
        "taskq Client one-by-one": lambda u: sync_rate(u, n, 1),
        "taskq Client threads": lambda u: sync_rate(u, n, c),
    }
    runs: dict[str, list[float]] = {k: [] for k in cases}
    with server() as srv:
        url = srv.url
        worker = taskq_worker(url, "bench.noop_jobs") if args.worker else contextlib.nullcontext()
        with worker:
            for _ in range(args.rounds):
                for name, case in cases.items():
                    flush(url)
                    runs[name].append(case(url))
        version = srv.version
    base = median(runs["arq one-by-one"])
    rows = []
    for name, rates in runs.items():
        rate = median(rates)
        rows.append([name, f"{rate:,.0f}", f"{min(rates):,.0f}-{max(rates):,.0f}", f"{rate / base:.2f}x"])
        print(f"FIGURE submit_rate_{name.replace(' ', '_').replace('-', '_').lower()}={rate:.0f}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        table(
            f"Submit rate, {n:,} no-op jobs, concurrency {c} (median of {args.rounds}; server {version}; "
            f"{'one taskq worker' if args.worker else 'no worker'}; load {load})",
            ["how", "jobs/s", "range", "vs arq one-by-one"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
