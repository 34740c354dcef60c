"""The drain observer every system shares (peers in their venv, taskq and arq in bench.peers): stdlib only.

    rate, wall = observe(lambda: n - r.zcard("arq:queue"), n, proc, timeout=240)

It reads a completion counter every ``poll`` seconds while the worker process ``proc`` drains ``n``
queued jobs; the rate is the steady one from the first completion seen to the last (start-up left
out), the wall time runs from ``spawned`` (the worker's spawn) to the last completion seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def observe(
    done: Callable[[], int], n: int, proc: Any, *, spawned: float, timeout: float, poll: float = 0.01
) -> tuple[float, float]:
    """``(steady jobs/s, seconds from spawn to the last completion)`` once ``done()`` reaches ``n``."""
    first: tuple[float, int] | None = None
    while True:
        count = done()
        now = time.perf_counter()
        if count and first is None:
            first = (now, count)
        if count >= n:
            break
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode} after {count} of {n} jobs")
        if now - spawned > timeout:
            raise TimeoutError(f"only {count} of {n} jobs done after {timeout:.0f} s")
        time.sleep(poll)
    assert first is not None
    wall = now - spawned
    span = now - first[0]
    return ((n - first[1]) / span if span > 0 and n > first[1] else n / wall), wall
