"""The built-in chunk runner: calls a named job function once per item, catching each item's error.

``client.map(..., chunk_size=N)`` and the DataFrame fan-out (:mod:`taskq_sdk.pandas`) submit
jobs of this function; each runs one chunk of items on one worker. One bad item never fails its
neighbours: its error is recorded next to the others' values::

    # what a worker runs for one chunk (clients never call this directly)
    # not run: worker side, needs arq's job context
    await taskq_map_chunk(ctx, "score", ["good", "bad", "fine"])
    # {"n": 3, "v": [0.9, None, 0.4], "e": [[1, RemoteError(type="ValueError", ...)]]}

Inputs (``mode``): ``items`` (a list, each item is the one argument), ``star`` (a list of
argument tuples), ``series`` (one column: a numpy array of numbers or a pandas Series; one
argument per row, as ``Series.apply`` passes it), ``columns`` (``[names, [column, ...]]``: the
columns are the positional arguments) and ``rows`` (the same, each row passed as a ``dict``).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import traceback as tb_mod
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from .._chunks import MODES, RUNNER_NAME, take_items
from ..registry import job
from ..runtime import StopJob, current_job
from ..serialization import RemoteError

__all__ = ["MODES", "RUNNER_NAME", "row_timing", "take_items", "taskq_map_chunk"]

logger = logging.getLogger("taskq_sdk.worker")

#: items whose error keeps its full traceback; later ones keep type and message (results stay small)
TRACEBACKS_KEPT = 20
TRACEBACK_CHARS = 4000
PROGRESS_EVERY = 0.2  # seconds between progress reports of one chunk


def _objects(column: Any) -> list[Any]:
    """One column's values as Python objects, as ``Series.apply`` would pass them."""
    if isinstance(column, list):
        return column
    if isinstance(column, tuple):
        return list(column)
    kind = getattr(getattr(column, "dtype", None), "kind", None)
    if type(column).__name__ == "ndarray" and kind in ("i", "u", "f", "b"):
        values: list[Any] = column.tolist()  # Python ints / floats / bools, like astype(object)
        return values
    if hasattr(column, "to_numpy"):  # a pandas Series: Timestamps, categories, strings with NaN, ...
        return list(column.to_numpy(dtype=object))
    return list(column)


def _columns_of(items: Any) -> tuple[list[Any], list[list[Any]]]:
    """Column names and values of a ``columns`` / ``rows`` payload: ``[names, [column, ...]]`` or a DataFrame."""
    if hasattr(items, "columns"):
        names = list(items.columns)
        return names, [_objects(items[c]) for c in names]
    names, cols = items
    return list(names), [_objects(c) for c in cols]


def _arguments(items: Any, mode: str) -> tuple[list[Any], bool]:
    """The calls of a chunk: one value per item (``single``) or one tuple of positional arguments per item."""
    if mode == "items":
        return _objects(items), True
    if mode == "star":
        return [tuple(item) if isinstance(item, list | tuple) else (item,) for item in items], False
    if mode == "series":
        return _objects(items), True
    if mode in ("columns", "rows"):
        names, cols = _columns_of(items)
        n = len(cols[0]) if cols else len(items) if hasattr(items, "columns") else 0
        if not cols:
            return ([{} for _ in range(n)], True) if mode == "rows" else ([() for _ in range(n)], False)
        if mode == "columns":
            return list(zip(*cols, strict=True)), False
        return [dict(zip(names, vals, strict=True)) for vals in zip(*cols, strict=True)], True
    raise ValueError(f"unknown chunk mode {mode!r} (expected one of {', '.join(MODES)})")


def _error(exc: Exception, kept: int) -> RemoteError:
    if kept < TRACEBACKS_KEPT:
        tb = exc.__traceback__
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next  # drop the runner's own frame: the traceback starts in the user's code
        text = "".join(tb_mod.format_exception(type(exc), exc, tb))[-TRACEBACK_CHARS:]
    else:
        text = ""
    return RemoteError.from_exception(exc, traceback=text)


class _Progress:
    """Reports the chunk's progress at most every PROGRESS_EVERY seconds; raises StopJob once cancelled.

    With a ``pace`` (a rate-limited function: the gate took one rate slot per item, one ``pace``
    apart), :meth:`tick` also says how long to wait so that call ``done`` starts on its own slot.
    """

    def __init__(self, total: int, pace: float = 0.0) -> None:
        self.job = current_job()
        self.total = total
        self.last = time.monotonic()
        self.pace = pace
        self.started = time.perf_counter()  # the calls only: not the hand-over to and from a thread
        self.paused = 0.0

    def tick(self, done: int, failed: int) -> float:
        job = self.job
        if job is not None:
            if job.stop_reason is not None:
                raise StopJob(f"job {job.job_id} was {job.stop_reason}")
            now = time.monotonic()
            if now - self.last >= PROGRESS_EVERY:
                self.last = now
                job.report(done, self.total, f"{failed} failed" if failed else None)
        if not self.pace:  # not rate-limited: no clock read per item
            return 0.0
        wait = max(self.started + done * self.pace - time.perf_counter(), 0.0)
        self.paused += wait
        return wait

    def took(self) -> float:
        """Seconds the calls took, waits for rate slots left out (what chunk_size="auto" plans with)."""
        return time.perf_counter() - self.started - self.paused


def _pace_of(spec: Any) -> float:
    """Seconds between the calls of a chunk of a rate-limited function (0: none)."""
    rate = getattr(getattr(spec, "limit", None), "rate", None)
    return 1.0 / rate.per_second if rate is not None and rate.per_second > 0 else 0.0


@dataclass
class _Calls:
    """The calls of one chunk: ``fn(*pre, item, **kwargs)`` (``single``) or ``fn(*pre, *item, **kwargs)``."""

    fn: Callable[..., Any]
    pre: tuple[Any, ...]
    calls: list[Any]
    single: bool
    kwargs: dict[str, Any]

    def call(self, args: Any) -> Any:
        return self.fn(*self.pre, args, **self.kwargs) if self.single else self.fn(*self.pre, *args, **self.kwargs)


def _run_sync(work: _Calls, pace: float, marks: list[int] | None = None) -> tuple[list[Any], list[list[Any]], float]:
    values: list[Any] = [None] * len(work.calls)
    errors: list[list[Any]] = []
    progress = _Progress(len(work.calls), pace)
    mark = marks.append if marks is not None else None  # timing off: no clock read per item
    clock = time.perf_counter_ns
    for i, args in enumerate(work.calls):
        if wait := progress.tick(i, len(errors)):
            time.sleep(wait)
        if mark is not None:
            mark(clock())
        try:
            values[i] = work.call(args)
        except Exception as exc:
            errors.append([i, _error(exc, len(errors))])
    if mark is not None:
        mark(clock())
    return values, errors, progress.took()


async def _run_async(
    work: _Calls, pace: float, marks: list[int] | None = None
) -> tuple[list[Any], list[list[Any]], float]:
    values: list[Any] = [None] * len(work.calls)
    errors: list[list[Any]] = []
    progress = _Progress(len(work.calls), pace)
    mark = marks.append if marks is not None else None  # timing off: no clock read per item
    clock = time.perf_counter_ns
    for i, args in enumerate(work.calls):
        if wait := progress.tick(i, len(errors)):
            await asyncio.sleep(wait)
        if mark is not None:
            mark(clock())
        try:
            values[i] = await work.call(args)
        except Exception as exc:
            errors.append([i, _error(exc, len(errors))])
    if mark is not None:
        mark(clock())
    return values, errors, progress.took()


def row_timing(wall_ns: int, base_ns: int, marks: list[int]) -> list[Any]:
    """Per-item times, compactly: ``[start of the first item (epoch microseconds), [duration of each item (us)]]``.

    ``marks`` are ``perf_counter_ns`` readings before each item and after the last; ``wall_ns`` is
    the wall clock (``time.time_ns()``) read together with ``base_ns``. Items of a chunk run one
    after another, so an item starts when the one before it ends (the outcomes undo this:
    :func:`taskq_sdk.batch.outcomes.row_times`). In a chunk of a rate-limited function the items
    start one rate slot apart, so an item's duration there includes the wait for the next item's
    slot. Durations are small numbers that pack into one to three bytes each on the wire. Example::

        base = time.perf_counter_ns()
        row_timing(time.time_ns(), base, [base, base + 5_000_000, base + 5_800_000])  # [t0_us, [5000, 800]]
    """
    if not marks:
        return [wall_ns // 1000, []]
    durations = [(b - a) // 1000 for a, b in pairwise(marks)]
    return [(wall_ns + marks[0] - base_ns) // 1000, durations]


@job(name=RUNNER_NAME)
async def taskq_map_chunk(
    ctx: dict[str, Any],
    function: str,
    items: Any,
    mode: str = "items",
    kwargs: dict[str, Any] | None = None,
    batch: str = "",
    timing: bool = False,
) -> dict[str, Any]:
    """Run job ``function`` once per item of ``items``; return ``{"n", "v": values, "e": errors}``.

    ``e`` lists ``[offset, RemoteError]`` for the items that raised (their value is ``None``).
    With ``timing=True`` (a batch submitted with ``timing=True``) the result also has ``"t"``:
    when each item started and how long it took (:func:`row_timing`); without it no clock is read per item.
    Raises only when the chunk as a whole cannot run (unknown function, bad input).

    Example::

        await client.submit("taskq_map_chunk", "score", ["a", "b"])   # what client.map does
    """
    resolve = ctx.get("taskq_resolve")
    spec = resolve(function) if callable(resolve) else None
    if spec is None:
        raise LookupError(
            f"this worker does not serve job {function!r}; start a worker that imports it "
            "(python -m taskq_sdk.worker yourpkg.jobs) or register it on the LocalCluster"
        )
    if spec.name == RUNNER_NAME:
        raise ValueError("the chunk runner cannot map itself")
    calls, single = _arguments(items, mode)
    extra = dict(kwargs or {})
    for name in ("tenant", "workspace"):
        if name not in extra and spec.params is not None and name in spec.params and name in ctx:
            extra[name] = ctx[name]
    pre: tuple[Any, ...] = (ctx,) if spec.takes_ctx else ()
    work = _Calls(spec.fn, pre, calls, single, extra)
    # the gate took one rate slot per item (of the function's rate and of a _limit_key's): one slot apart
    pace = max(_pace_of(spec), float(ctx.get("taskq_pace") or 0.0))
    marks: list[int] | None = [] if timing else None
    wall_ns, base_ns = time.time_ns(), time.perf_counter_ns()
    if spec.is_async:
        values, errors, took = await _run_async(work, pace, marks)
    else:
        cv = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        values, errors, took = await loop.run_in_executor(None, cv.run, _run_sync, work, pace, marks)
    store = ctx.get("taskq_store")
    if store is not None and values:
        # what chunk_size="auto" plans the next chunks of this function with (batch/autochunk.py)
        tenant = str(ctx.get("tenant") or "default")
        if not await store.batches.record_item_seconds(
            tenant, spec.name, took / len(values), now_ms=int(time.time() * 1000), items=len(values)
        ):
            logger.warning("could not record the item time of %s (a planning hint only)", spec.name)
    if errors and batch and store is not None and ctx.get("job_id"):
        tenant = str(ctx.get("tenant") or "default")
        await store.batches.record_rows_failed(tenant, batch, str(ctx["job_id"]), len(errors))
    if marks is not None:
        return {"n": len(values), "v": values, "e": errors, "t": row_timing(wall_ns, base_ns, marks)}
    return {"n": len(values), "v": values, "e": errors}
