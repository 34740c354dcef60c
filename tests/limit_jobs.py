"""Job functions for tests/test_limits.py and bench/limits.py: each records when it ran, in the server."""

from __future__ import annotations

import asyncio
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
