"""Scaling: drain rate with 1 and 2 worker processes (2 cores here), and a worker added mid-batch.

    python -m bench.scaling             # --n 20000

Workers find each other's work through the shared queue (arq's model): adding a worker while a
batch drains raises the rate without any coordination.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from contextlib import ExitStack

import redis

from ._harness import flush, server, table, taskq_worker
from .drain import enqueue_taskq, wait_drained


def drain_with(url: str, n: int, workers: int) -> float:
    flush(url)
    asyncio.run(enqueue_taskq(url, n))
    with ExitStack() as stack:
        for _ in range(workers):
            stack.enter_context(taskq_worker(url, "bench.noop_jobs"))
        return wait_drained(url, n, timeout=600)


def added_mid_batch(url: str, n: int) -> tuple[float, float]:
    """Rate with one worker for the first ~40 %, then with a second one added."""
    flush(url)
    asyncio.run(enqueue_taskq(url, n))
    r = redis.Redis.from_url(url)

    def done() -> int:
        return n - int(r.zcard("arq:queue"))

    with ExitStack() as stack:
        stack.enter_context(taskq_worker(url, "bench.noop_jobs"))
        t0, d0 = time.monotonic(), done()
        while done() < 0.4 * n:
            time.sleep(0.05)
        t1, d1 = time.monotonic(), done()
        stack.enter_context(taskq_worker(url, "bench.noop_jobs"))
        t2, d2 = time.monotonic(), done()
        while r.zcard("arq:queue"):
            time.sleep(0.05)
        t3 = time.monotonic()
    r.close()
    return (d1 - d0) / (t1 - t0), (n - d2) / (t3 - t2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=20000)
    args = p.parse_args()
    with server() as srv:
        one = drain_with(srv.url, args.n, 1)
        two = drain_with(srv.url, args.n, 2)
        before, after = added_mid_batch(srv.url, args.n)
    rows = [
        ["1 worker process", f"{one:,.0f}", "1.00x"],
        ["2 worker processes", f"{two:,.0f}", f"{two / one:.2f}x"],
        ["1 worker, first 40 % of a batch", f"{before:,.0f}", f"{before / one:.2f}x"],
        ["+1 worker added while the batch runs", f"{after:,.0f}", f"{after / one:.2f}x"],
    ]
    print(table(f"Scaling: {args.n:,} queued no-op jobs, max_jobs=10 per worker", ["workers", "jobs/s", "vs 1"], rows))


if __name__ == "__main__":
    main()
