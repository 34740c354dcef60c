"""Job functions for ``bench/stream.py``: generators that stream, and the plain job they are compared with."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import taskq_sdk


@taskq_sdk.job
async def stamped(n: int, gap: float) -> AsyncIterator[float]:
    """Yields the wall-clock time of each yield, ``gap`` seconds apart (item latency)."""
    for _ in range(n):
        await asyncio.sleep(gap)
        yield time.time()


@taskq_sdk.job
def numbers(n: int) -> Iterator[int]:
    """Yields 0..n-1 as fast as it can (a sync generator: items cross from its thread to the worker's loop)."""
    yield from range(n)


@taskq_sdk.job
async def numbers_async(n: int) -> AsyncIterator[int]:
    """Yields 0..n-1 as fast as it can, on the worker's loop."""
    for i in range(n):
        yield i


@taskq_sdk.job
def numbers_list(n: int) -> list[int]:
    """Returns 0..n-1 as one result (the plain job the streams are compared with)."""
    return list(range(n))
