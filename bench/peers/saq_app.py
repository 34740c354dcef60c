"""saq on the harness's server: a no-op job, its worker settings, a client, and a drain counter.

Worker: ``python -m saq saq_app.settings`` (one process, ``concurrency`` async jobs); it waits for
jobs with a blocking BLMOVE (``dequeue_timeout=0``, its default), so only the client's result
polling is a latency knob: ``Queue.apply`` polls the job every ``poll_interval`` (0.5 s default) and,
as written in saq 0.26, sleeps one more interval after the last result arrives, so it takes at least
two intervals. (``Job.refresh(until_complete=...)`` listens on pub/sub instead, but can miss a
completion that lands between its read and its subscription, so it is not used here.)
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis
from _common import CONCURRENCY, SETTING, URL
from saq import Queue

PACKAGE = "saq"
SETTINGS = {
    "defaults": "Queue.apply: polls every 0.5 s (and sleeps once more after the result); BLMOVE dequeue",
    "tuned": "Queue.apply(poll_interval=0.005)",
}
DRAIN_SETTINGS = {"defaults"}  # poll_interval is client-side only
POLL = {"defaults": 0.5, "tuned": 0.005}[SETTING]


async def noop(ctx: dict[str, Any]) -> int:
    return 1


queue = Queue.from_url(URL)
settings = {"queue": queue, "functions": [noop], "concurrency": CONCURRENCY}


def worker_cmd() -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-m", "saq", "saq_app.settings", "--quiet"], {}


@asynccontextmanager
async def client() -> AsyncIterator[Callable[[float], Awaitable[None]]]:
    await queue.connect()

    async def one(timeout: float) -> None:
        result = await queue.apply("noop", timeout=timeout, poll_interval=POLL)
        if result != 1:
            raise RuntimeError(f"unexpected result {result!r}")

    try:
        yield one
    finally:
        await queue.disconnect()


@asynccontextmanager
async def submitter() -> AsyncIterator[tuple[Callable[[], Awaitable[Any]], bool]]:
    """One enqueue as the peer's docs write it, and whether it can be gathered (asyncio client)."""
    await queue.connect()
    try:
        yield (lambda: queue.enqueue("noop")), True
    finally:
        await queue.disconnect()


async def enqueue(n: int) -> None:
    await queue.connect()
    try:
        jobs = await asyncio.gather(*(queue.enqueue("noop") for _ in range(n)))
        if not all(jobs):
            raise RuntimeError("saq refused some jobs")
    finally:
        await queue.disconnect()


def ready(r: redis.Redis) -> bool:
    # the worker's first sweep runs as it starts and aborts jobs it finds active but not yet marked so;
    # its lock key says that sweep is over
    return bool(r.exists("saq:default:sweep"))


def verify(r: Any, n: int) -> str:
    """How many of the drained jobs did not complete (the start-up sweep can abort some of a backlog)."""
    statuses: dict[str, int] = {}
    keys = list(r.scan_iter(match="saq:job:default:*", count=10000))
    for i in range(0, len(keys), 2000):
        for blob in r.mget(keys[i : i + 2000]):
            status = json.loads(blob).get("status", "new") if blob else "missing"
            statuses[status] = statuses.get(status, 0) + 1
    bad = {k: v for k, v in statuses.items() if k != "complete"}
    return ", ".join(f"{v} {k}" for k, v in sorted(bad.items()))


def done(r: Any, n: int) -> int:
    # a job stays in the queue's "incomplete" sorted set until it finishes
    return n - int(r.zcard("saq:default:incomplete"))
