"""What a running job can reach: its context, progress, captured output, and the errors that steer retries.

Shared by the worker's job wrapper (:mod:`taskq_sdk.execution`), the isolated process
(:mod:`taskq_sdk._isolation`) and the chunk runner. Inside a job::

    from taskq_sdk import report_progress

    def crunch(rows):
        for i, row in enumerate(rows, 1):
            ...
            report_progress(i, total=len(rows), message=f"row {i}")
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import io
import logging
import random
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .serialization import RemoteError

__all__ = [
    "JobContext",
    "ProgressSink",
    "Retry",
    "StopJob",
    "bind_job",
    "current_job",
    "ensure_output_capture",
    "install_output_capture",
    "is_transient",
    "remote_error",
    "report_progress",
    "retry_delay_for",
    "status_code_of",
    "unbind_job",
]


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("taskq_job", default=None)

PROGRESS_MIN_INTERVAL = 0.05  # seconds between progress flushes for one job (20 per second)


class Retry(Exception):
    """Raise inside a job to ask for another attempt (counted against the job's attempts).

    Example::

        @taskq_sdk.job(retries=5)
        def fetch_page(url: str) -> str:
            import httpx

            response = httpx.get(url)
            if response.status_code == 429:
                raise taskq_sdk.Retry(defer=30, reason="rate limited")
            return response.text
    """

    def __init__(self, defer: float | None = None, reason: str = "") -> None:
        self.defer = defer
        self.reason = reason
        super().__init__(reason or (f"retry requested in {defer:g}s" if defer else "retry requested"))


class StopJob(BaseException):
    """Raised inside a job (by ``report_progress``) after it was cancelled or timed out, so work stops.

    It derives from ``BaseException`` so that ``except Exception`` in user code does not swallow it.

    Example::

        report_progress(0.5)   # raises StopJob if the job was cancelled meanwhile
    """


ProgressSink = Callable[["JobContext", dict[str, Any]], None]


class Lease:
    """How long this worker surely still holds a job's claim: a local deadline its claim keeper moves on.

    A claim is a fencing token (``<worker>#<attempt>``) with a TTL on the server. The keeper renews
    it and moves ``until`` (monotonic) to the send time of the renewal plus the TTL, less a margin;
    a job's fence check (``report_progress``) passes while ``until`` is ahead. Once it is behind -
    the process was frozen, or the server was out of reach for longer than the TTL - the check asks
    the keeper to renew now and waits for the answer: the claim still holds (go on), or it is lost
    (the job stops: another worker may run it now).

    Example::

        # not run: worker internals, the claim keeper's lease
        lease = Lease("host:1:ab#1", until=time.monotonic() + 2.5, ask=keeper_wakeup.set)
        lease.wait_valid(timeout=1.0)   # True while the claim holds
    """

    __slots__ = ("_ask", "_changed", "lost", "token", "until")

    def __init__(self, token: str, until: float, ask: Callable[[], None]) -> None:
        self.token = token
        self.until = until
        self.lost = False
        self._ask = ask
        self._changed = threading.Condition()

    def confirm(self, token: str, until: float) -> None:
        """The claim ``token`` holds until ``until`` (ignored when the lease moved to another token)."""
        with self._changed:
            if token == self.token and not self.lost:
                self.until = max(self.until, until)
            self._changed.notify_all()

    def adopt(self, token: str, until: float) -> None:
        """This worker claimed the job again (its own copy still runs): the copy goes on under ``token``."""
        with self._changed:
            self.token, self.until = token, until
            self._changed.notify_all()

    def lose(self, token: str) -> bool:
        """The claim ``token`` is gone; True if that was this lease's claim."""
        with self._changed:
            if token != self.token:
                return False
            self.lost = True
            self._changed.notify_all()
            return True

    def holds(self) -> bool:
        """Whether the claim surely still holds now (no waiting)."""
        return not self.lost and time.monotonic() < self.until

    def wait_valid(self, timeout: float, stop: Callable[[], bool] = lambda: False) -> bool:
        """True once the claim is confirmed; False when it is lost, ``stop()`` is true or ``timeout`` passed."""
        if self.holds():
            return True
        self._ask()
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self.lost and not stop() and time.monotonic() >= self.until:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.1))
        return self.holds()


@dataclass(eq=False)
class JobContext:
    """What a running job knows about itself; reachable with :func:`current_job` inside the job.

    Example::

        @taskq_sdk.job
        def where_am_i() -> tuple[str, int, str]:
            ctx = taskq_sdk.current_job()   # None outside a job
            return ctx.job_id, ctx.attempt, ctx.tenant
    """

    job_id: str
    function: str
    tenant: str
    workspace: str
    attempt: int
    max_tries: int
    loop: asyncio.AbstractEventLoop
    sink: ProgressSink | None = None
    log_limit: int = 1000
    stop_reason: str | None = None
    #: the claim this attempt runs under (None outside a worker, e.g. in tests of job functions)
    lease: Lease | None = None
    #: how long a fence check off the event loop waits for a claim it cannot confirm (outages)
    lease_patience: float = 30.0
    _lease_waited: bool = field(default=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _pending: dict[str, Any] | None = field(default=None, repr=False)
    _last_flush: float = field(default=0.0, repr=False)
    _flush_scheduled: bool = field(default=False, repr=False)
    _logs: deque[str] = field(default_factory=deque, repr=False)
    _logs_unsent: int = field(default=0, repr=False)
    _logs_dropped: int = field(default=0, repr=False)
    _partial: dict[str, str] = field(default_factory=dict, repr=False)  # unfinished printed line, per stream

    @property
    def claim_token(self) -> str | None:
        """This attempt's fencing token (``<worker>#<attempt>``), to tag your own writes with (None outside a worker).

        The attempt number grows with every claim of the job, so a store that keeps only the write
        with the highest attempt refuses a stale copy's late write.

        Example::

            @taskq_sdk.job
            def my_claim() -> str:
                return taskq_sdk.current_job().claim_token   # 'host:42:ab12cd#2'
        """
        return self.lease.token if self.lease is not None else None

    # ------------------------------------------------------------------ progress
    def report(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Record progress (thread-safe); flushed to the server at most 20 times a second."""
        if self.stop_reason is not None:
            raise StopJob(f"job {self.job_id} was {self.stop_reason}")
        lease = self.lease
        if lease is not None:
            if lease.holds():
                self._lease_waited = False
            else:
                self._fence()
        fraction = _fraction(done, total)
        fields: dict[str, Any] = {"p": round(fraction, 6), "pts": int(time.time() * 1000)}
        if total is not None:
            fields["pd"] = float(done)
            fields["pt"] = float(total)
        if message is not None:
            fields["pmsg"] = str(message)[:500]
        with self._lock:
            if self._pending is None:
                self._pending = fields
            else:
                self._pending.update(fields)
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
        delay = max(0.0, self._last_flush + PROGRESS_MIN_INTERVAL - time.monotonic())
        try:
            self.loop.call_soon_threadsafe(self._schedule_flush, delay)
        except RuntimeError:  # loop closed: the worker is shutting down
            pass

    def _fence(self) -> None:
        """The claim may have lapsed (a freeze, an outage): wait until it is confirmed, or stop this copy.

        Off the event loop (sync jobs) it waits up to ``lease_patience``; on the loop (async jobs)
        it may not block the worker, so it waits at most half a second once per lapse, long enough
        for the keeper's answer after a freeze, and goes on during an outage.
        """
        assert self.lease is not None
        on_loop = _on_loop(self.loop)
        if on_loop and self._lease_waited:
            return
        ok = self.lease.wait_valid(0.5 if on_loop else self.lease_patience, lambda: self.stop_reason is not None)
        if self.lease.lost:
            self.stop_reason = self.stop_reason or "claim lost"
        if self.stop_reason is not None:
            raise StopJob(f"job {self.job_id} was {self.stop_reason}: another worker may run it now")
        if not ok and not on_loop:
            self.stop_reason = "claim unconfirmed"
            raise StopJob(
                f"job {self.job_id}: its claim could not be confirmed for {self.lease_patience:.0f}s "
                "(server unreachable); stopping this copy, the job runs again once the server answers"
            )
        self._lease_waited = not ok

    def _schedule_flush(self, delay: float) -> None:
        if delay <= 0:
            self.flush()
        else:
            self.loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """Send pending progress and log lines to the sink (runs on the worker's loop)."""
        with self._lock:
            pending, self._pending = self._pending, None
            self._flush_scheduled = False
            lines: list[str] = []
            if self._logs_unsent:
                lines = list(self._logs)[-self._logs_unsent :]
                self._logs_unsent = 0
        self._last_flush = time.monotonic()
        if self.sink is None or (pending is None and not lines):
            return
        payload = dict(pending or {})
        if lines:
            payload["_logs"] = lines
        self.sink(self, payload)

    # ------------------------------------------------------------------ logs
    def log_line(self, line: str) -> None:
        """Keep one captured output line (the last ``log_limit`` are kept)."""
        if self.log_limit <= 0:
            return
        with self._lock:
            if len(self._logs) >= self.log_limit:
                self._logs.popleft()
                self._logs_dropped += 1
            self._logs.append(line[:2000])
            self._logs_unsent = min(self._logs_unsent + 1, self.log_limit)
            schedule = not self._flush_scheduled
            if schedule:
                self._flush_scheduled = True
        if schedule:
            delay = max(0.0, self._last_flush + 0.25 - time.monotonic())
            try:
                self.loop.call_soon_threadsafe(self._schedule_flush, delay)
            except RuntimeError:
                pass

    def end_output(self) -> None:
        """Keep the job's last printed line even when it did not end with a newline."""
        for prefix, rest in list(self._partial.items()):
            if rest:
                self.log_line(prefix + rest)
        self._partial.clear()

    @property
    def logs(self) -> list[str]:
        """The captured lines so far."""
        with self._lock:
            return list(self._logs)


def bind_job(job: JobContext) -> contextvars.Token[JobContext | None]:
    """Make ``job`` the running job of this context (the wrapper does this around each attempt).

    Example::

        # not run: worker internals, how the engine binds a running job
        token = bind_job(job_ctx)
        try: ...
        finally: unbind_job(token)
    """
    return _current.set(job)


def unbind_job(token: contextvars.Token[JobContext | None]) -> None:
    """Undo :func:`bind_job`."""
    _current.reset(token)


def current_job() -> JobContext | None:
    """The running job's :class:`JobContext`, or ``None`` outside a job.

    Example::

        ctx = current_job()
        if ctx is not None: print(ctx.job_id, ctx.attempt)
    """
    return _current.get()


def _fraction(done: float, total: float | None) -> float:
    if isinstance(done, bool) or not isinstance(done, int | float):
        raise TypeError(f"report_progress(done) takes a number, got {type(done).__name__}")
    if total is None:
        if not 0.0 <= float(done) <= 1.0:
            raise ValueError(
                f"report_progress({done!r}) without total= takes a fraction in [0, 1]; "
                "pass total= to report counts, e.g. report_progress(17, total=250)"
            )
        return float(done)
    if isinstance(total, bool) or not isinstance(total, int | float) or total <= 0:
        raise ValueError(f"report_progress total= must be a positive number, got {total!r}")
    return min(1.0, max(0.0, float(done) / float(total)))


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def report_progress(done: float, total: float | None = None, message: str | None = None) -> bool:
    """Report the running job's progress; a plain call (no ctx, no await), from any thread of the job.

    With ``total``, progress is ``done / total``; without it, ``done`` is a fraction in [0, 1].
    Outside a job it does nothing and returns False, so job functions stay testable as plain
    functions. After the job was cancelled or timed out it raises :class:`StopJob`.

    Example::

        report_progress(0.25, message="downloaded")
        report_progress(17, total=250)
    """
    job = _current.get()
    if job is None:
        _fraction(done, total)  # still validate, so bugs show outside workers too
        return False
    job.report(done, total, message)
    return True


# ---------------------------------------------------------------------------- output capture
class _CaptureHandler(logging.Handler):
    """Copies log records emitted inside a job into that job's captured lines."""

    def emit(self, record: logging.LogRecord) -> None:
        job = _current.get()
        if job is None or record.name.startswith(("taskq_sdk", "arq")):
            return
        try:
            job.log_line(f"{record.levelname} {record.name}: {record.getMessage()}")
        except Exception:  # never let capture break a job
            pass


class _TeeStream(io.TextIOBase):
    """A stdout/stderr stand-in that also copies lines written inside a job to that job."""

    def __init__(self, inner: TextIO, prefix: str) -> None:
        self._inner = inner
        self._prefix = prefix

    def write(self, s: str) -> int:
        job = _current.get()
        if job is not None and s:
            # the unfinished line lives on the job itself: another job can never inherit it
            buf = job._partial.get(self._prefix, "") + s
            *lines, rest = buf.split("\n")
            for line in lines:
                job.log_line(self._prefix + line)
            job._partial[self._prefix] = rest[-2000:]
        return self._inner.write(s)

    def flush(self) -> None:
        self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._inner, "encoding", "utf-8")

    def fileno(self) -> int:
        return self._inner.fileno()


_capture_installed = False


def install_output_capture() -> None:
    """Route log records and prints made inside jobs to their jobs (idempotent; workers call it).

    Also called at each job start: if something replaced ``sys.stdout`` since (a test runner, a
    notebook), the new stream gets wrapped too.
    """
    global _capture_installed
    if not _capture_installed:
        _capture_installed = True
        logging.getLogger().addHandler(_CaptureHandler(level=logging.INFO))
    if not isinstance(sys.stdout, _TeeStream):
        sys.stdout = _TeeStream(sys.stdout, "")
    if not isinstance(sys.stderr, _TeeStream):
        sys.stderr = _TeeStream(sys.stderr, "[stderr] ")


def ensure_output_capture() -> None:
    """Re-wrap ``sys.stdout``/``sys.stderr`` if capture was installed and something replaced them since."""
    if _capture_installed and not isinstance(sys.stdout, _TeeStream):
        install_output_capture()


# ---------------------------------------------------------------------------- errors and retries
_TRANSIENT_ERRNOS = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EPIPE,
}
_TRANSIENT_NAMES = {
    # httpx / httpcore / requests / urllib3 / aiohttp transport failures, matched by class name so
    # that none of those libraries is imported here
    "TransportError",
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "WriteTimeout",
    "PoolTimeout",
    "RemoteProtocolError",
    "ProtocolError",
    "ClientConnectionError",
    "ServerDisconnectedError",
    "ServerTimeoutError",
    "ChunkedEncodingError",
    "DownloadTimeout",
}


def status_code_of(exc: BaseException) -> int | None:
    """The HTTP status an exception carries (``status``, ``status_code`` or ``response.status_code``)."""
    for obj in (exc, getattr(exc, "response", None)):
        for attr in ("status_code", "status", "code"):
            value = getattr(obj, attr, None)
            if isinstance(value, int) and 100 <= value <= 599:
                return value
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether an error is worth retrying: connection and timeout errors, HTTP 5xx, ``Retry``.

    A ``ValueError`` (or any other bug) is not: it fails at once, so notebook bugs show in seconds.

    Example::

        is_transient(ConnectionResetError())   # True
        is_transient(ValueError("bad row"))    # False
    """
    if isinstance(exc, Retry):
        return True
    status = status_code_of(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _TRANSIENT_NAMES:
        return True
    # redis-py's errors do not derive from the builtin ConnectionError / TimeoutError
    return type(exc).__module__.startswith("redis") and bool(names & {"ConnectionError", "TimeoutError"})


def retry_delay_for(attempt: int, base: float, cap: float, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with jitter: ``base * 2**(attempt-1)``, capped, then scaled by 0.5-1.0.

    Example::

        retry_delay_for(1, 60, 3600)   # between 30 and 60 seconds
        retry_delay_for(3, 60, 3600)   # between 120 and 240 seconds
    """
    raw = min(cap, base * (2 ** max(0, attempt - 1)))
    r = (rng or random).uniform(0.5, 1.0)
    return float(raw * r)


def remote_error(
    type_: str, message: str, *, kind: str = "error", details: dict[str, Any] | None = None
) -> RemoteError:
    """A :class:`RemoteError` the SDK itself reports (no traceback): timeouts, cancels, refusals.

    Example::

        remote_error("JobCancelled", "cancelled before it started", kind="cancelled")
    """
    return RemoteError(type=type_, message=message, traceback="", kind=kind, details=dict(details or {}))
