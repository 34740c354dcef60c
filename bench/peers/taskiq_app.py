"""taskiq (taskiq-redis stream broker and result backend): a no-op task, its worker command, a client, a drain counter.

Worker: ``taskiq worker taskiq_app:broker --workers 1 --max-async-tasks CONCURRENCY``; it waits for
messages with a blocking XREADGROUP, so the latency knob is the client's ``wait_result``, which
checks the result every ``check_interval`` (0.2 s default).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from _common import CONCURRENCY, SETTING, URL
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

PACKAGE = "taskiq"
SETTINGS = {
    "defaults": "RedisStreamBroker + RedisAsyncResultBackend, wait_result() checks every 0.2 s",
    "tuned": "wait_result(check_interval=0.005)",
}
DRAIN_SETTINGS = {"defaults"}  # check_interval is client-side only
CHECK = {"defaults": 0.2, "tuned": 0.005}[SETTING]
STREAM = "taskiq"

broker = RedisStreamBroker(url=URL, queue_name=STREAM).with_result_backend(RedisAsyncResultBackend(redis_url=URL))


@broker.task(task_name="noop")
async def noop() -> int:
    return 1


def worker_cmd() -> tuple[list[str], dict[str, str]]:
    cmd = [sys.executable, "-m", "taskiq", "worker", "taskiq_app:broker", "--workers", "1"]
    return [*cmd, "--max-async-tasks", str(CONCURRENCY), "--log-level", "WARNING"], {}


@asynccontextmanager
async def client() -> AsyncIterator[Callable[[float], Awaitable[None]]]:
    await broker.startup()  # also creates the consumer group the worker reads from

    async def one(timeout: float) -> None:
        task = await noop.kiq()
        result = await task.wait_result(check_interval=CHECK, timeout=timeout)
        if result.is_err or result.return_value != 1:
            raise RuntimeError(f"unexpected result {result!r}")

    try:
        yield one
    finally:
        await broker.shutdown()


@asynccontextmanager
async def submitter() -> AsyncIterator[tuple[Callable[[], Awaitable[Any]], bool]]:
    """One enqueue as the peer's docs write it, and whether it can be gathered (asyncio client)."""
    await broker.startup()
    try:
        yield noop.kiq, True
    finally:
        await broker.shutdown()


async def enqueue(n: int) -> None:
    # the consumer group starts at "$", so it must exist before the jobs are added
    await broker.startup()
    sem = asyncio.Semaphore(64)

    async def kick() -> None:
        async with sem:
            await noop.kiq()

    try:
        await asyncio.gather(*(kick() for _ in range(n)))
    finally:
        await broker.shutdown()


def done(r: Any, n: int) -> int:
    # messages are acked once their result is saved (taskiq's default ack type): done = not unread, not pending
    for group in r.xinfo_groups(STREAM):
        if group["name"] in (b"taskiq", "taskiq"):
            lag = group.get("lag")
            unread = n - int(group["entries-read"] or 0) if lag is None else int(lag)
            return n - unread - int(group["pending"])
    return 0
