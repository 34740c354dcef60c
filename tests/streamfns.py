"""Generator jobs for tests/test_stream.py: each yields items the test reads while the job runs."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import redis

import taskq_sdk
from taskq_sdk.streaming import stream_item


@taskq_sdk.job
def count_up(n: int, step: float = 0.0) -> Iterator[int]:
    """Yields 0..n-1 (sync generator), ``step`` seconds apart, reporting progress."""
    for i in range(n):
        if step:
            time.sleep(step)
        taskq_sdk.report_progress(i + 1, n)
        yield i


@taskq_sdk.job
async def count_up_async(n: int, step: float = 0.0) -> AsyncIterator[dict[str, int]]:
    """Yields {"i": 0..n-1} (async generator), ``step`` seconds apart."""
    for i in range(n):
        if step:
            await asyncio.sleep(step)
        yield {"i": i}


@taskq_sdk.job
def gated(key: str, n: int, redis_url: str) -> Iterator[int]:
    """Yields 0..n-1, each after the test pushes a token to list ``key`` (the test paces the job)."""
    r = redis.Redis.from_url(redis_url)
    try:
        for i in range(n):
            r.blpop([key], timeout=30)
            yield i
    finally:
        r.close()


@taskq_sdk.job
def fail_after(n: int) -> Iterator[int]:
    """Yields 0..n-1, then raises ValueError."""
    yield from range(n)
    raise ValueError(f"broke after {n} items")


@taskq_sdk.job
def endless(step: float = 0.01) -> Iterator[int]:
    """Yields forever (until cancelled or out of bounds)."""
    i = 0
    while True:
        yield i
        i += 1
        if step:
            time.sleep(step)


@taskq_sdk.job
def plain(x: int) -> int:
    """Returns a value: not a stream."""
    return x + 1


@taskq_sdk.job
async def streams_pid(ctx: dict[str, Any], key: str, n: int, step: float) -> AsyncIterator[int]:
    """Records ``<pid>:<attempt>`` in list ``key`` (so a test can SIGKILL the worker running it), then
    yields 0..n-1, ``step`` seconds apart."""
    await ctx["redis"].rpush(key, f"{os.getpid()}:{ctx['job_try']}")
    for i in range(n):
        yield i
        await asyncio.sleep(step)


@taskq_sdk.job
def trains(epochs: int) -> str:
    """Streams one item per epoch with stream_item() (from a worker thread) and returns its own result."""
    for epoch in range(epochs):
        stream_item({"epoch": epoch, "loss": 1.0 / (epoch + 1)})
    return f"model after {epochs} epochs"


@taskq_sdk.job
async def trains_async(epochs: int) -> str:
    """stream_item() from async code on the worker's loop."""
    for epoch in range(epochs):
        stream_item(epoch)
        await asyncio.sleep(0)
    return "done"


@taskq_sdk.job(isolate=True)
def isolated_stream(n: int) -> Iterator[int]:
    """A generator marked isolate=True: refused with a clear error."""
    yield from range(n)


@taskq_sdk.job
async def streams_tagged(ctx: dict[str, Any], key: str, n: int, step: float) -> AsyncIterator[dict[str, int]]:
    """Like streams_pid, but each item names the process and attempt that produced it."""
    await ctx["redis"].rpush(key, f"{os.getpid()}:{ctx['job_try']}")
    for i in range(n):
        yield {"pid": os.getpid(), "attempt": ctx["job_try"], "i": i}
        await asyncio.sleep(step)


@taskq_sdk.job
async def labelled(n: int, step: float) -> AsyncIterator[str]:
    """Yields 'lbl-0000'.. 'lbl-<n-1>', ``step`` seconds apart (a proxy can spot one item's write)."""
    for i in range(n):
        yield f"lbl-{i:04d}"
        await asyncio.sleep(step)
