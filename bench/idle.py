"""Idle cost: CPU of an idle worker and of an idle client waiting on handles, server ops/s while idle.

    python -m bench.idle                 # --seconds 10

A faster wake-up must not mean busy polling: compared with raw arq workers (defaults and 5 ms).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from functools import partial
from typing import Any

import redis

from taskq_sdk import Client

from ._harness import arq_worker, cpu_seconds, flush, server, table, taskq_worker


def server_ops(url: str, seconds: float) -> float:
    r: Any = redis.Redis.from_url(url)
    before = int(r.info("stats")["total_commands_processed"])
    time.sleep(seconds)
    after = int(r.info("stats")["total_commands_processed"])
    r.close()
    return (after - before - 1) / seconds


def measure_worker(proc_pid: int, url: str, seconds: float) -> tuple[float, float]:
    time.sleep(1.0)  # settle after start-up
    c0 = cpu_seconds(proc_pid)
    ops = server_ops(url, seconds)
    cpu = (cpu_seconds(proc_pid) - c0) / seconds * 100
    return cpu, ops


def measure_client(url: str, seconds: float, handles: int) -> float:
    """CPU (% of one core) of this process while a Client waits on `handles` deferred jobs."""
    with Client(url) as client:
        jobs = [client.submit("noop", _defer_by=3600) for _ in range(handles)]
        waiters = [threading.Thread(target=j.exception, daemon=True) for j in jobs]
        for t in waiters:
            t.start()
        time.sleep(1.0)
        c0 = cpu_seconds(os.getpid())
        time.sleep(seconds)
        cpu = (cpu_seconds(os.getpid()) - c0) / seconds * 100
        for j in jobs:
            j.cancel()
    return cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--handles", type=int, default=20)
    args = p.parse_args()
    rows = []
    with server() as srv:
        url = srv.url
        for name, ctx in (
            ("arq 0.28 worker, defaults", partial(arq_worker, url, "bench.arq_baseline.Default")),
            ("arq worker, polling at 5 ms", partial(arq_worker, url, "bench.arq_baseline.Fast")),
            ("taskq worker", partial(taskq_worker, url, "bench.noop_jobs")),
        ):
            flush(url)
            with ctx() as proc:
                cpu, ops = measure_worker(proc.pid, url, args.seconds)
            rows.append([name, f"{cpu:.2f}%", f"{ops:.1f}"])
        flush(url)
        with taskq_worker(url, "bench.noop_jobs"):
            cpu = measure_client(url, args.seconds, args.handles)
        rows.append([f"taskq Client waiting on {args.handles} handles", f"{cpu:.2f}%", ""])
    print(table(f"Idle cost over {args.seconds:g}s", ["process", "CPU (% of one core)", "server ops/s"], rows))


if __name__ == "__main__":
    main()
