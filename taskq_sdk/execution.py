"""The taskq job wrapper: runs one attempt of a job function and says how it ended.

Every job runs inside :func:`execute` on the worker: it runs sync functions off the event loop
(or in a killable process, for ``isolate=True``), enforces the time limit, makes
:func:`~taskq_sdk.report_progress` reach the worker (see :mod:`taskq_sdk.runtime`), and classifies
errors for the retry policy::

    # not run: worker internals, the engine runs each attempt so
    outcome = await execute(spec, job_ctx, (1, 2), {}, arq_ctx=ctx, timeout=30,
                            executor=pool, retry_base=60, retry_cap=3600)
    outcome.kind            # 'complete' | 'failed' | 'retry' | 'timed_out'
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
import traceback as tb_mod
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Literal

from .registry import JobSpec
from .runtime import (
    JobContext,
    Retry,
    StopJob,
    bind_job,
    ensure_output_capture,
    is_transient,
    remote_error,
    retry_delay_for,
    unbind_job,
)
from .serialization import RemoteError
from .streaming import ItemWriter, StreamSlot, bind_stream, refuse_isolated_stream, run_streaming, unbind_stream

__all__ = ["Outcome", "execute"]

OutcomeKind = Literal["complete", "failed", "retry", "timed_out"]


@dataclass
class Outcome:
    """How one attempt ended: a value, an error (maybe retryable), or a timeout.

    Example::

        # not run: worker internals, the engine runs each attempt so
        outcome = await execute(spec, ...)
        if outcome.kind == "retry": schedule(outcome.retry_delay)
    """

    kind: OutcomeKind
    value: Any = None
    error: RemoteError | None = None
    retry_delay: float | None = None
    duration: float = 0.0


def _is_plumbing(filename: str) -> bool:
    return filename == __file__ or filename.endswith(("concurrent/futures/thread.py", "asyncio/events.py"))


def _remote_error(exc: BaseException, kind: str = "error") -> RemoteError:
    tb = exc.__traceback__
    # drop the wrapper's own frames (and the thread pool's) so the remote traceback starts in user code
    while tb is not None and _is_plumbing(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    text = "".join(tb_mod.format_exception(type(exc), exc, tb))
    return RemoteError.from_exception(exc, kind=kind, traceback=text)


def _call_sync(ctx: contextvars.Context, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return ctx.run(fn, *args, **kwargs)


async def execute(
    spec: JobSpec,
    job: JobContext,
    args: tuple[Any, ...] | list[Any],
    kwargs: dict[str, Any],
    *,
    arq_ctx: dict[str, Any],
    timeout: float | None,
    executor: Executor | None,
    retry_base: float,
    retry_cap: float,
    stream: Callable[[], ItemWriter] | None = None,
) -> Outcome:
    """Run one attempt of ``spec`` and return its :class:`Outcome` (cancellation propagates).

    Example::

        # not run: worker internals, the engine runs each attempt so
        outcome = await execute(spec, job_ctx, (1, 2), {}, arq_ctx=ctx, timeout=30,
                                executor=pool, retry_base=60, retry_cap=3600)

    ``stream`` makes the writer a job's streamed items go through (generators, ``stream_item()``: see
    :mod:`taskq_sdk.streaming`).
    """
    call_args: tuple[Any, ...] = (arq_ctx, *args) if spec.takes_ctx else tuple(args)
    call_kwargs = dict(kwargs)
    for name, value in (("tenant", job.tenant), ("workspace", job.workspace)):
        if name not in call_kwargs and spec.params is not None and name in spec.params:
            call_kwargs[name] = value
    ensure_output_capture()
    token = bind_job(job)
    started = time.perf_counter()
    loop = asyncio.get_running_loop()
    slot = StreamSlot(stream, loop) if stream is not None else None
    stream_token = bind_stream(slot)  # stream_item() and generators send items through it
    try:
        async with asyncio.timeout(timeout) as deadline:
            if spec.isolate:
                from ._isolation import run_isolated

                refuse_isolated_stream(spec.fn)
                kind, value, transient, defer = await run_isolated(
                    spec.fn, call_args, call_kwargs, job, takes_ctx=spec.takes_ctx, timeout=None
                )
                if kind == "err":
                    return _isolated_failure(value, transient, defer, job, spec, retry_base, retry_cap, started)
            elif spec.is_async:
                value = await run_streaming(lambda: spec.fn(*call_args, **call_kwargs), slot, executor)
            else:
                cv = contextvars.copy_context()
                call = functools.partial(_call_sync, cv, spec.fn, call_args, call_kwargs)
                value = await run_streaming(lambda: loop.run_in_executor(executor, call), slot, executor)
    except TimeoutError as exc:
        duration = time.perf_counter() - started
        if deadline.expired():
            job.stop_reason = "timed out"
            note = f"the job exceeded its time limit of {timeout:g}s and was stopped"
            if spec.isolate:
                note += " (its process was killed)"
            elif not spec.is_async:
                note += (
                    " (a sync function's thread cannot be interrupted: its result will be discarded, "
                    "and its next report_progress() call raises StopJob)"
                )
            err = remote_error("JobTimedOut", note, kind="timeout")
            return Outcome("timed_out", error=err, duration=duration)
        return _failure(exc, job, spec, retry_base, retry_cap, duration)
    except StopJob as exc:
        duration = time.perf_counter() - started
        err = remote_error("StopJob", str(exc), kind="cancelled")
        return Outcome("failed", error=err, duration=duration)
    except Exception as exc:
        return _failure(exc, job, spec, retry_base, retry_cap, time.perf_counter() - started)
    finally:
        unbind_stream(stream_token)
        unbind_job(token)
        job.end_output()
    return Outcome("complete", value=value, duration=time.perf_counter() - started)


def _failure(exc: BaseException, job: JobContext, spec: JobSpec, base: float, cap: float, duration: float) -> Outcome:
    error = _remote_error(exc)
    if is_transient(exc) and job.attempt < job.max_tries:
        if isinstance(exc, Retry) and exc.defer is not None:
            delay = float(exc.defer)
        else:
            delay = retry_delay_for(job.attempt, spec.retry_delay if spec.retry_delay is not None else base, cap)
        return Outcome("retry", error=error, retry_delay=delay, duration=duration)
    return Outcome("failed", error=error, duration=duration)


def _isolated_failure(
    error: RemoteError,
    transient: bool,
    defer: float | None,
    job: JobContext,
    spec: JobSpec,
    base: float,
    cap: float,
    started: float,
) -> Outcome:
    duration = time.perf_counter() - started
    if transient and job.attempt < job.max_tries:
        if defer is not None:
            delay = float(defer)
        else:
            delay = retry_delay_for(job.attempt, spec.retry_delay if spec.retry_delay is not None else base, cap)
        return Outcome("retry", error=error, retry_delay=delay, duration=duration)
    return Outcome("failed", error=error, duration=duration)
