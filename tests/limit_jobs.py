"""Job functions for tests/test_limits.py and bench/limits.py: each records when it ran, in the server."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import taskq_sdk

#: list of "<start> <end> <attempt>" (epoch seconds) per finished run, and the running counter
SPANS = "limtest:spans"
RUNNING = "limtest:running"


async def _span(ctx: dict[str, Any], tag: str, seconds: float) -> float:
    r = ctx["redis"]
    start = time.time()
    await r.incr(RUNNING)
    try:
        await asyncio.sleep(seconds)
    finally:
        await r.decr(RUNNING)
        await r.rpush(SPANS, f"{start} {time.time()} {ctx['job_try']} {tag}")
    return start


@taskq_sdk.job
async def limited_call(ctx: dict[str, Any], tag: str, seconds: float = 0.05) -> float:
    """No limit of its own: the tests give it one with _limit_key= (client.set_limit)."""
    return await _span(ctx, tag, seconds)


@taskq_sdk.job(rate_limit="10/s")
async def ten_per_second(ctx: dict[str, Any], tag: str) -> float:
    return await _span(ctx, tag, 0.0)


@taskq_sdk.job(max_concurrency=1)
async def one_at_a_time(ctx: dict[str, Any], tag: str, first_try_hangs: bool = False) -> float:
    """Hangs on its first attempt when asked (for a worker to be killed under it)."""
    if first_try_hangs and ctx["job_try"] == 1:
        return await _span(ctx, tag, 3600.0)
    return await _span(ctx, tag, 0.05)


@taskq_sdk.job(rate_limit="100/s")
async def hundred_per_second(ctx: dict[str, Any], tag: str) -> float:
    """The bench's job (bench/limits.py): records its start, does nothing else."""
    return await _span(ctx, tag, 0.0)


@taskq_sdk.job
async def fails_until_fixed(ctx: dict[str, Any], tag: str) -> str:
    """Fails (ValueError) until the key ``limtest:fixed`` exists; records each run like the others."""
    await _span(ctx, tag, 0.0)
    if not await ctx["redis"].exists("limtest:fixed"):
        raise ValueError(f"{tag}: not fixed yet")
    return tag


@taskq_sdk.job(max_concurrency=1, timeout=120)
async def one_ticker(ctx: dict[str, Any], path: str, first_ticks: int, later_ticks: int) -> str:
    """One line per tick in ``path`` (``<copy> <n> <time>``), checking its claim before each
    (report_progress, the fence); ``first_ticks`` on its first attempt, ``later_ticks`` on later ones.
    Only one copy of any of its jobs may tick at a time: ``max_concurrency=1``."""
    copy = f"{os.getpid()}:{ctx['job_try']}:{os.urandom(3).hex()}"
    ticks = first_ticks if ctx["job_try"] == 1 else later_ticks
    for n in range(ticks):
        taskq_sdk.report_progress(n / ticks)
        with open(path, "a") as fh:
            fh.write(f"{copy} {n} {time.time():.4f}\n")
        await asyncio.sleep(0.05)
    return copy


@taskq_sdk.job
async def limited_echo(tag: str) -> str:
    """No side effect (a tenant's ACL user may not write the keys above): returns its tag."""
    return tag
