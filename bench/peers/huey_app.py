"""huey on the harness's server: a no-op task, its consumer command, a client, and a drain counter.

Consumer: ``huey_consumer huey_app.huey -w CONCURRENCY -k thread``. RedisHuey dequeues with a
blocking BRPOP by default (``blocking=True``), so the consumer's polling delay does not apply;
the latency knob is the result wait: ``Result.get(blocking=True)`` polls with backoff (50 ms, x1.15)
unless ``RedisHuey(notify_result=True)``, which makes the worker push a notification to BLPOP on.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from _common import CONCURRENCY, SETTING, URL
from huey import RedisHuey  # type: ignore[import-untyped]

PACKAGE = "huey"
SETTINGS = {
    "defaults": "RedisHuey(), Result.get(blocking=True) polls 50 ms x1.15 backoff; BRPOP dequeue",
    "tuned": "RedisHuey(notify_result=True): result wait is a BLPOP",
}
DRAIN_SETTINGS = {"defaults", "tuned"}  # notify_result adds a push per result on the worker

huey = RedisHuey("peers", url=URL, notify_result=SETTING == "tuned")


@huey.task()  # type: ignore[untyped-decorator]
def noop() -> int:
    return 1


def worker_cmd() -> tuple[list[str], dict[str, str]]:
    cmd = [sys.executable, "-m", "huey.bin.huey_consumer", "huey_app.huey", "-w", str(CONCURRENCY), "-k", "thread"]
    return [*cmd, "--quiet"], {}


@asynccontextmanager
async def client() -> AsyncIterator[Callable[[float], Awaitable[None]]]:
    async def one(timeout: float) -> None:
        result = noop().get(blocking=True, timeout=timeout)
        if result != 1:
            raise RuntimeError(f"unexpected result {result!r}")

    yield one


@asynccontextmanager
async def submitter() -> AsyncIterator[tuple[Callable[[], Awaitable[Any]], bool]]:
    """One enqueue as the peer's docs write it (a blocking call: no gather)."""

    async def one() -> Any:
        return noop()

    yield one, False


async def enqueue(n: int) -> None:
    for _ in range(n):
        noop()


def done(r: Any, n: int) -> int:
    return int(r.hlen("huey.results.peers"))
