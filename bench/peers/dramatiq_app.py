"""dramatiq on the harness's server: a no-op actor with stored results, its worker command, a client, a drain counter.

Worker: ``dramatiq dramatiq_app --processes 1 --threads CONCURRENCY``. The Redis broker's consumer
polls when its queue is empty, sleeping 5-10 ms after the first miss and backing off up to the
worker timeout (1 s, ``dramatiq_worker_timeout``); the result wait is a blocking BRPOPLPUSH. With
jobs arriving back to back the backoff stays at its first step, so there is no "tuned" variant.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import dramatiq
from _common import CONCURRENCY, URL
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

PACKAGE = "dramatiq"
SETTINGS = {
    "defaults": "RedisBroker + Results(RedisBackend), get_result(block=True); idle worker polls 5-10 ms",
}
DRAIN_SETTINGS = {"defaults"}

broker = RedisBroker(url=URL)  # type: ignore[no-untyped-call]
broker.add_middleware(Results(backend=RedisBackend(url=URL)))  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def noop() -> int:
    return 1


def worker_cmd() -> tuple[list[str], dict[str, str]]:
    cmd = [sys.executable, "-m", "dramatiq", "dramatiq_app", "--processes", "1", "--threads", str(CONCURRENCY)]
    return cmd, {}


@asynccontextmanager
async def client() -> AsyncIterator[Callable[[float], Awaitable[None]]]:
    async def one(timeout: float) -> None:
        # the Redis result backend rounds its timeout down to whole seconds
        result = noop.send().get_result(block=True, timeout=max(1000, int(timeout * 1000)))
        if result != 1:
            raise RuntimeError(f"unexpected result {result!r}")

    yield one


@asynccontextmanager
async def submitter() -> AsyncIterator[tuple[Callable[[], Awaitable[Any]], bool]]:
    """One enqueue as the peer's docs write it (a blocking call: no gather)."""

    async def one() -> Any:
        return noop.send()

    yield one, False


async def enqueue(n: int) -> None:
    for _ in range(n):
        noop.send()


def done(r: Any, n: int) -> int:
    # the broker keeps each message in this hash until the worker acks it
    return n - int(r.hlen("dramatiq:default.msgs"))
