"""A worker module with custom job functions, as a team would ship it.

Serve it next to the built-in jobs::

    python -m taskq_sdk.worker examples.jobs            # the taskq worker (recommended)
    arq examples.jobs.WorkerSettings                    # or the stock arq command

Submit from anywhere that reaches the same server::

    client.submit("word_count", "some text")
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import taskq_sdk
from taskq_sdk import Retry, report_progress


@taskq_sdk.job(timeout=60)
def word_count(text: str) -> dict[str, Any]:
    """Count words (a sync function: it runs in a thread, off the worker's event loop)."""
    words = text.lower().split()
    return {"words": len(words), "top": Counter(words).most_common(3)}


@taskq_sdk.job(timeout=600, retries=5)
async def crunch(n: int, step: float = 0.02) -> int:
    """A slow async job that reports progress as it goes."""
    total = 0
    for i in range(1, n + 1):
        await asyncio.sleep(step)
        total += i * i
        report_progress(i, total=n, message=f"item {i}/{n}")
    return total


@taskq_sdk.job(retries=3)
def flaky_fetch(ctx: dict[str, Any], url: str) -> str:
    """Asks for another attempt (with backoff) until the third one - a transient failure."""
    if ctx["job_try"] < 3:
        raise Retry(defer=0.2, reason=f"upstream busy (attempt {ctx['job_try']})")
    return f"fetched {url} on attempt {ctx['job_try']}"


@taskq_sdk.job(isolate=True, timeout=30)
def cpu_heavy(n: int) -> int:
    """CPU-bound work in its own process: a timeout or cancel kills it, so the work really stops."""
    deadline = time.monotonic() + 60
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1_000_003
        if time.monotonic() > deadline:
            break
    return x


def __getattr__(name: str) -> Any:
    # `arq examples.jobs.WorkerSettings`: built when asked for, so the environment is read then
    if name == "WorkerSettings":
        from taskq_sdk.worker import make_worker_settings

        return make_worker_settings(["examples.jobs"])
    raise AttributeError(name)
