"""Cached job functions for tests/test_cache.py: each run counts itself in a Redis key the test reads."""

from __future__ import annotations

import asyncio
from typing import Any

import taskq_sdk


@taskq_sdk.job(cache=True)
async def cached_double(ctx: dict[str, Any], key: str, x: Any) -> Any:
    await ctx["redis"].incr(key)
    return x * 2 if not isinstance(x, dict) else sorted(x.items())


@taskq_sdk.job(cache=True)
async def cached_slow(ctx: dict[str, Any], key: str, x: int, seconds: float) -> int:
    await ctx["redis"].incr(key)
    await asyncio.sleep(seconds)
    return x + 1


@taskq_sdk.job(cache=True)
async def cached_fail(ctx: dict[str, Any], key: str) -> None:
    await ctx["redis"].incr(key)
    raise ValueError("this run fails")


@taskq_sdk.job
async def uncached_count(ctx: dict[str, Any], key: str, x: int) -> int:
    await ctx["redis"].incr(key)
    return x


@taskq_sdk.job(cache=True)
async def cached_column_sum(ctx: dict[str, Any], key: str, frame: Any) -> float:
    await ctx["redis"].incr(key)
    return float(frame["v"].sum())


@taskq_sdk.job
async def row_length(ctx: dict[str, Any], text: str, key: str) -> Any:
    """One row of a fan-out: counts itself; 'bad' rows fail; 'dict' rows return a dict."""
    await ctx["redis"].incr(key)
    if text.startswith("bad"):
        raise ValueError(f"bad row {text}")
    return len(text)


@taskq_sdk.job
async def row_stats(ctx: dict[str, Any], text: str, key: str) -> dict[str, Any]:
    await ctx["redis"].incr(key)
    return {"n": len(text), "upper": text.upper()}


@taskq_sdk.job(cache=True)
async def cached_record_pid(ctx: dict[str, Any], key: str, seconds: float) -> int:
    """Records ``<pid>:<attempt>`` (so a test can kill the worker that provably runs it), then sleeps."""
    import os

    await ctx["redis"].rpush(key, f"{os.getpid()}:{ctx['job_try']}")
    await asyncio.sleep(seconds)
    return int(ctx["job_try"])
