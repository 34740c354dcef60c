"""Running one job attempt in a killable subprocess (``@taskq_sdk.job(isolate=True)``).

A thread cannot be interrupted, so a sync job that overruns its time limit or is cancelled keeps
running; an isolated job runs in its own process, which is killed instead - the work really stops.
Progress and captured output travel back over a private pipe::

    @taskq_sdk.job(isolate=True, timeout=600)
    def render(scene: str) -> str: ...
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pickle
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["run_isolated"]

_SAFE_CTX_KEYS = ("job_id", "job_try", "enqueue_time", "score", "tenant", "workspace", "worker_id", "settings")


def _dumps(obj: Any) -> bytes:
    try:
        import cloudpickle

        return bytes(cloudpickle.dumps(obj))
    except ImportError:
        return pickle.dumps(obj)


def _child(  # pragma: no cover - runs in the subprocess
    conn: Connection, payload: bytes, job_fields: dict[str, Any], parent: int
) -> None:
    """Entry point of the isolated process: run the function, report progress/logs, send the outcome."""
    import asyncio as aio
    import sys
    import threading

    from . import _lifeline, runtime
    from .serialization import RemoteError

    # never outlive the worker: if it dies (even SIGKILL), this process is killed too
    _lifeline.die_with_parent(parent)
    fn, args, kwargs = pickle.loads(payload)  # our own parent's bytes, over our own pipe
    send_lock = threading.Lock()

    def sink(_job: runtime.JobContext, data: dict[str, Any]) -> None:
        with send_lock, contextlib.suppress(Exception):
            conn.send(("progress", data))

    # the job context flushes progress through its loop: run one in a thread, so sync work reports live
    loop = aio.new_event_loop()
    threading.Thread(target=loop.run_forever, name="taskq-isolated-loop", daemon=True).start()
    job = runtime.JobContext(loop=loop, sink=sink, **job_fields)
    runtime.install_output_capture()
    token = runtime.bind_job(job)
    try:
        value = fn(*args, **kwargs)
        if aio.iscoroutine(value):
            value = aio.run_coroutine_threadsafe(value, loop).result()
        job.flush()
        with send_lock:
            conn.send(("ok", value))
    except BaseException as exc:  # report everything, including SystemExit from user code
        job.flush()
        err = RemoteError.from_exception(exc, traceback="".join(traceback.format_exception(exc)))
        with send_lock:
            try:
                conn.send(("err", err, runtime.is_transient(exc), getattr(exc, "defer", None)))
            except Exception:
                plain = RemoteError(type=err.type, message=err.message, traceback=err.traceback)
                conn.send(("err", plain, False, None))
    finally:
        runtime.unbind_job(token)
        with contextlib.suppress(Exception):
            conn.close()
        sys.stdout.flush()


async def run_isolated(
    fn: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    job: Any,
    *,
    takes_ctx: bool,
    timeout: float | None,
) -> tuple[str, Any, bool, float | None]:
    """Run ``fn`` in a fresh process; ``("ok", value, ...)`` or ``("err", RemoteError, transient, defer)``.

    Raises ``TimeoutError`` when ``timeout`` passes (the process is killed first) and propagates
    cancellation (the process is killed first).

    Example::

        kind, value, transient, defer = await run_isolated(fn, (1,), {}, job_ctx, takes_ctx=False, timeout=30)
    """
    if takes_ctx and args:
        ctx = args[0]
        args = ({k: ctx[k] for k in _SAFE_CTX_KEYS if k in ctx}, *args[1:])
    payload = _dumps((fn, args, kwargs))
    fields = {
        "job_id": job.job_id,
        "function": job.function,
        "tenant": job.tenant,
        "workspace": job.workspace,
        "attempt": job.attempt,
        "max_tries": job.max_tries,
        "log_limit": job.log_limit,
    }
    mp = multiprocessing.get_context("spawn")
    parent, child = mp.Pipe(duplex=False)
    proc = mp.Process(
        target=_child, args=(child, payload, fields, os.getpid()), name=f"taskq-isolated-{job.job_id}", daemon=True
    )
    proc.start()
    child.close()
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(parent.fileno(), readable.set)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            readable.clear()
            while parent.poll():
                # a job reporting progress faster than a loaded worker reads it keeps poll() true:
                # the deadline must still end it
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError
                try:
                    msg = parent.recv()
                except EOFError:
                    msg = None
                if msg is None:
                    proc.join(5)
                    from .serialization import RemoteError

                    err = RemoteError(
                        type="WorkerProcessDied",
                        message=f"the isolated process exited with code {proc.exitcode} before reporting a result",
                        traceback="",
                    )
                    return ("err", err, False, None)
                if msg[0] == "progress":
                    data = dict(msg[1])
                    for line in data.pop("_logs", []):
                        job.log_line(line)
                    if "pt" in data and "pd" in data:
                        job.report(float(data["pd"]), float(data["pt"]), data.get("pmsg"))
                    elif "p" in data:
                        job.report(float(data["p"]), None, data.get("pmsg"))
                    continue
                if msg[0] == "ok":
                    return ("ok", msg[1], False, None)
                return ("err", msg[1], bool(msg[2]), msg[3])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(readable.wait(), remaining if remaining is not None else 1.0)
    finally:
        loop.remove_reader(parent.fileno())
        parent.close()
        if proc.is_alive():
            proc.kill()
        await asyncio.get_running_loop().run_in_executor(None, proc.join, 5)
