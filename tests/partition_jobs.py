"""Jobs for the many-hosts tests (tests/test_hosts.py, tests/test_partitions.py): side effects in files.

Each execution of a job is a *copy* named ``<pid>:<attempt>:<nonce>``; it appends ``<copy> tick <n>``
lines to the job's own file while it runs (checking its claim before each tick) and ``<copy> end``
when its body is done. Files, not Redis, so a copy on a host cut off from the server still leaves
its trace: the test reads which copies ran, which finished, and whose result the server kept.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import taskq_sdk
from taskq_sdk import report_progress


def _copy_name(ctx: dict[str, Any]) -> str:
    return f"{os.getpid()}:{ctx['job_try']}:{os.urandom(3).hex()}"


def _write(path: Path, line: str) -> None:
    with open(path, "a") as fh:
        fh.write(line + "\n")


@taskq_sdk.job(timeout=300)
async def stint(ctx: dict[str, Any], folder: str, i: int, ticks: int, step: float) -> str:
    """An async job of ``ticks`` steps that records its copy's ticks and its end in ``folder/i``."""
    copy, path = _copy_name(ctx), Path(folder) / str(i)
    for n in range(ticks):
        report_progress(n / ticks)  # the fence: stops this copy once its claim is known lost
        _write(path, f"{copy} tick {n} {time.time():.3f}")
        await asyncio.sleep(step)
    _write(path, f"{copy} end {time.time():.3f}")
    return copy


@taskq_sdk.job(timeout=300)
def sync_stint(ctx: dict[str, Any], folder: str, i: int, ticks: int, step: float) -> str:
    """The sync twin of :func:`stint` (runs in a worker thread)."""
    copy, path = _copy_name(ctx), Path(folder) / str(i)
    for n in range(ticks):
        report_progress(n / ticks)
        _write(path, f"{copy} tick {n} {time.time():.3f}")
        time.sleep(step)
    _write(path, f"{copy} end {time.time():.3f}")
    return copy


@taskq_sdk.job
def where(x: int) -> tuple[int, int]:
    """Which worker process ran this job: ``(pid, x * 2)``."""
    return os.getpid(), x * 2
