"""Shared plumbing for the peer scripts, which run in the peers venv (stdlib and redis-py only here).

The server URL comes from REDIS_URL, the variant from PEERS_SETTING ("defaults" or "tuned") and the
worker concurrency from PEERS_CONCURRENCY; the peer's worker process gets the same environment.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from _observe import observe

URL = os.environ["REDIS_URL"]
SETTING = os.environ.get("PEERS_SETTING", "defaults")
CONCURRENCY = int(os.environ.get("PEERS_CONCURRENCY", "10"))
FIRST_TIMEOUT = 60.0  # the first job also waits for the worker to start
JOB_TIMEOUT = 10.0
SLOW = 0.1  # warm-up latency (s) above which a variant counts as slow and gets --slow-n samples


def sync_redis() -> redis.Redis:
    return redis.Redis.from_url(URL)


def _tail(log: Any, limit: int = 1500) -> str:
    log.seek(0)
    text: str = log.read().decode(errors="replace")
    return text[-limit:].strip()


@contextmanager
def worker(cmd: list[str], env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run the peer's worker for the duration of the block; its output goes to a temp file, shown on failure.

    The worker stays in this process's group (the harness gives this script a group of its own and
    reaps it), so anything the worker forks is cleaned up even if this script is killed.
    """
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc
        except Exception as exc:
            raise RuntimeError(f"{type(exc).__name__}: {exc} | worker output: {_tail(log)}") from exc
        finally:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_ready(ready: Callable[[redis.Redis], bool], proc: subprocess.Popen[bytes]) -> None:
    r = sync_redis()
    try:
        deadline = time.monotonic() + FIRST_TIMEOUT
        while not ready(r):
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"worker not ready after {FIRST_TIMEOUT:.0f} s")
            time.sleep(0.01)
    finally:
        r.close()


async def measure(
    one: Callable[[float], Awaitable[None]], n: int, slow_n: int, warmup: int, proc: subprocess.Popen[bytes]
) -> dict[str, Any]:
    """Time ``n`` sequential submit -> result round trips after ``warmup`` warm-ups (``slow_n`` if the variant is slow).

    The first warm-up waits for the worker to come up; if warm-ups 2-3 both take more than SLOW,
    the variant polls at a long interval and only ``slow_n`` samples are taken (as bench.latency
    does for arq's defaults), after those 3 warm-ups.
    """
    warm: list[float] = []
    for i in range(max(3, warmup)):
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}")
        t0 = time.perf_counter()
        await one(FIRST_TIMEOUT if i == 0 else JOB_TIMEOUT)
        warm.append(time.perf_counter() - t0)
        if i == 2 and min(warm[1:3]) > SLOW:
            n = slow_n
            break
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await one(JOB_TIMEOUT)
        samples.append(time.perf_counter() - t0)
    if proc.poll() is not None:
        raise RuntimeError(f"worker exited with {proc.returncode}")
    return {"samples": samples, "warmups": len(warm), "warmup_median": statistics.median(warm[1:])}


def drain(
    n: int,
    done: Callable[[redis.Redis, int], int],
    cmd: list[str],
    timeout: float,
    env: dict[str, str] | None = None,
    poll: float = 0.01,
) -> dict[str, Any]:
    """Start the worker on ``n`` already-queued jobs and watch ``done(r, n)`` (jobs completed) reach ``n``.

    Returns the wall time from spawning the worker to the last completion seen, and the steady
    rate from the first completion seen to the last (which leaves out interpreter and worker
    start-up, like bench.drain's figures for taskq and arq).
    """
    r = sync_redis()
    try:
        if (already := done(r, n)) != 0:
            raise RuntimeError(f"{already} jobs already counted as done before the worker started")
        t_spawn = time.perf_counter()
        with worker(cmd, env) as proc:
            steady, wall = observe(lambda: done(r, n), n, proc, spawned=t_spawn, timeout=timeout, poll=poll)
    finally:
        r.close()
    return {"n": n, "wall_s": wall, "rate": steady}
