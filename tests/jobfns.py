"""Job functions the test suite runs on real workers (in-process threads and subprocesses)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import taskq_sdk
from taskq_sdk import report_progress

log = logging.getLogger("tests.jobfns")


@taskq_sdk.job
def add(a: int, b: int) -> int:
    return a + b


@taskq_sdk.job
async def aadd(a: int, b: int) -> int:
    return a + b


@taskq_sdk.job
def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": list(args), "kwargs": kwargs}


@taskq_sdk.job
async def slow(n: int, step: float = 0.05) -> int:
    for i in range(n):
        await asyncio.sleep(step)
        report_progress(i + 1, total=n, message=f"step {i + 1}")
    return n


@taskq_sdk.job
def sync_slow(n: int, step: float = 0.05) -> int:
    for i in range(n):
        time.sleep(step)
        report_progress(i + 1, total=n, message=f"step {i + 1}")
    return n


@taskq_sdk.job
def boom(x: Any) -> None:
    print(f"about to fail on {x}")
    log.warning("failing on %s", x)
    raise ValueError(f"bad row {x}")


@taskq_sdk.job
def flaky(ctx: dict[str, Any], succeed_on: int) -> int:
    """Raises a transient error until attempt ``succeed_on``."""
    if ctx["job_try"] < succeed_on:
        raise ConnectionError(f"transient failure on attempt {ctx['job_try']}")
    return int(ctx["job_try"])


@taskq_sdk.job
def always_transient() -> None:
    raise TimeoutError("upstream timed out")


@taskq_sdk.job
async def sleeper(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@taskq_sdk.job
def sync_sleeper(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@taskq_sdk.job
async def record_pid(ctx: dict[str, Any], key: str, seconds: float) -> int:
    """Writes (pid, attempt) to Redis so a test can kill the worker that provably holds the job."""
    await ctx["redis"].rpush(key, f"{os.getpid()}:{ctx['job_try']}")
    await asyncio.sleep(seconds)
    return os.getpid()


@taskq_sdk.job
def tenant_echo(ctx: dict[str, Any], tenant: str = "?", workspace: str = "?") -> dict[str, str]:
    return {"tenant": tenant, "workspace": workspace, "job_id": ctx["job_id"]}


@taskq_sdk.job
def big_result(n_bytes: int) -> bytes:
    return b"x" * n_bytes


@taskq_sdk.job
def returns_object() -> Any:
    return object()


@taskq_sdk.job(timeout=0.5)
async def limited() -> None:
    await asyncio.sleep(30)


@taskq_sdk.job(retries=1)
def no_retry_transient() -> None:
    raise ConnectionError("down")


@taskq_sdk.job(timeout=60)
async def blocks_loop(ctx: dict[str, Any], key: str, seconds: float) -> int:
    """Badly written: blocks the worker's event loop (time.sleep in an async function)."""
    await ctx["redis"].rpush(key, f"{os.getpid()}:{ctx['job_try']}")
    time.sleep(seconds)
    return os.getpid()


# ---- issue 5: user analyzers registered by a module the worker imports, a job that ignores cancellation
from taskq_sdk.analyzers import analyzer  # noqa: E402


@analyzer("shouting")
def shouting(text: str) -> dict[str, float]:
    letters = [c for c in text if c.isalpha()]
    return {"ratio": round(sum(c.isupper() for c in letters) / max(1, len(letters)), 4)}


@analyzer("fragile")
def fragile(text: str) -> dict[str, int]:
    if "boom" in text:
        raise ValueError("fragile analyzer cannot read 'boom'")
    return {"length": len(text)}


@taskq_sdk.job(timeout=0.5)
async def ignores_cancel(seconds: float) -> str:
    """Swallows the first cancellation (its time limit) and runs on: a 'stuck' job for monitoring."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        await asyncio.sleep(seconds)
    return "finished late"


@taskq_sdk.job(isolate=True)
def isolated_spin(key_file: str, seconds: float) -> int:
    """CPU/blocking work in its own process: writes a heartbeat file until done or killed."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        with open(key_file, "w") as fh:
            fh.write(f"{os.getpid()} {n}")
        n += 1
        report_progress(min(1.0, n / 100), message=f"tick {n}")
        time.sleep(0.02)
    return os.getpid()


@taskq_sdk.job(isolate=True)
def isolated_boom() -> None:
    raise ValueError("isolated failure")


@taskq_sdk.job
async def record_job_id(ctx: dict[str, Any], key: str) -> str:
    """Appends its own job id to a Redis list (scheduler tests count executions per slot)."""
    await ctx["redis"].rpush(key, ctx["job_id"])
    return str(ctx["job_id"])


@taskq_sdk.job
async def mark(ctx: dict[str, Any], i: int, seconds: float = 0.0) -> int:
    """Counts its executions per input in Redis (duplicates show as counts above 1)."""
    await ctx["redis"].hincrby("load:runs", str(i), 1)
    if seconds:
        await asyncio.sleep(seconds)
    return i * 2


# ---------------------------------------------------------------- batches and DataFrame fan-out (tests/test_batch.py,
# tests/test_pandas.py, tests/test_mapping.py): pure functions, so the tests compare with a local df.apply


@taskq_sdk.job
def toy_sentiment(text: Any) -> dict[str, Any]:
    """A toy per-row analysis returning a dict; raises on texts containing 'bad'."""
    if not isinstance(text, str):
        return {"score": None, "label": "empty"}
    if "bad" in text:
        raise ValueError(f"cannot score {text!r}")
    score = sum(map(ord, text)) % 100 / 100
    return {"score": score, "label": "pos" if score >= 0.5 else "neg"}


@taskq_sdk.job
def double(x: Any) -> Any:
    return x * 2


@taskq_sdk.job
async def adouble(x: Any) -> Any:
    return x * 2


@taskq_sdk.job
def shape_shifter(x: int) -> Any:
    """Mixed result shapes: dicts with varying keys, scalars, None and lists; fails on multiples of 7."""
    if x % 7 == 0 and x:
        raise ArithmeticError(f"seven divides {x}")
    kind = x % 5
    if kind == 0:
        return {"a": x, "b": str(x)}
    if kind == 1:
        return {"a": x * 10}
    if kind == 2:
        return x + 0.5
    if kind == 3:
        return None
    return [x, x]


@taskq_sdk.job
def pair_sum(a: Any, b: Any) -> Any:
    return a + b


@taskq_sdk.job
def row_text(row: dict[str, Any]) -> str:
    return "|".join(f"{k}={row[k]}" for k in sorted(row, key=str))


@taskq_sdk.job
def fail_if_flagged(x: int, flags: str = "") -> int:
    """Fails on items listed in the file ``flags`` (tests empty it, then re-run the failures)."""
    if flags and os.path.exists(flags):
        with open(flags) as fh:
            flagged = {int(v) for v in fh.read().split()}
        if x in flagged:
            raise RuntimeError(f"item {x} is flagged")
    return x * 3


@taskq_sdk.job
async def slow_item(x: int, seconds: float = 0.2) -> int:
    await asyncio.sleep(seconds)
    return x


@taskq_sdk.job
def sync_slow_item(x: int, seconds: float = 0.2) -> int:
    time.sleep(seconds)
    return x


@taskq_sdk.job
def kwarg_echo(x: Any, scale: int = 1, tenant: str = "?") -> dict[str, Any]:
    return {"x": x, "scale": scale, "tenant": tenant}


@taskq_sdk.job
def takes_timeout(x: int, timeout: int = 1) -> int:
    """Declares a parameter named ``timeout``, so ``submit(..., timeout=7)`` passes it (test_first_hour_api)."""
    return x * timeout


@taskq_sdk.job
def describe(value: Any) -> str:
    """The type and repr of what a call received (checks the fan-out passes what Series.apply passes)."""
    return f"{type(value).__name__}:{value!r}"


@taskq_sdk.job
def undecodable(name_bytes: bytes) -> None:
    """Logs and fails with a file name that is not valid UTF-8 (as os.listdir gives it)."""
    name = os.fsdecode(name_bytes)  # lone surrogates, e.g. '\udce9'
    print(f"processing {name}")
    report_progress(0.5, message=f"at {name}")
    raise ValueError(f"bad {name}")


@taskq_sdk.job
async def concurrency_probe(ctx: dict[str, Any], key: str, seconds: float) -> int:
    """Counts how many of its kind run at once on this server (the highest count is kept in ``key:max``)."""
    redis = ctx["redis"]
    now = await redis.incr(key)
    await redis.eval(
        "if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or 0) then redis.call('SET', KEYS[1], ARGV[1]) end",
        1,
        f"{key}:max",
        now,
    )
    try:
        await asyncio.sleep(seconds)
    finally:
        await redis.decr(key)
    return int(now)


# ---------------------------------------------------------------- fencing (tests/test_fencing.py)
def _tick_line(ctx: dict[str, Any], copy: str, n: int) -> str:
    return f"{copy} {n} {time.time():.4f}\n"


@taskq_sdk.job(timeout=120)
def fenced_ticks(ctx: dict[str, Any], path: str, ticks: int, step: float = 0.05) -> str:
    """Appends one line per tick to ``path`` (its side effect), checking its claim before each.

    Each execution names itself ``<pid>:<attempt>:<nonce>``, so a test sees two copies of one job
    even when the same process runs both.
    """
    copy = f"{os.getpid()}:{ctx['job_try']}:{os.urandom(3).hex()}"
    for n in range(ticks):
        report_progress(n / ticks)  # the fence: stops this copy once its claim is gone
        with open(path, "a") as fh:
            fh.write(_tick_line(ctx, copy, n))
        time.sleep(step)
    return copy


@taskq_sdk.job(timeout=120)
async def afenced_ticks(ctx: dict[str, Any], path: str, ticks: int, step: float = 0.05) -> str:
    """The async twin of :func:`fenced_ticks`."""
    copy = f"{os.getpid()}:{ctx['job_try']}:{os.urandom(3).hex()}"
    for n in range(ticks):
        report_progress(n / ticks)
        with open(path, "a") as fh:
            fh.write(_tick_line(ctx, copy, n))
        await asyncio.sleep(step)
    return copy


@taskq_sdk.job
def timed_row(x: int, seconds: float = 0.02, slow: int = -1, flags: str = "") -> int:
    """Sleeps ``seconds`` (ten times as long for item ``slow``); fails on the items listed in the file ``flags``."""
    time.sleep(seconds * (10 if x == slow else 1))
    if flags and os.path.exists(flags):
        with open(flags) as fh:
            if x in {int(v) for v in fh.read().split()}:
                raise ValueError(f"row {x} is flagged")
    return x * 2
