"""Batch handles: :class:`AsyncBatch` (the implementation) and :class:`Batch` (its blocking facade).

``client.map(fn, items)`` returns a :class:`Batch` (``AsyncClient.map``: an :class:`AsyncBatch`).
Its jobs are ordinary jobs; the batch adds counts, progress, results in input order, streaming,
cancel and retry of what failed, and a manifest in Redis so that ``client.batch(batch_id)``
finds it again from another process or after a kernel restart::

    batch = client.map("score", texts, chunk_size=100, key="exp1-run")
    batch.counts()                       # BatchCounts(items=10000, done=2300, failed=3, running=400, ...)
    values = batch.results(timeout=600)  # in input order; raises the first item error
    values = batch.gather(errors="return")   # errors in place, as exceptions
    for i, value in batch.as_completed(): ...
    batch.retry_failed()                 # re-runs only the items that failed
    client.batch("exp1-run").results()   # from a fresh kernel: what finished meanwhile
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from .._backend.envelope import ResultRecord
from .._core import ClientCore, WorkerWatch
from .._portal import Portal, forward_docs
from ..errors import BrokerUnavailable, ConfigurationError, TaskqError, WaitTimeout
from ..handles import AsyncJob, Job
from ..models import JobInfo, JobStatus
from ..plotting import Timeline, TimelineRows
from ..serialization import RemoteError
from ..views.progress import BatchView, make_batch_view
from .counts import ITEM_STATUS, BatchCounts, Rate
from .follow import Follower
from .manifest import BatchManifest, Patches
from .outcomes import ChunkOutcome, item_exception, job_items, row_times
from .writer import resubmit_items

if TYPE_CHECKING:
    import pandas as pd

    from ..client import AsyncClient, Client

__all__ = ["AsyncBatch", "Batch", "ErrorMode", "gather_frame", "retry_items"]

logger = logging.getLogger("taskq_sdk.batch")

ErrorMode = Literal["raise", "skip", "return"]
_ERROR_MODES = ("raise", "skip", "return")
FETCH_GROUP = 200  # chunks whose results are fetched per round trip
STATE_GROUP = 500  # jobs whose states are read per round trip (timeline, timing)
#: a timeline reads the results of batches up to this many items (or with timing=True) for per-row statuses
ROWS_FROM_RESULTS = 20_000

_UNREAD: Any = object()  # "not given": read it from the server

#: a batch's one word (``counts().status``) as the JobStatus ``status()`` answers with, the same type as a job's
BATCH_STATUS = {
    "queued": JobStatus.queued,
    "running": JobStatus.in_progress,
    "complete": JobStatus.complete,
    "partial": JobStatus.failed,  # results() raises, as a failed job's result() does; counts() says how many
    "failed": JobStatus.failed,
    "cancelled": JobStatus.cancelled,
}


# ============================================================================ the async batch
class AsyncBatch:
    """A batch of jobs for ``async`` code: counts, results in input order, streaming, cancel, retry.

    Example::

        batch = await client.map("score", texts, chunk_size=100)
        values = await batch.results(timeout=600)
        async for i, value in batch.as_completed(): ...
    """

    def __init__(
        self,
        core: ClientCore | AsyncClient,
        manifest: BatchManifest,
        patches: Patches | None = None,
        *,
        reused: int = 0,
    ) -> None:
        # (an AsyncClient is accepted for its core, as for AsyncJob)
        self._core: ClientCore = core if isinstance(core, ClientCore) else core.core
        self._m = manifest
        self._patches: Patches = dict(patches or {})
        self._reused = reused
        self._cache: dict[int, ChunkOutcome] = {}
        self._last: BatchCounts | None = None

    # ------------------------------------------------------------------ identity
    @property
    def id(self) -> str:
        """The batch's full id: ``client.batch(batch.id)`` finds it again, also from another process."""
        return self._m.id

    @property
    def key(self) -> str | None:
        """The key it was submitted with (its id, for keyed batches), or ``None``."""
        return self._m.key

    @property
    def function(self) -> str:
        """The job function run once per item."""
        return self._m.function

    @property
    def size(self) -> int:
        """Number of items."""
        return self._m.n_items

    def __len__(self) -> int:
        return self._m.n_items

    def __iter__(self) -> Iterator[AsyncJob]:
        # its jobs, as handles (no server call), like batch.jobs()
        return iter(self.jobs())

    def __await__(self) -> Generator[Any, None, list[Any]]:
        # ``await batch`` is ``await batch.results()``, as ``await job`` is ``await job.result()``
        return self.results().__await__()

    @property
    def n_jobs(self) -> int:
        """Number of jobs (chunks) the items were split into (re-runs not counted)."""
        return self._m.n_jobs

    @property
    def chunk_size(self) -> int:
        """Items per job (1: one job per item); with ``chunk_size="auto"``, the largest chunk chosen."""
        return self._m.chunk_size

    @property
    def chunk_sizes(self) -> list[int]:
        """Items in each job, in order: what ``chunk_size="auto"`` chose (re-runs not counted)."""
        return self._m.sizes()

    @property
    def reused(self) -> int:
        """Jobs that already existed when this batch was submitted (same key, same content): not run again."""
        return self._reused

    @property
    def manifest(self) -> BatchManifest:
        """What is stored about this batch in Redis."""
        return self._m

    @property
    def client(self) -> AsyncClient:
        """The :class:`~taskq_sdk.AsyncClient` this batch belongs to."""
        owner: AsyncClient = self._core.owner
        return owner

    @property
    def core(self) -> ClientCore:
        """The client core this batch works through (see :mod:`taskq_sdk._core`)."""
        return self._core

    @property
    def last_counts(self) -> BatchCounts | None:
        """The counts as last seen by this handle, without a round trip (``None``: never looked)."""
        return self._last

    def job_ids(self) -> list[str]:
        """The ids of the batch's jobs in input order (one per chunk; re-runs not included)."""
        return [self._m.job_id(c) for c in range(self._m.n_jobs)]

    def jobs(self) -> list[AsyncJob]:
        """Handles on the batch's jobs in input order (one per chunk).

        Example::

            first = batch.jobs()[0]; await first.status()
        """
        return [AsyncJob(self._core, jid, known=True) for jid in self.job_ids()]

    def __repr__(self) -> str:
        counts = f" ({self._last})" if self._last is not None else ""
        reused = f" reused={self._reused}" if self._reused else ""
        return f"<{type(self).__name__} {self.id} {self._m.function} items={self._m.n_items}{reused}{counts}>"

    def _repr_html_(self) -> str:
        from ..views.html import batch_html

        return batch_html(self._m, self._last, kind=type(self).__name__)

    # ------------------------------------------------------------------ plumbing
    async def _fetch(
        self,
        follower: Follower,
        chunks: list[int],
        *,
        timing: bool = False,
        infos: dict[str, JobInfo] | None = None,
    ) -> list[ChunkOutcome]:
        """The outcomes of finished chunks, from their jobs' results (one pipelined round trip).

        ``timing``: also each item's times and placement (:class:`RowTimes`; the jobs' states are
        read in one more round trip unless ``infos`` has them).
        """
        jobs: list[tuple[str, int]] = []
        for chunk in chunks:
            jobs.extend(follower.chunk_jobs(chunk))
        blobs = await self._core.call(lambda s: s.batches.results([j for j, _ in jobs]))
        if timing and infos is None:
            infos = await self._infos([j for j, _ in jobs])
        decode = self._core.decode_result
        records: dict[str, tuple[int, ResultRecord | None]] = {}
        for (jid, code), blob in zip(jobs, blobs, strict=True):
            records[jid] = (code, decode(blob) if blob is not None else None)
        m = self._m
        out: list[ChunkOutcome] = []
        for chunk in chunks:
            start, stop = m.bounds(chunk)
            primary = m.job_id(chunk)
            code, record = records[primary]
            values, status, errors = job_items(primary, stop - start, code, record, m.runner)
            attempts = {primary: record.attempt} if record is not None and record.attempt else {}
            times = row_times(stop - start, record, infos.get(primary), runner=m.runner) if infos is not None else None
            job_ids: list[str] | str = primary
            for jid, offsets in self._patches.get(chunk, ()):
                pcode, precord = records[jid]
                pvals, pstatus, perrors = job_items(jid, len(offsets), pcode, precord, m.runner)
                if precord is not None and precord.attempt:
                    attempts[jid] = precord.attempt
                if times is not None and infos is not None:
                    times.lay_over(offsets, row_times(len(offsets), precord, infos.get(jid), runner=m.runner))
                if isinstance(job_ids, str):
                    job_ids = [job_ids] * (stop - start)
                for k, offset in enumerate(offsets):
                    values[offset] = pvals[k]
                    status[offset] = pstatus[k]
                    job_ids[offset] = jid
                    errors.pop(offset, None)
                    if k in perrors:
                        errors[offset] = perrors[k]
            out.append(ChunkOutcome(chunk, start, values, status, errors, job_ids, attempts, times))
        return out

    async def _infos(self, job_ids: list[str]) -> dict[str, JobInfo]:
        """Jobs' infos (worker, attempts, times) by id, from bulk state reads (``Store.states``)."""
        out: dict[str, JobInfo] = {}
        for start in range(0, len(job_ids), STATE_GROUP):
            out.update(await self._infos_of(job_ids[start : start + STATE_GROUP]))
        return out

    async def _infos_of(self, ids: list[str]) -> dict[str, JobInfo]:
        states = await self._core.call(lambda s: s.states(ids))
        return {jid: st.info for jid, st in zip(ids, states, strict=True)}

    def _follower(self, chunks: Sequence[int] | None, *, subscribe: bool = True) -> Follower:
        return Follower(self._core, self._m, self._patches, chunks, subscribe=subscribe)

    def _make_view(self, progress: bool | str | BatchView) -> BatchView | None:
        """The progress view asked for (a view made by the caller, e.g. ``Batch`` in its own thread, as is)."""
        return make_batch_view(progress, self._m, self._cancel_soon)

    def _cancel_soon(self) -> None:
        """Cancel from a widget button: schedule :meth:`cancel` on the client's loop."""
        task = asyncio.ensure_future(self.cancel())
        self._core.track(task)

    async def _rows_failed(self, follower: Follower) -> int:
        """Failed items as known without fetching results: failed jobs, plus the chunk runner's counts."""
        m = self._m
        reported: dict[str, int] = {}
        if m.runner:
            reported = await self._core.call(lambda s: s.batches.rows_failed(m.tenant, m.batch))
        failed = 0
        for chunk in range(m.n_jobs):
            cached = self._cache.get(chunk)
            if cached is not None:
                failed += sum(1 for s in cached.status if s != ord("c"))
                continue
            patches = self._patches.get(chunk)
            if patches:
                jid, offsets = patches[-1]
                code = follower.extra.get(jid, ord("q"))
                size = len(offsets)
            else:
                jid = m.job_id(chunk)
                code = follower.codes[chunk]
                start, stop = m.bounds(chunk)
                size = stop - start
            if code in b"fxle":
                failed += size
            elif jid in reported:
                failed += reported[jid]
        return failed

    async def _stream(
        self,
        *,
        timeout: float | None,
        chunks: Sequence[int] | None = None,
        view: BatchView | None = None,
        cache: bool | None = None,
        timing: bool = False,
    ) -> AsyncIterator[list[ChunkOutcome]]:
        """Finished chunks' outcomes as they finish (cached ones first), until all ``chunks`` are done.

        ``timing``: with each item's times and placement (outcomes cached without them are read again).
        """
        keep = (self._m.kind == "map") if cache is None else cache
        wanted = list(range(self._m.n_jobs)) if chunks is None else sorted(set(chunks))
        usable = {c for c in wanted if c in self._cache and (not timing or self._cache[c].times is not None)}
        cached = [self._cache[c] for c in wanted if c in usable]
        todo = [c for c in wanted if c not in usable]
        failed_seen = sum(sum(1 for s in o.status if s != ord("c")) for o in cached)
        if cached:
            yield cached
        if not todo:
            return
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        started = time.monotonic()
        rate = Rate()
        last_view = 0.0
        outage_since: float | None = None
        watch = WorkerWatch(self._core, f"The wait for batch {self.id}", view)
        async with self._follower(todo) as follower:
            while True:
                ready = follower.settle()
                for start in range(0, len(ready), FETCH_GROUP):
                    outcomes = await self._fetch(follower, ready[start : start + FETCH_GROUP], timing=timing)
                    for o in outcomes:
                        failed_seen += sum(1 for s in o.status if s != ord("c"))
                        if keep:
                            self._cache[o.chunk] = o
                    yield outcomes
                now = time.monotonic()
                if now - last_view >= 0.25 or follower.finished:
                    last_view = now
                    counts = follower.counts(failed_seen, self._reused)
                    if view is not None:
                        counts = rate.measure(counts)
                        view.update(counts)
                    self._last = counts
                    await self._watch_workers(watch, counts)
                if follower.finished:
                    return
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    counts = follower.counts(failed_seen, self._reused)
                    self._last = counts
                    raise _wait_timeout(self.id, round(time.monotonic() - started, 3), counts)
                due_in = watch.due_in()
                try:
                    await follower.wait(remaining if due_in is None else min(remaining or due_in, due_in + 0.05))
                    outage_since = None
                except BrokerUnavailable:
                    outage_since = outage_since or time.monotonic()
                    if time.monotonic() - outage_since > self._core.settings.outage_budget:
                        raise
                    await asyncio.sleep(0.5)

    # ------------------------------------------------------------------ status
    async def counts(self) -> BatchCounts:
        """Items done / failed / running and jobs by status, from one bulk status read.

        Example::

            c = await batch.counts(); c.done, c.failed, c.finished
        """
        async with self._follower(None, subscribe=False) as follower:
            follower.settle()
            failed = await self._rows_failed(follower)
            counts = follower.counts(failed, self._reused)
        self._last = counts
        return counts

    async def status(self) -> JobStatus:
        """The batch's :class:`JobStatus`, the type a job's ``status()`` returns (one bulk read).

        ``queued``, ``in_progress``, ``complete``, ``failed`` (some or all items failed: ``results()``
        raises, like a failed job's) or ``cancelled``. The finer word, with ``partial``, is
        ``counts().status``; how many items did what, the rest of :meth:`counts`.

        Example::

            if await batch.status() is JobStatus.failed:
                print((await batch.counts()).failed, "items failed")
        """
        return BATCH_STATUS[(await self.counts()).status]

    async def done(self) -> bool:
        """True once every job of the batch finished."""
        return (await self.counts()).finished

    async def running(self) -> bool:
        """True while any of the batch's jobs runs on a worker (``concurrent.futures`` name)."""
        return (await self.status()) is JobStatus.in_progress

    async def cancelled(self) -> bool:
        """True if the batch ended cancelled: its unfinished jobs were cancelled (``concurrent.futures`` name)."""
        return (await self.status()) is JobStatus.cancelled

    async def wait(self, timeout: float | None = None, *, progress: bool | str | BatchView = False) -> BatchCounts:
        """Wait until every job finished (results are not fetched); return the final counts.

        Raises :class:`WaitTimeout` after ``timeout`` seconds (the jobs live on).
        ``progress=True`` shows a bar (a live widget in Jupyter, tqdm elsewhere).

        Example::

            counts = await batch.wait(timeout=600, progress=True)
        """
        return await self._wait(timeout, self._make_view(progress))

    async def _wait(self, timeout: float | None, view: BatchView | None) -> BatchCounts:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        started = time.monotonic()
        counts: BatchCounts | None = None
        try:
            async for counts in self._follow(view):
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0 and not counts.finished:
                    raise _wait_timeout(self.id, round(time.monotonic() - started, 3), counts)
            assert counts is not None
            return counts
        finally:
            if view is not None:
                view.close(counts)

    async def _follow(self, view: BatchView | None, every: float = 0.25) -> AsyncIterator[BatchCounts]:
        """Counts every ``every`` seconds (and at the end) until every job finished."""
        rate = Rate()
        watch = WorkerWatch(self._core, f"The wait for batch {self.id}", view)
        async with self._follower(None) as follower:
            last_rf = 0.0
            failed = 0
            while True:
                follower.settle()
                now = time.monotonic()
                if follower.finished or now - last_rf > 1.0:
                    last_rf = now
                    failed = await self._rows_failed(follower)
                counts = rate.measure(follower.counts(failed, self._reused))
                self._last = counts
                if view is not None:
                    view.update(counts)
                await self._watch_workers(watch, counts)
                yield counts
                if follower.finished:
                    return
                until = time.monotonic() + every
                while not follower.finished and time.monotonic() < until:
                    await follower.wait(max(0.0, until - time.monotonic()))
                    follower.settle()

    async def _watch_workers(self, watch: WorkerWatch, counts: BatchCounts) -> None:
        """Once per wait: warn if nothing of the batch runs yet and no live worker serves its function."""
        if watch.due():
            if counts.running or counts.finished:
                watch.checked = True
            else:
                await watch.check(self._m.function, self._m.queue)

    # ------------------------------------------------------------------ results
    async def _collect(self, errors: ErrorMode, timeout: float | None, view: BatchView | None) -> list[Any]:
        if errors not in _ERROR_MODES:
            raise ConfigurationError(f"errors= takes 'raise', 'skip' or 'return', not {errors!r}")
        values: list[Any] = [None] * self._m.n_items
        ok = bytearray(self._m.n_items)
        try:
            async for outcomes in self._stream(timeout=timeout, view=view):
                for o in outcomes:
                    values[o.start : o.start + o.n] = o.values
                    for offset, letter in enumerate(o.status):
                        if letter == ord("c"):
                            ok[o.start + offset] = 1
                            continue
                        if errors == "skip":
                            continue
                        exc = self._item_exception(o, offset)
                        if errors == "raise":
                            raise exc
                        values[o.start + offset] = exc
        finally:
            if view is not None:
                view.close(self._last)
        if errors == "skip":
            return [v for v, good in zip(values, ok, strict=True) if good]
        return values

    def _item_exception(self, o: ChunkOutcome, offset: int) -> Exception:
        job_id, err = o.errors.get(offset) or (
            o.job_id_at(offset),
            RemoteError("RemoteError", f"item status {ITEM_STATUS.get(o.status[offset], '?')}", ""),
        )
        return item_exception(o.start + offset, job_id, err, runner=self._m.runner, attempts=o.attempts.get(job_id))

    async def results(self, timeout: float | None = None, *, progress: bool | str | BatchView = False) -> list[Any]:
        """Every item's result in input order; raises the first item error met (see :meth:`gather`).

        Example::

            values = await batch.results(timeout=600, progress=True)
        """
        return await self._collect("raise", timeout, self._make_view(progress))

    async def gather(
        self, errors: ErrorMode = "raise", timeout: float | None = None, *, progress: bool | str | BatchView = False
    ) -> list[Any]:
        """Every item's result in input order; ``errors`` says what a failed item does.

        ``"raise"``: raise its exception (a :class:`JobFailed` naming the item) as soon as it is
        seen; ``"skip"``: leave it out (the list gets shorter); ``"return"``: put the exception in
        its place.

        Example::

            values = await batch.gather(errors="return")
            failed = [i for i, v in enumerate(values) if isinstance(v, Exception)]
        """
        return await self._collect(errors, timeout, self._make_view(progress))

    async def as_completed(
        self, timeout: float | None = None, *, errors: ErrorMode = "raise"
    ) -> AsyncIterator[tuple[int, Any]]:
        """Yield ``(index, value)`` as items finish, chunk by chunk (``errors`` as in :meth:`gather`).

        Example::

            async for i, value in batch.as_completed(errors="return"):
                print(i, value)
        """
        async for group in self._completed_groups(timeout, errors):
            for pair in group:
                yield pair

    async def _completed_groups(
        self, timeout: float | None, errors: ErrorMode
    ) -> AsyncGenerator[list[tuple[int, Any]], None]:
        """What :meth:`as_completed` yields, a group of chunks at a time (one portal hop per group)."""
        if errors not in _ERROR_MODES:
            raise ConfigurationError(f"errors= takes 'raise', 'skip' or 'return', not {errors!r}")
        async for outcomes in self._stream(timeout=timeout):
            group: list[tuple[int, Any]] = []
            for o in outcomes:
                for offset, letter in enumerate(o.status):
                    if letter == ord("c"):
                        group.append((o.start + offset, o.values[offset]))
                    elif errors == "raise":
                        if group:
                            yield group
                        raise self._item_exception(o, offset)
                    elif errors == "return":
                        group.append((o.start + offset, self._item_exception(o, offset)))
            yield group

    async def errors(self, timeout: float | None = None) -> dict[int, Exception]:
        """The failed items' exceptions by index (waits for the batch to finish).

        Example::

            for i, exc in (await batch.errors()).items(): print(i, exc)
        """
        out: dict[int, Exception] = {}
        async for outcomes in self._stream(timeout=timeout):
            for o in outcomes:
                for offset, letter in enumerate(o.status):
                    if letter != ord("c"):
                        out[o.start + offset] = self._item_exception(o, offset)
        return out

    async def to_frame(
        self, timeout: float | None = None, *, progress: bool | str | BatchView = False, timing: bool | None = None
    ) -> pd.DataFrame:
        """The results as a DataFrame in input order, with ``taskq_status``, ``taskq_error``, ``taskq_job_id``.

        Dict results become columns (prefixed with the function name), other results one column
        named after the function. A DataFrame fan-out's frame comes back on its original index.
        A batch submitted with ``timing=True`` also gets ``taskq_started`` (UTC), ``taskq_duration_s``,
        ``taskq_worker`` and ``taskq_attempts`` per row (``timing=`` here overrides: ``True`` on a
        batch without recorded item times gives the worker and attempts, and times for one-item jobs).

        Example::

            df = await batch.to_frame()
            df[df.taskq_status == "failed"]
        """
        return await self._to_frame(timeout, self._make_view(progress), timing=timing)

    async def _to_frame(
        self,
        timeout: float | None,
        view: BatchView | None,
        *,
        chunks: Sequence[int] | None = None,
        index: Any = _UNREAD,
        timing: bool | None = None,
    ) -> pd.DataFrame:
        """Stream the finished chunks into a frame (``index``: the frame's index, if the caller has it)."""
        from .frame import FrameBuilder

        if index is _UNREAD:
            index = await self._frame_index()
        timed = self._m.timing if timing is None else bool(timing)
        builder = FrameBuilder(self._m, index=index, timing=timed)
        try:
            async for outcomes in self._stream(timeout=timeout, view=view, chunks=chunks, timing=timed):
                for o in outcomes:
                    builder.add(o)
        finally:
            if view is not None:
                view.close(self._last)
        return builder.finish(batch_id=self.id)

    async def _frame_index(self) -> Any:
        if not self._m.frame.get("index"):
            return None
        m = self._m
        blob = await self._core.call(lambda s: s.batches.read_index(m.tenant, m.batch))
        if blob is None:
            return None
        return self._core.codec.loads(blob)

    async def timeline(self) -> Timeline:
        """When each of the batch's jobs ran and on which worker, and per row when each item ran.

        Job states come from bulk reads (``Store.states``, 500 a round trip); the rows of finished
        chunks from their results (per-row times need the batch submitted with ``timing=True``,
        except for one-item jobs; a batch of more than 20,000 items without it is not read: its
        rows take their job's status). ``.rows()`` tabulates the rows, ``.plot()`` draws the task
        stream (matplotlib), and a notebook shows it as a chart by itself.

        Example::

            tl = await batch.timeline(); ax = tl.plot()
            tl.rows().nlargest(3, "duration_s")     # the stragglers
        """
        m = self._m
        ids = self.job_ids() + [jid for entries in self._patches.values() for jid, _ in entries]
        infos = await self._infos(ids)
        rows = TimelineRows()
        # a big batch without timing has no row times to show: its rows take their job's word (no result reads)
        read_results = m.timing or m.n_items <= ROWS_FROM_RESULTS
        async with self._follower(None, subscribe=False) as follower:
            follower.settle()
            done = [c for c in range(m.n_jobs) if c not in follower.open]
            for start in range(0, len(done) if read_results else 0, FETCH_GROUP):
                for o in await self._fetch(follower, done[start : start + FETCH_GROUP], timing=True, infos=infos):
                    _add_rows(rows, o)
            for chunk in range(m.n_jobs):
                if read_results and chunk not in follower.open:
                    continue
                entries = self._patches.get(chunk)
                jid = entries[-1][0] if entries else m.job_id(chunk)
                _add_job_rows(rows, jid, infos.get(jid), *m.bounds(chunk))
        return Timeline([infos[j] for j in ids], rows)

    # ------------------------------------------------------------------ control
    async def cancel(self) -> bool:
        """Cancel every job not yet finished: True if any was cancelled (queued) or stopped (running).

        The same type as a job's ``cancel()``; False when every job had finished already. Items
        that already finished keep their results; how many jobs ended cancelled: ``counts().jobs_cancelled``.

        Example::

            await batch.cancel()
        """
        async with self._follower(None, subscribe=False) as follower:
            todo = [jid for _, jid in follower.unfinished_ids()]
        if not todo:
            return False
        outs = await self._core.call(lambda s: s.cancel_many(todo, self._m.queue))
        return any(o in ("cancelled", "running") for o in outs)

    async def retry_failed(self) -> int:
        """Run again only the items that failed (or were cancelled or lost); return how many.

        The batch then reports the new outcome of those items (``results()``, ``to_frame()``),
        in the same input order. Items still running are left alone.

        Example::

            n = await batch.retry_failed()
            values = await batch.results()
        """
        return await self._retry(None)

    async def _retry(self, positions: Sequence[int] | None) -> int:
        m = self._m
        failed: dict[int, list[int]] = {}
        if positions is not None:
            for pos in sorted({int(p) for p in positions}):
                if not 0 <= pos < m.n_items:
                    raise ConfigurationError(f"item {pos} is not in this batch of {m.n_items} items")
                chunk, offset = m.locate(pos)
                failed.setdefault(chunk, []).append(offset)
        else:
            async with self._follower(None, subscribe=False) as follower:
                follower.settle()
                done = [c for c in range(m.n_jobs) if c not in follower.open]
                outcomes = {c: self._cache[c] for c in done if c in self._cache}
                fetch = [c for c in done if c not in self._cache]
                for start in range(0, len(fetch), FETCH_GROUP):
                    for o in await self._fetch(follower, fetch[start : start + FETCH_GROUP]):
                        outcomes[o.chunk] = o
            for chunk, o in sorted(outcomes.items()):
                offsets = [i for i, s in enumerate(o.status) if s != ord("c")]
                if offsets:
                    failed[chunk] = offsets
        if not failed:
            return 0
        new = await resubmit_items(self._core, self._m, self._patches, failed)
        for chunk, entry in new.items():
            self._patches.setdefault(chunk, []).append(entry)
            self._cache.pop(chunk, None)
        return sum(len(offs) for offs in failed.values())

    # ------------------------------------------------------------------ views
    def widget(self) -> Any:
        """A live ipywidgets view of the batch (status, bar, counts, rate, ETA, Cancel) that updates itself.

        Call it on the client's event loop (in async code); ``Batch.widget()`` from anywhere.

        Example::

            from IPython.display import display
            display(batch.widget())
        """
        from ..views.widgets import WidgetBatchView

        view = WidgetBatchView(self._m, on_cancel=self._cancel_soon)
        self._start_view(view)
        return view.widget

    def _start_view(self, view: BatchView) -> None:
        task = asyncio.ensure_future(self._drive_view(view))
        self._core.track(task)

    async def _drive_view(self, view: BatchView) -> None:
        counts: BatchCounts | None = None
        try:
            async for latest in self._follow(view, every=0.5):
                counts = latest
        except (TaskqError, asyncio.CancelledError):
            pass
        finally:
            view.close(counts)


def _add_rows(rows: TimelineRows, o: ChunkOutcome) -> None:
    times = o.times
    assert times is not None
    for k in range(o.n):
        rows.add(
            o.start + k,
            o.job_id_at(k),
            times.worker[k],
            ITEM_STATUS.get(o.status[k], "pending"),
            times.attempts[k],
            times.started_us[k],
            times.duration_us[k],
        )


def _add_job_rows(rows: TimelineRows, job_id: str, info: JobInfo | None, first: int, stop: int) -> None:
    """Rows known only by their job: its status (``running``/``pending`` until it ends) and worker; a
    finished one-item job's times are its own (a running one is drawn as its job, up to now)."""
    status = info.status.value if info is not None else "pending"
    if status == "in_progress":
        status = "running"
    elif status not in ITEM_STATUS.values():
        status = "pending"
    worker = info.worker if info is not None and status != "pending" else None
    attempts = info.attempts if info is not None else 0
    begin = end = None
    if stop - first == 1 and info is not None and info.started_at is not None and info.finished_at is not None:
        begin = int(info.started_at.timestamp() * 1_000_000)
        end = int(info.finished_at.timestamp() * 1_000_000)
    for pos in range(first, stop):
        rows.add(pos, job_id, worker, status, attempts, begin, None if end is None or begin is None else end - begin)


def _wait_timeout(batch_id: str, waited: float, counts: BatchCounts) -> WaitTimeout:
    exc = WaitTimeout(batch_id, waited, counts.status)
    exc.args = (
        f"Gave up waiting for batch {batch_id} after {waited:g}s: {counts}. The jobs are unaffected: wait "
        f"again, re-attach later with client.batch({batch_id!r}), or cancel them with batch.cancel().",
    )
    return exc


async def _next_group(agen: AsyncGenerator[list[tuple[int, Any]], None]) -> list[tuple[int, Any]] | None:
    try:
        return await agen.__anext__()
    except StopAsyncIteration:
        return None


# ============================================================================ the blocking batch
@forward_docs(AsyncBatch)
class Batch:
    """A batch of jobs for blocking code: the :class:`AsyncBatch` API, each call waiting for its answer.

    Example::

        batch = client.map("score", texts, chunk_size=100, key="exp1")
        batch.wait(progress=True)
        values = batch.results()
        batch.to_frame()
    """

    def __init__(self, abatch: AsyncBatch, client: Client | Portal) -> None:
        self._batch = abatch
        # the handle keeps its client alive: a dropped Client closes its connections and thread
        self._owner = client
        self._portal: Portal = client if isinstance(client, Portal) else client.portal

    @property
    def id(self) -> str:
        return self._batch.id

    @property
    def key(self) -> str | None:
        return self._batch.key

    @property
    def function(self) -> str:
        return self._batch.function

    @property
    def size(self) -> int:
        return self._batch.size

    def __len__(self) -> int:
        return self._batch.size

    def __iter__(self) -> Iterator[Job]:
        # its jobs, as handles (no server call), like batch.jobs()
        return iter(self.jobs())

    @property
    def n_jobs(self) -> int:
        return self._batch.n_jobs

    @property
    def chunk_size(self) -> int:
        return self._batch.chunk_size

    @property
    def chunk_sizes(self) -> list[int]:
        """Items in each job, in order: what ``chunk_size="auto"`` chose (re-runs not counted)."""
        return self._batch.chunk_sizes

    @property
    def reused(self) -> int:
        return self._batch.reused

    @property
    def manifest(self) -> BatchManifest:
        return self._batch.manifest

    @property
    def last_counts(self) -> BatchCounts | None:
        return self._batch.last_counts

    @property
    def async_batch(self) -> AsyncBatch:
        """The underlying :class:`AsyncBatch` (lives on the client's event-loop thread)."""
        return self._batch

    def __repr__(self) -> str:
        return repr(self._batch).replace("<AsyncBatch", "<Batch", 1)

    def _repr_html_(self) -> str:
        from ..views.html import batch_html

        with contextlib.suppress(TaskqError):
            self.counts()
        return batch_html(self.manifest, self.last_counts, kind=type(self).__name__)

    def _view(self, progress: bool | str | BatchView) -> BatchView | bool:
        # made here, in the caller's thread, so a notebook shows it under the running cell
        return make_batch_view(progress, self._batch.manifest, self.cancel) or False

    def job_ids(self) -> list[str]:
        return self._batch.job_ids()

    def jobs(self) -> list[Job]:
        return [Job(j, self._owner) for j in self._batch.jobs()]

    def counts(self) -> BatchCounts:
        return self._portal.call(self._batch.counts)

    def status(self) -> JobStatus:
        return self._portal.call(self._batch.status)

    def done(self) -> bool:
        return self._portal.call(self._batch.done)

    def running(self) -> bool:
        return self._portal.call(self._batch.running)

    def cancelled(self) -> bool:
        return self._portal.call(self._batch.cancelled)

    def timeline(self) -> Timeline:
        return self._portal.call(self._batch.timeline)

    def wait(self, timeout: float | None = None, *, progress: bool | str | BatchView = False) -> BatchCounts:
        return self._portal.call(self._batch.wait, timeout, progress=self._view(progress))

    def results(self, timeout: float | None = None, *, progress: bool | str | BatchView = False) -> list[Any]:
        return self._portal.call(self._batch.results, timeout, progress=self._view(progress))

    def gather(
        self, errors: ErrorMode = "raise", timeout: float | None = None, *, progress: bool | str | BatchView = False
    ) -> list[Any]:
        return self._portal.call(self._batch.gather, errors, timeout, progress=self._view(progress))

    def as_completed(self, timeout: float | None = None, *, errors: ErrorMode = "raise") -> Iterator[tuple[int, Any]]:
        agen = self._batch._completed_groups(timeout, errors)
        try:
            while True:
                group = self._portal.call(_next_group, agen)
                if group is None:
                    return
                yield from group
        finally:
            with contextlib.suppress(Exception):
                self._portal.call(agen.aclose)

    def errors(self, timeout: float | None = None) -> dict[int, Exception]:
        return self._portal.call(self._batch.errors, timeout)

    def to_frame(
        self, timeout: float | None = None, *, progress: bool | str | BatchView = False, timing: bool | None = None
    ) -> pd.DataFrame:
        return self._portal.call(self._batch.to_frame, timeout, progress=self._view(progress), timing=timing)

    def cancel(self) -> bool:
        return self._portal.call(self._batch.cancel)

    def retry_failed(self) -> int:
        return self._portal.call(self._batch.retry_failed)

    def widget(self) -> Any:
        """Blocking: call it from anywhere; the view updates on the client's thread."""
        from ..views.widgets import WidgetBatchView

        view = WidgetBatchView(self._batch.manifest, on_cancel=self.cancel)
        self._portal.call_soon(self._batch._start_view, view)
        return view.widget


# ============================================================================ for the DataFrame fan-out
async def gather_frame(
    batch: AsyncBatch,
    timeout: float | None,
    progress: bool | str | BatchView = False,
    *,
    chunks: Sequence[int] | None = None,
    index: Any = _UNREAD,
) -> pd.DataFrame:
    """A batch's results as a frame, for :mod:`taskq_sdk.pandas`: only ``chunks``, on a known ``index``.

    Example::

        out = await gather_frame(batch, 600, index=df.index)
    """
    return await batch._to_frame(timeout, batch._make_view(progress), chunks=chunks, index=index)


async def retry_items(batch: AsyncBatch, positions: Sequence[int]) -> int:
    """Run the items at ``positions`` again, whatever their status (``rerun_failed`` of a frame)."""
    return await batch._retry(positions)
