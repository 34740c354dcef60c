"""The job the Sentinel failover figure drains: it records each execution outside Redis, in an append-only file."""

from __future__ import annotations

import os
import time

import taskq_sdk


@taskq_sdk.job
def ledger(path: str, i: int, seconds: float = 0.0) -> int:
    """Append ``i``, the time and the worker's pid to ``path`` after ``seconds`` of work; returns ``i``.

    One ``O_APPEND`` write, so concurrent workers never interleave. The ledger survives the server's
    loss, so it tells which jobs ran, and how often, whatever Redis forgot.
    """
    if seconds:
        time.sleep(seconds)  # the job's work
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, f"{i} {time.time():.3f} {os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return i
