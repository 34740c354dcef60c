"""Job handles: :class:`AsyncJob` (the implementation) and :class:`Job` (its blocking facade).

Both speak ``concurrent.futures``: ``done()``, ``cancel()``, ``result(timeout=None)``,
``exception(timeout=None)``, ``add_done_callback(fn)``; plus ``status()``, ``progress()``,
``info()``, ``retry()``, ``logs()`` and ``wait(timeout=None, progress=False)``. ``timeout`` is
always seconds, or ``None`` for forever. ``cancel()`` returns True for running jobs too (the
worker stops them) - unlike ``concurrent.futures``, where running futures cannot be cancelled::

    job = client.submit("add", 1, 2)
    job.wait(progress=True)     # 3
    job.status()                # JobStatus.complete

The same with an ``AsyncClient``::

    ajob = await aclient.submit("add", 1, 2)
    await ajob                  # 3
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from ._backend.store import JobState, ResultRecord
from ._core import ClientCore, Follow, WorkerWatch
from ._portal import Portal, forward_docs
from .errors import (
    BrokerUnavailable,
    ConfigurationError,
    JobCancelled,
    JobFailed,
    JobLost,
    JobNotFound,
    JobTimedOut,
    ResultExpired,
    TaskqError,
    WaitTimeout,
    short_id,
)
from .models import JobInfo, JobStatus, Progress
from .serialization import RemoteError
from .views.progress import ProgressView, make_view

if TYPE_CHECKING:
    from .client import AsyncClient, Client

__all__ = ["AsyncJob", "Job", "exception_for"]

T = TypeVar("T")

# events after which a waiter re-reads the job's state ("started" and "progress" only refresh views)
_STATE_EVENTS = {"done", "retrying", "released", "reconnected", "disconnected"}


def _local_error_class(remote_type: str) -> type[TaskqError] | None:
    from . import errors

    name = remote_type.rsplit(".", 1)[-1]
    if remote_type not in (name, f"taskq_sdk.errors.{name}"):
        return None
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.VideoError):
        return cls
    return None


_combined: dict[type[TaskqError], type[JobFailed]] = {}


def _own_id(core: ClientCore, job_id: Any) -> str:
    """The full id a handle of ``core``'s client may hold for ``job_id``; another tenant's id is not found."""
    full = core.resolve_id(job_id)
    if full is None:
        raise JobNotFound(job_id)
    return full


def exception_for(job_id: str, error: RemoteError, attempts: int | None = None) -> TaskqError:
    """The client-side exception for a job's remote error (``JobFailed`` and friends).

    taskq's own worker-side errors (``DownloadFailed``, ``NotAVideo``, ...) come back as a
    ``JobFailed`` that is *also* an instance of that class, so ``except DownloadFailed`` works.

    Example::

        # not run: internal, how a stored failure becomes an exception
        exc = exception_for(job.id, remote_error)
        isinstance(exc, JobFailed)   # True
    """
    if error.kind == "cancelled" or error.type in ("JobCancelled", "CancelledError", "StopJob"):
        return JobCancelled(job_id, error.message)
    if error.kind == "timeout" or error.type == "JobTimedOut":
        return JobTimedOut(job_id, error.type, error.message, error.traceback, attempts=attempts)
    if error.kind == "lost":
        return JobLost(job_id, error.message, attempts=attempts)
    local = _local_error_class(error.type)
    if local is not None:
        cls = _combined.get(local)
        if cls is None:
            cls = type(local.__name__, (JobFailed, local), {"__module__": "taskq_sdk.errors"})
            _combined[local] = cls
        exc = cls(
            job_id,
            error.type.rsplit(".", 1)[-1],
            error.message,
            error.traceback,
            attempts=attempts,
            details=error.details,
        )
        if "status" in error.details:
            exc.status = error.details["status"]  # type: ignore[attr-defined]
        return exc
    return JobFailed(job_id, error.type, error.message, error.traceback, attempts=attempts, details=error.details)


class AsyncJob:
    """A handle on one job, for ``async`` code; ``await job`` waits for its result.

    Example::

        job = await client.submit("add", 1, 2)
        print(await job.status(), await job)
    """

    def __init__(
        self,
        core: ClientCore | AsyncClient,
        job_id: str,
        *,
        created: bool | None = None,
        known: bool = False,
        state: JobState | None = None,
        follow: Follow | None = None,
        submitted: tuple[str, JobStatus] | None = None,
        cached: bool = False,
    ) -> None:
        # (an AsyncClient is accepted for its core: AsyncJob(client, id) re-attaches like client.job(id))
        self._core: ClientCore = core if isinstance(core, ClientCore) else core.core
        # the tenant check of client.job(id): a bound client's handle names its own tenant's job or none
        self._id = _own_id(self._core, job_id)
        self._created = created
        self._known = known or bool(created)
        self._cached = cached
        self._last: JobState | None = state
        #: (function, status) known from this client's own submit: what the repr shows before any read
        self._submitted = submitted
        self._final: tuple[JobStatus, Any, BaseException | None] | None = None
        self._progress: Progress | None = None  # the latest progress event (no model built per submit)
        self._callbacks: list[asyncio.Task[None]] = []
        follow = follow or Follow()
        self._presub = follow.prepared  # subscribed at submit, adopted by the first wait
        #: the event hub's epoch when this client submitted it with its reply channel (None: it did not)
        self._reply_epoch = follow.reply_epoch

    # ------------------------------------------------------------------ identity
    @property
    def id(self) -> str:
        """The job's full id (tenant-qualified for tenants other than ``default``)."""
        return self._id

    @property
    def job_id(self) -> str:
        """Alias of :attr:`id` (the seed's name)."""
        return self._id

    @property
    def created(self) -> bool | None:
        """False when a submit found this id already taken and returned the existing job."""
        return self._created

    @property
    def cached(self) -> bool:
        """True when the submit ran nothing: an identical call's job (finished, or still running) serves it.

        See :mod:`taskq_sdk.caching` (``@job(cache=True)``, ``_cache=True``).
        """
        return self._cached

    @property
    def client(self) -> AsyncClient:
        """The :class:`~taskq_sdk.AsyncClient` this handle belongs to."""
        owner: AsyncClient = self._core.owner
        return owner

    @property
    def core(self) -> ClientCore:
        """The client core this handle works through (for views and extensions; see :mod:`taskq_sdk._core`)."""
        return self._core

    @property
    def last_info(self) -> JobInfo | None:
        """The job's info as last seen by this handle, without a round trip (``None``: never looked)."""
        return self._last.info if self._last is not None else None

    def __repr__(self) -> str:
        # no server call: the last state read, else what this client's submit wrote, else "?"
        if self._last is not None:
            function, status = self._last.info.function or "", self._last.status.value
        elif self._submitted is not None:
            function, status = self._submitted[0], self._submitted[1].value
        else:
            function, status = "", "?"
        fn = f" {function}" if function else ""
        return f"<AsyncJob {short_id(self._id)}{fn} {status}>"

    def _repr_html_(self) -> str:
        from .views.html import job_html

        return job_html(self._id, self.last_info, kind=type(self).__name__)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        # in a notebook: a live widget (taskq_sdk.views.widgets); elsewhere None, so IPython uses the reprs
        from .views.widgets import job_mimebundle

        return job_mimebundle(self)

    # ------------------------------------------------------------------ state
    async def _state(self, *, with_result: bool = False) -> JobState:
        state = await self._core.fetch_state(self._id, with_result=with_result)
        if state.exists:
            self._known = True
        elif self._known:
            # it existed (we submitted or saw it) and now nothing is left: lost, not "never existed"
            info = self._last.info if self._last else JobInfo(id=self._id, status=JobStatus.lost)
            state = JobState(
                status=JobStatus.lost,
                info=info.model_copy(update={"status": JobStatus.lost}),
                exists=False,
                has_meta=False,
            )
        self._last = state
        if state.info.progress.fraction is not None:
            self._progress = state.info.progress
        return state

    async def status(self) -> JobStatus:
        """The job's current :class:`JobStatus` (one round trip)."""
        if self._final is not None:
            return self._final[0]
        return (await self._state()).status

    async def info(self) -> JobInfo:
        """Function, tenant, workspace, attempts, times, worker, progress and last error."""
        return (await self._state()).info

    async def progress(self) -> Progress:
        """The latest progress the job reported (fraction in 0..1, message, time)."""
        return (await self._state()).info.progress

    async def done(self) -> bool:
        """True once the job finished (complete, failed, cancelled, expired or lost)."""
        return (await self.status()).finished

    async def running(self) -> bool:
        """True while a worker runs the job (``in_progress``; ``concurrent.futures`` name).

        Example::

            if await job.running(): print(await job.progress())
        """
        return (await self.status()) is JobStatus.in_progress

    async def cancelled(self) -> bool:
        """True if the job was cancelled before it finished (``concurrent.futures`` name).

        Example::

            await job.cancel(); await job.cancelled()   # True once the worker stopped it
        """
        return (await self.status()) is JobStatus.cancelled

    async def logs(self, last: int | None = None) -> list[str]:
        """Log records and prints the job produced (captured on the worker, capped)."""
        return await self._core.call(lambda s: s.logs(self._id, last))

    # ------------------------------------------------------------------ waiting
    async def _wait_final(self, timeout: float | None, view: ProgressView | None = None) -> JobState:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        started = time.monotonic()
        outage_since: float | None = None
        fallback = 0.5
        # fast path (no view to feed): read the result envelope directly, first and after each
        # "done" event; the full state (lost / expired / not found) is read on the fallback timer
        # quick only for a handle this client made or looked up (visible to it), not known to be over
        quick = view is None and self._known and (self._last is None or not self._last.status.finished)
        state: JobState | None = None
        hub = await self._core.events()
        prepared, self._presub = self._presub, None
        # submitted by this client while its reply channel was live: the job's state events come
        # there, so no subscription of its own; and if the connection never dropped since, nothing
        # was missed and the first read can be skipped (a view also needs progress: own channel)
        replies = view is None and self._created is True and self._reply_epoch is not None
        live = prepared is not None and prepared.active and not prepared.expired and not prepared.adopted
        # listening before the job existed: its "done" event cannot have been missed, no first read needed
        skip_first_read = quick and self._created is True and live
        if replies:
            skip_first_read = skip_first_read and hub.epoch == self._reply_epoch
        elif prepared is not None and prepared.local:
            hub.release(prepared)  # a view needs the job's own channel (progress events)
            prepared, skip_first_read = None, False
        channel = self._core.layout.job_channel(self._id)
        watch = WorkerWatch(self._core, f"The wait for job {short_id(self._id)}", view)
        async with contextlib.AsyncExitStack() as stack:
            if replies:
                sub = stack.enter_context(hub.local(channel, prepared=prepared))
            else:
                sub = await stack.enter_async_context(hub.subscribe(channel, prepared=prepared))
            while True:
                try:
                    if skip_first_read:
                        skip_first_read = False
                    elif quick:
                        final = await self._quick_final()
                        if final is not None:
                            return final
                    else:
                        state = await self._state(with_result=True)
                    outage_since = None
                except BrokerUnavailable:
                    now = time.monotonic()
                    outage_since = outage_since or now
                    if now - outage_since > self._core.settings.outage_budget:
                        raise
                    await asyncio.sleep(min(1.0, fallback))
                    continue
                if state is not None and not quick:
                    if view is not None:
                        view.update(state.status, state.info.progress)
                    if state.status.finished:
                        return state
                    if state.status is JobStatus.not_found:
                        raise JobNotFound(self._id)
                # wait for a state-changing event; progress events only refresh the view
                while True:
                    remaining = None if deadline is None else deadline - loop.time()
                    if remaining is not None and remaining <= 0:
                        if state is None or quick:
                            state = await self._state()
                            if state.status.finished:
                                return await self._state(with_result=True)
                        raise WaitTimeout(
                            self._id,
                            round(time.monotonic() - started, 3),
                            state.status.value,
                            await self._core.liveness_note(state.info),
                        )
                    if watch.due():
                        await self._watch_workers(watch)
                    wait = fallback if remaining is None else min(remaining, fallback)
                    due_in = watch.due_in()
                    if due_in is not None:
                        wait = min(wait, max(due_in, 0.05))
                    event = await sub.get(timeout=wait)
                    if event is None:
                        fallback = min(fallback * 1.5, 5.0)
                        quick = False
                        break
                    kind = event.get("e")
                    if kind == "progress":
                        p = event.get("p")
                        if isinstance(p, int | float):
                            self._progress = Progress(
                                fraction=min(1.0, max(0.0, float(p))),
                                message=event.get("m"),
                                updated_at=None,
                            )
                            if view is not None:
                                view.update(JobStatus.in_progress, self._progress)
                        continue
                    if kind == "done" and self._known and isinstance(event.get("blob"), bytes):
                        return self._final_from_blob(event["blob"])
                    if kind in _STATE_EVENTS:
                        quick = kind == "done" and view is None and self._known
                        break

    async def _watch_workers(self, watch: WorkerWatch) -> None:
        """Once per wait: warn if the job still waits for a worker and no live one serves it."""
        state = await self._state()
        if state.status in (JobStatus.queued, JobStatus.deferred, JobStatus.retrying):
            await watch.check(state.info.function or "", state.info.queue)
        else:
            watch.checked = True

    async def _quick_final(self) -> JobState | None:
        """The final state read from the result envelope alone, or None if there is no result yet."""
        blob = await self._core.call(lambda s: s.result_blob(self._id))
        if blob is None:
            return None
        return self._final_from_blob(blob)

    def _final_from_blob(self, blob: bytes) -> JobState:
        """The final state from a result envelope (read, or received with the 'done' notice)."""
        record = self._core.decode_result(blob)
        if record.success:
            status = JobStatus.complete
        elif record.error is not None and record.error.kind == "cancelled":
            status = JobStatus.cancelled
        else:
            status = JobStatus.failed
        base = self._last.info if self._last is not None else JobInfo(id=self._id, status=status)
        info = base.model_copy(update={"status": status, "attempts": record.attempt or base.attempts})
        if status is JobStatus.complete:
            info = info.model_copy(
                update={"progress": Progress(fraction=1.0, message=self._progress.message if self._progress else None)}
            )
        state = JobState(status=status, info=info, exists=True, has_meta=False, result_blob=blob, record=record)
        self._known = True
        self._last = state
        return state

    async def _settle(
        self, timeout: float | None, progress: bool | str | ProgressView = False
    ) -> tuple[JobStatus, Any, BaseException | None]:
        if self._final is not None:
            if isinstance(progress, ProgressView):  # made by Job.wait in the caller's thread
                progress.close(self._final[0])
            return self._final
        last = self._last
        # a finished state read with its result (a cache hit's): nothing to wait for, nothing more to read
        if not progress and last is not None and last.status.finished and last.result_blob is not None:
            self._final = await self._outcome(last)
            return self._final
        label = f"{short_id(self._id)}"
        view = make_view(progress, label) if progress else None
        status = JobStatus.not_found
        try:
            state = await self._wait_final(timeout, view)
            status = state.status
            final = await self._outcome(state)
        finally:
            if view is not None:
                view.close(status)
        self._final = final
        return final

    async def _outcome(self, state: JobState) -> tuple[JobStatus, Any, BaseException | None]:
        attempts = state.info.attempts or None
        if state.status is JobStatus.lost:
            return (state.status, None, JobLost(self._id, attempts=attempts))
        if state.status is JobStatus.expired:
            return (state.status, None, ResultExpired(self._id, (state.info.error and "failed") or "complete"))
        record: ResultRecord | None = state.record  # decoded already when it came with the state
        if record is None and state.result_blob is not None:
            record = self._core.decode_result(state.result_blob)
        elif record is None:
            record = await self._core.call(lambda s: s.result(self._id))
        if record is None:
            return (JobStatus.expired, None, ResultExpired(self._id, state.status.value))
        if record.success:
            return (JobStatus.complete, record.value, None)
        assert record.error is not None
        exc = exception_for(self._id, record.error, attempts or record.attempt or None)
        return (state.status, None, exc)

    async def result(self, timeout: float | None = None, *, progress: bool | str | ProgressView = False) -> Any:
        """Wait for the job and return its result, or raise its error.

        Raises :class:`WaitTimeout` if ``timeout`` seconds pass first (the job lives on),
        :class:`JobFailed` (remote type, message, traceback), :class:`JobCancelled`,
        :class:`JobTimedOut`, :class:`ResultExpired`, :class:`JobLost` or :class:`JobNotFound`.

        Example::

            value = await job.result(timeout=60, progress=True)
        """
        _status, value, exc = await self._settle(timeout, progress)
        if exc is not None:
            raise exc
        return value

    async def wait(self, timeout: float | None = None, *, progress: bool | str | ProgressView = False) -> Any:
        """Same as :meth:`result`; ``progress=True`` shows a bar while waiting.

        Example::

            await job.wait(progress=True)
        """
        return await self.result(timeout, progress=progress)

    def __await__(self) -> Generator[Any, None, Any]:
        return self.result().__await__()

    async def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the job; return its error (``None`` if it succeeded)."""
        _status, _value, exc = await self._settle(timeout)
        return exc

    # ------------------------------------------------------------------ control
    async def cancel(self) -> bool:
        """Cancel the job: True if it was queued (removed) or running (the worker stops it).

        False if it already finished or does not exist. Never affects a later job with this id.

        Example::

            await job.cancel()
        """
        return await self._core.cancel(self._id)

    def stream(self) -> AsyncIterator[Any]:
        """The items a generator job yields, as it yields them; ends when the job ends (see :mod:`taskq_sdk.streaming`).

        Blocks on the server between items; a late reader gets every item, in order; a failed or
        cancelled job raises its error after its items. Breaking out early does not stop the job.

        Example::

            job = await client.submit("count_up", 3)     # a generator job
            async for item in job.stream():
                print(item)                               # 0, then 1, then 2
        """
        from .streaming import read_items

        return read_items(self)

    async def retry(self, **overrides: Any) -> AsyncJob:
        """Submit the same call again as a new job linked to this one (``info().retry_of``).

        Right after :meth:`cancel` of a running job it first waits (a few seconds at most, on the
        job's events) for the worker to stop it; a job still running without a cancel request raises.

        Example::

            new = await job.retry()
        """
        new_id, created = await self._core.resubmit(self._id, **overrides)
        return AsyncJob(self._core, new_id, created=created, known=True)

    def add_done_callback(self, fn: Callable[[AsyncJob], Any]) -> None:
        """Call ``fn(job)`` on the client's loop once the job finished (at once if it already has).

        Example::

            job.add_done_callback(lambda j: print("done", j.id))
        """

        async def notify() -> None:
            with contextlib.suppress(Exception):
                await self._settle(None)
            try:
                fn(self)
            except Exception:  # a callback's error must not kill the loop; log it like asyncio does
                import logging

                logging.getLogger("taskq_sdk").exception("done callback %r of job %s raised", fn, self._id)

        task = asyncio.ensure_future(notify())
        self._callbacks.append(task)
        self._core.track(task)


@forward_docs(AsyncJob)
class Job:
    """A handle on one job for blocking code: the :class:`AsyncJob` API, each call waiting for its answer.

    Example::

        job = client.submit("add", 1, 2)
        job.result(timeout=10)      # 3
        job.info().attempts         # 1
    """

    def __init__(self, ajob: AsyncJob, client: Client | Portal) -> None:
        if not isinstance(ajob, AsyncJob):
            raise ConfigurationError(
                f"Job() wraps an AsyncJob, not {type(ajob).__name__}; to re-attach by id use client.job(job_id)"
            )
        core = getattr(client, "async_client", None)
        if core is not None and core.core is not ajob.core:
            # an AsyncJob of another client: re-made on this client's core, under this client's tenant check
            ajob = AsyncJob(core.core, ajob.id)
        self._job = ajob
        # the handle keeps its client alive: a dropped Client closes its connections and thread
        self._owner = client
        self._portal: Portal = client if isinstance(client, Portal) else client.portal

    @property
    def id(self) -> str:
        return self._job.id

    @property
    def job_id(self) -> str:
        return self._job.id

    @property
    def created(self) -> bool | None:
        return self._job.created

    @property
    def cached(self) -> bool:
        return self._job.cached

    @property
    def async_job(self) -> AsyncJob:
        """The underlying :class:`AsyncJob` (lives on the client's event-loop thread)."""
        return self._job

    @property
    def last_info(self) -> JobInfo | None:
        return self._job.last_info

    def __repr__(self) -> str:
        return repr(self._job).replace("<AsyncJob", "<Job", 1)

    def _repr_html_(self) -> str:
        from .views.html import job_html

        return job_html(self.id, self.last_info, kind=type(self).__name__)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        from .views.widgets import job_mimebundle

        return job_mimebundle(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # plain IPython (no notebook): the text repr, after a fresh look, so showing the job again is current
        from .views.widgets import job_text

        printer.text(job_text(self))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def status(self) -> JobStatus:
        return self._portal.call(self._job.status)

    def info(self) -> JobInfo:
        return self._portal.call(self._job.info)

    def progress(self) -> Progress:
        return self._portal.call(self._job.progress)

    def done(self) -> bool:
        return self._portal.call(self._job.done)

    def running(self) -> bool:
        return self._portal.call(self._job.running)

    def cancelled(self) -> bool:
        return self._portal.call(self._job.cancelled)

    def logs(self, last: int | None = None) -> list[str]:
        return self._portal.call(self._job.logs, last)

    def result(self, timeout: float | None = None, *, progress: bool | str | ProgressView = False) -> Any:
        # the view is made here, in the caller's thread, so a notebook shows it under the running cell
        view = (make_view(progress, short_id(self.id)) or False) if progress else False
        return self._portal.call(self._job.result, timeout, progress=view)

    def wait(self, timeout: float | None = None, *, progress: bool | str | ProgressView = False) -> Any:
        return self.result(timeout, progress=progress)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        return self._portal.call(self._job.exception, timeout)

    def cancel(self) -> bool:
        return self._portal.call(self._job.cancel)

    def stream(self) -> Iterator[Any]:
        # one blocking step of the async reader per batch of items; leaving the loop early closes the reader
        from .streaming import read_batches

        reader = read_batches(self._job)
        done: list[Any] = []

        async def step() -> list[Any]:
            try:
                return await reader.__anext__()
            except StopAsyncIteration:
                return done

        try:
            while (batch := self._portal.call(step)) is not done:
                yield from batch
        finally:
            aclose = getattr(reader, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    self._portal.call(aclose)

    def retry(self, **overrides: Any) -> Job:
        return Job(self._portal.call(self._job.retry, **overrides), self._owner)

    def add_done_callback(self, fn: Callable[[Job], Any]) -> None:
        """Blocking facade: ``fn(job)`` runs in a helper thread instead of the loop, so it may block."""
        portal = self._portal
        portal.call_soon(self._job.add_done_callback, lambda _aj: portal.run_in_thread(fn, self))
