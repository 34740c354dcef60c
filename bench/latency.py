"""Submit -> result latency of a trivial job with a warm idle worker: taskq vs raw arq, same server.

    python -m bench.latency            # --n 200 --arq-default-n 20

taskq through Client and AsyncClient; arq with its defaults (0.5 s worker and result polling) and
with both polls at 5 ms (which polls Redis 200 times a second while idle).
"""

from __future__ import annotations

import argparse
import asyncio
import time

from arq.connections import RedisSettings, create_pool

from taskq_sdk import AsyncClient, Client
from taskq_sdk.serialization import Codec

from ._harness import arq_worker, flush, percentile, server, table, taskq_worker


def _row(name: str, samples: list[float], base: float | None) -> list[str]:
    p50, p95 = percentile(samples, 0.5) * 1000, percentile(samples, 0.95) * 1000
    ratio = f"{base / p50:.1f}x" if base else "1.0x"
    return [name, str(len(samples)), f"{p50:.2f}", f"{p95:.2f}", ratio]


def taskq_sync(url: str, n: int) -> list[float]:
    with Client(url) as client:
        for _ in range(20):
            client.submit("noop").result(timeout=10)
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            client.submit("noop").result(timeout=10)
            out.append(time.perf_counter() - t0)
        return out


def taskq_async(url: str, n: int) -> list[float]:
    async def main() -> list[float]:
        async with AsyncClient(url) as client:
            for _ in range(20):
                await (await client.submit("noop")).result(timeout=10)
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await (await client.submit("noop")).result(timeout=10)
                out.append(time.perf_counter() - t0)
            return out

    return asyncio.run(main())


def raw_arq(url: str, n: int, poll: float) -> list[float]:
    codec = Codec()

    async def main() -> list[float]:
        pool = await create_pool(
            RedisSettings.from_dsn(url), job_serializer=codec.serializer, job_deserializer=codec.deserializer
        )
        out = []
        for i in range(n + 3):
            t0 = time.perf_counter()
            job = await pool.enqueue_job("arq_noop")
            assert job is not None
            await job.result(timeout=30, poll_delay=poll)
            if i >= 3:
                out.append(time.perf_counter() - t0)
        await pool.aclose()
        return out

    return asyncio.run(main())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--arq-default-n", type=int, default=20, help="arq defaults take ~0.5-1 s per job")
    args = p.parse_args()
    rows = []
    with server() as srv:
        url = srv.url
        flush(url)
        with taskq_worker(url, "bench.noop_jobs"):
            sync = taskq_sync(url, args.n)
            asy = taskq_async(url, args.n)
        flush(url)
        with arq_worker(url, "bench.arq_baseline.Default"):
            default = raw_arq(url, args.arq_default_n, 0.5)
        flush(url)
        with arq_worker(url, "bench.arq_baseline.Fast"):
            fast = raw_arq(url, args.n, 0.005)
    base = percentile(default, 0.5) * 1000
    rows.append(_row("arq 0.28, defaults (0.5 s polls)", default, None))
    rows.append(_row("arq, worker + result polling at 5 ms", fast, base))
    rows.append(_row("taskq Client (sync facade)", sync, base))
    rows.append(_row("taskq AsyncClient", asy, base))
    print(
        table(
            "Latency: submit -> result, trivial job, warm idle worker",
            ["system", "n", "p50 ms", "p95 ms", "p50 vs arq default"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
