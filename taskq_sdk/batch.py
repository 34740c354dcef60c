"""Batches: many jobs submitted together, followed together, gathered in input order.

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

With ``chunk_size > 1`` each job runs a chunk of items through the built-in chunk runner
(:mod:`taskq_sdk.jobs.mapping`), which catches every item's error separately. With a ``key``,
job ids derive from the key, the chunk index and a hash of the chunk's content, so running the
same cell again reuses finished (and still running) work instead of running it twice
(``batch.reused`` says how many jobs were reused).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import msgpack

from ._backend import layout
from ._backend.batches import BatchStore, BulkHeader
from ._backend.store import ResultRecord, Store, now_ms
from ._html import badge, progress_bar, rows_table, seconds_text
from ._names import qualify
from .errors import (
    BrokerUnavailable,
    ConfigurationError,
    JobCancelled,
    JobFailed,
    JobLost,
    ResultExpired,
    TaskqError,
    WaitTimeout,
)
from .handles import AsyncJob, Job, exception_for
from .serialization import RemoteError

if TYPE_CHECKING:
    import pandas as pd

    from ._client_batches import AsyncBatchMethods, BatchFacade

__all__ = ["AsyncBatch", "Batch", "BatchCounts", "BatchManifest", "ErrorMode"]

logger = logging.getLogger("taskq_sdk.batch")

ErrorMode = Literal["raise", "skip", "return"]
_ERROR_MODES = ("raise", "skip", "return")

#: per-job status letters (see ``_backend.batches.BULK_STATUS``); finished ones never change
_FINISHED = frozenset(b"cfxdle")
#: per-item status letters and their names in ``taskq_status`` columns
ITEM_STATUS = {
    ord("c"): "complete",
    ord("f"): "failed",
    ord("x"): "cancelled",
    ord("l"): "lost",
    ord("e"): "expired",
    ord("p"): "pending",
}
_EVENT_CODES = {"started": ord("r"), "complete": ord("c"), "failed": ord("f"), "cancelled": ord("x")}
FETCH_GROUP = 200  # chunks whose results are fetched per round trip
RECHECK_EVERY = 5.0  # seconds between re-reads of unfinished jobs' statuses, events or not
MANIFEST_VERSION = 1


# ============================================================================ manifest
@dataclass
class BatchManifest:
    """What is stored about a batch: its function, chunking and job ids (see ``client.batch``).

    Example::

        m = batch.manifest
        m.n_items, m.chunk_size, m.job_id(0), m.bounds(3)
    """

    batch: str  # the batch id without its tenant prefix
    tenant: str
    function: str  # the user's function, run once per item
    runner: bool  # True: jobs run chunks of items through the chunk runner; False: one job per item
    mode: str  # how the runner calls the function: items, star, series, columns, rows
    n_items: int
    chunk_size: int
    key: str | None
    workspace: str
    queue: str
    timeout: float | None
    max_tries: int | None
    job_ttl_ms: int
    created_ms: int
    hashes: list[str] | None = None  # per job: content hash (keyed batches)
    kind: str = "map"  # "map" or "frame" (a DataFrame fan-out)
    frame: dict[str, Any] = field(default_factory=dict)

    @property
    def n_jobs(self) -> int:
        return -(-self.n_items // self.chunk_size) if self.n_items else 0

    @property
    def id(self) -> str:
        """The batch's full id (tenant-qualified like job ids)."""
        return qualify(self.tenant, self.batch)

    def local_job_id(self, chunk: int) -> str:
        base = f"{self.batch}.{chunk}"
        return f"{base}.{self.hashes[chunk]}" if self.hashes is not None else base

    def job_id(self, chunk: int) -> str:
        """The full id of the job that runs chunk ``chunk`` (item ``chunk`` when unchunked)."""
        return qualify(self.tenant, self.local_job_id(chunk))

    def bounds(self, chunk: int) -> tuple[int, int]:
        start = chunk * self.chunk_size
        return start, min(self.n_items, start + self.chunk_size)

    def chunk_of_job(self, job_id: str) -> int | None:
        """The chunk a primary job id runs, or ``None`` if it is not one of this batch's primary jobs."""
        prefix = qualify(self.tenant, f"{self.batch}.")
        if not job_id.startswith(prefix):
            return None
        rest = job_id[len(prefix) :]
        head, _, tail = rest.partition(".")
        if not head.isdigit():
            return None
        chunk = int(head)
        if chunk >= self.n_jobs:
            return None
        if self.hashes is not None:
            return chunk if tail == self.hashes[chunk] else None
        return chunk if not tail else None

    def encode(self) -> bytes:
        d = {
            "v": MANIFEST_VERSION,
            "batch": self.batch,
            "tenant": self.tenant,
            "function": self.function,
            "runner": self.runner,
            "mode": self.mode,
            "n": self.n_items,
            "chunk": self.chunk_size,
            "key": self.key,
            "ws": self.workspace,
            "queue": self.queue,
            "timeout": self.timeout,
            "max_tries": self.max_tries,
            "job_ttl": self.job_ttl_ms,
            "created": self.created_ms,
            "hashes": "".join(self.hashes) if self.hashes is not None else None,
            "kind": self.kind,
            "frame": self.frame,
        }
        packed: bytes = msgpack.packb(d, use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, blob: bytes) -> BatchManifest:
        d = msgpack.unpackb(blob, raw=False)
        if not isinstance(d, dict) or d.get("v") != MANIFEST_VERSION:
            raise TaskqError("this batch's manifest was written by another taskq version and cannot be read")
        n_items, chunk = int(d["n"]), int(d["chunk"])
        hashes_text = d.get("hashes")
        m = cls(
            batch=str(d["batch"]),
            tenant=str(d["tenant"]),
            function=str(d["function"]),
            runner=bool(d["runner"]),
            mode=str(d["mode"]),
            n_items=n_items,
            chunk_size=chunk,
            key=d.get("key"),
            workspace=str(d["ws"]),
            queue=str(d["queue"]),
            timeout=d.get("timeout"),
            max_tries=d.get("max_tries"),
            job_ttl_ms=int(d["job_ttl"]),
            created_ms=int(d["created"]),
            kind=str(d.get("kind") or "map"),
            frame=dict(d.get("frame") or {}),
        )
        if hashes_text is not None:
            width = len(hashes_text) // m.n_jobs if m.n_jobs else 0
            m.hashes = [hashes_text[i * width : (i + 1) * width] for i in range(m.n_jobs)]
        return m

    def header(self, store: Store, *, function: str, batch_state: str = "queued") -> BulkHeader:
        """The shared part of jobs submitted for this batch later (re-runs)."""
        return BulkHeader(
            queue=self.queue,
            workspace=self.workspace,
            function=function,
            timeout=self.timeout,
            max_tries=self.max_tries,
            state=batch_state,
            score_ms=now_ms(),
            job_ttl_ms=self.job_ttl_ms,
            meta_ttl_ms=self.job_ttl_ms + store.meta_ttl_after_finish_ms,
            batch=self.batch,
        )


Patches = dict[int, list[tuple[str, list[int]]]]


def decode_patches(raw: dict[bytes, bytes]) -> Patches:
    out: Patches = {}
    for k, v in raw.items():
        entries = msgpack.unpackb(v, raw=False)
        out[int(k)] = [(str(jid), [int(o) for o in offs]) for jid, offs in entries]
    return out


def encode_patch_list(entries: list[tuple[str, list[int]]]) -> bytes:
    packed: bytes = msgpack.packb([[jid, offs] for jid, offs in entries], use_bin_type=True)
    return packed


# ============================================================================ counts
@dataclass(frozen=True)
class BatchCounts:
    """How far a batch is: items done / failed / running, and its jobs by status.

    ``failed`` counts items known to have failed (inside chunks, as the chunk runner reported,
    or in failed, cancelled and lost jobs). ``rate`` (items per second) and ``eta`` (seconds)
    are set while a wait or a widget follows the batch.

    Example::

        c = batch.counts()
        f"{c.done}/{c.items} done, {c.failed} failed"; c.finished
    """

    items: int
    done: int
    failed: int
    running: int
    jobs: int
    jobs_queued: int
    jobs_running: int
    jobs_complete: int
    jobs_failed: int
    jobs_cancelled: int
    jobs_lost: int
    reused: int = 0
    rate: float | None = None
    eta: float | None = None

    @property
    def finished(self) -> bool:
        """Every job of the batch finished (complete, failed, cancelled or lost)."""
        return self.done >= self.items

    @property
    def fraction(self) -> float:
        return 1.0 if not self.items else self.done / self.items

    @property
    def pending(self) -> int:
        return self.items - self.done - self.running

    def __str__(self) -> str:
        text = f"{self.done:,}/{self.items:,} items done"
        if self.failed:
            text += f", {self.failed:,} failed"
        if self.running:
            text += f", {self.running:,} running"
        if self.rate:
            text += f", {self.rate:,.0f}/s"
        if self.eta is not None and not self.finished:
            text += f", ETA {seconds_text(self.eta)}"
        return text


# ============================================================================ outcomes
@dataclass
class ChunkOutcome:
    """The finished items of one chunk (one job's items, after any re-runs were laid over them)."""

    chunk: int
    start: int
    values: list[Any]
    status: bytearray  # one ITEM_STATUS letter per item
    errors: dict[int, tuple[str, RemoteError]]  # offset -> (job id, error)
    job_ids: list[str] | str  # per item, or one id for all items
    attempts: dict[str, int] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.values)

    def job_id_at(self, offset: int) -> str:
        return self.job_ids if isinstance(self.job_ids, str) else self.job_ids[offset]


def _lost_error(kind: str) -> RemoteError:
    if kind == "lost":
        return RemoteError("JobLost", "the job vanished before it finished", "", kind="lost")
    return RemoteError("ResultExpired", "the job finished but its result has expired", "", kind="expired")


def _job_items(
    job_id: str, n: int, code: int, record: ResultRecord | None, runner: bool
) -> tuple[list[Any], bytearray, dict[int, tuple[str, RemoteError]]]:
    """Values, item statuses and item errors of one finished job with ``n`` items."""
    if record is None:
        kind = "lost" if code == ord("l") else "expired"
        err = _lost_error(kind)
        letter = ord("l") if kind == "lost" else ord("e")
        return [None] * n, bytearray([letter]) * n, dict.fromkeys(range(n), (job_id, err))
    if not record.success:
        err = record.error or RemoteError("RemoteError", "unknown error", "")
        letter = ord("x") if err.kind == "cancelled" else ord("l") if err.kind == "lost" else ord("f")
        return [None] * n, bytearray([letter]) * n, dict.fromkeys(range(n), (job_id, err))
    if not runner:
        return [record.value], bytearray(b"c"), {}
    value = record.value
    if not isinstance(value, dict) or not isinstance(value.get("v"), list) or len(value["v"]) != n:
        err = RemoteError("ResultError", f"the chunk job returned a malformed result for {n} items", "")
        return [None] * n, bytearray(b"f") * n, dict.fromkeys(range(n), (job_id, err))
    status = bytearray(b"c") * n
    errors: dict[int, tuple[str, RemoteError]] = {}
    for offset, err in value.get("e") or ():
        if not isinstance(err, RemoteError):
            err = RemoteError("RemoteError", str(err), "")
        status[int(offset)] = ord("f")
        errors[int(offset)] = (job_id, err)
    values: list[Any] = value["v"]
    return values, status, errors


def item_exception(
    index: int, job_id: str, err: RemoteError, *, runner: bool, attempts: int | None = None
) -> Exception:
    """The exception describing item ``index``'s failure (``JobFailed`` and friends)."""
    if err.kind == "expired":
        return ResultExpired(job_id)
    if err.kind == "lost" and err.type == "JobLost":
        return JobLost(job_id, attempts=attempts)
    if not runner or err.kind in ("cancelled", "timeout", "lost"):
        exc = exception_for(job_id, err, attempts)
        if isinstance(exc, JobCancelled | JobFailed):
            exc.item = index  # type: ignore[union-attr]
        return exc
    failed = JobFailed(
        job_id,
        err.type,
        f"item {index}: {err.message}",
        err.traceback,
        details=err.details,
        hint="Re-run the failed items with batch.retry_failed(); batch.gather(errors='return') returns the rest.",
    )
    failed.item = index  # type: ignore[attr-defined]
    return failed


# ============================================================================ following
class _Follower:
    """Knows the status of a batch's jobs: one bulk snapshot, then the batch's event channel.

    A missed event is covered by a re-check of unfinished jobs when the channel stays quiet.
    """

    def __init__(self, batch: AsyncBatch, chunks: Sequence[int] | None, *, subscribe: bool = True) -> None:
        self.batch = batch
        self.subscribe = subscribe
        m = batch.manifest
        self.m = m
        self.chunks = list(range(m.n_jobs)) if chunks is None else sorted(set(chunks))
        if chunks is None:
            self.codes = bytearray(b"q") * m.n_jobs
        else:  # chunks outside the ones followed are finished already (cached) or not of interest
            self.codes = bytearray(b"c") * m.n_jobs
            for c in self.chunks:
                self.codes[c] = ord("q")
        self.extra: dict[str, int] = {}
        self.extra_chunk: dict[str, int] = {}
        self.candidates: set[int] = set(self.chunks)
        self.open: set[int] = set(self.chunks)
        self._wanted = set(self.chunks)
        self.sync_patches()
        self.quiet = 0.5
        self._sub: Any = None
        self._cm: Any = None
        self.started = time.monotonic()
        self.last_snapshot = 0.0

    async def __aenter__(self) -> _Follower:
        if self.subscribe:
            hub = await self.batch._client._event_hub()
            self._cm = hub.subscribe(layout.batch_channel(self.m.tenant, self.m.batch))
            self._sub = await self._cm.__aenter__()
        try:
            await self.snapshot()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._cm is not None:
            await self._cm.__aexit__(None, None, None)

    def _set(self, chunk: int | None, jid: str | None, code: int) -> None:
        if chunk is not None:
            old = self.codes[chunk]
            if old in _FINISHED:
                return
            self.codes[chunk] = code
        elif jid is not None:
            old = self.extra[jid]
            if old in _FINISHED:
                return
            self.extra[jid] = code
            chunk = self.extra_chunk[jid]
        else:
            return
        if code in _FINISHED:
            self.candidates.add(chunk)

    def unfinished_ids(self) -> list[tuple[int | None, str]]:
        out: list[tuple[int | None, str]] = [
            (c, self.m.job_id(c)) for c in self.chunks if self.codes[c] not in _FINISHED
        ]
        wanted = self._wanted
        out += [(None, j) for j, code in self.extra.items() if code not in _FINISHED and self.extra_chunk[j] in wanted]
        return out

    def sync_patches(self) -> None:
        """Follow re-runs added since (``retry_failed`` while this follower runs): their chunks reopen."""
        for chunk, entries in self.batch._patches.items():
            for jid, _ in entries:
                if jid not in self.extra:
                    self.extra[jid] = ord("q")
                    self.extra_chunk[jid] = chunk
                    if chunk in self._wanted:
                        self.open.add(chunk)

    async def snapshot(self) -> None:
        self.sync_patches()
        self.last_snapshot = time.monotonic()
        todo = self.unfinished_ids()
        if not todo:
            return
        codes = await self.batch._bstore_call(lambda b: b.statuses([j for _, j in todo]))
        for (chunk, jid), code in zip(todo, codes, strict=True):
            self._set(chunk, None if chunk is not None else jid, code)

    def apply(self, event: dict[str, Any]) -> bool:
        """Apply one event; True if it may change what is finished or running."""
        kind = event.get("e")
        if kind in ("reconnected", "disconnected"):
            self.quiet = 0.0
            return False
        jid = event.get("id")
        if not isinstance(jid, str):
            return False
        if kind == "retried":
            code = ord("q")
        else:
            code = _EVENT_CODES.get(str(kind), 0)
            if not code:
                return False
        chunk = self.m.chunk_of_job(jid)
        if chunk is not None:
            if code == ord("q") and self.codes[chunk] not in _FINISHED:
                self.codes[chunk] = code
            else:
                self._set(chunk, None, code)
            return True
        if jid not in self.extra:
            self.sync_patches()
        if jid in self.extra:
            if code == ord("q") and self.extra[jid] not in _FINISHED:
                self.extra[jid] = code
            else:
                self._set(None, jid, code)
            return True
        return False

    async def wait(self, timeout: float | None) -> None:
        """Wait for events (applied as they come), or re-check unfinished jobs after a quiet spell."""
        assert self._sub is not None
        wait = self.quiet if timeout is None else min(self.quiet, max(0.0, timeout))
        event = await self._sub.get(timeout=wait) if wait > 0 else None
        if event is None:
            if timeout is None or timeout >= self.quiet:
                self.quiet = min(max(self.quiet, 0.25) * 1.5, 5.0)
                await self.snapshot()
            return
        self.quiet = 0.5
        self.apply(event)
        for ev in self._sub.drain():
            self.apply(ev)
        if time.monotonic() - self.last_snapshot > RECHECK_EVERY:
            await self.snapshot()  # a busy channel must not hide a missed event for ever

    def chunk_jobs(self, chunk: int) -> list[tuple[str, int]]:
        jobs = [(self.m.job_id(chunk), self.codes[chunk])]
        jobs += [(jid, self.extra.get(jid, ord("q"))) for jid, _ in self.batch._patches.get(chunk, ())]
        return jobs

    def chunk_finished(self, chunk: int) -> bool:
        return all(code in _FINISHED for _, code in self.chunk_jobs(chunk))

    def settle(self) -> list[int]:
        """Chunks that finished since the last call (in chunk order)."""
        ready = sorted(c for c in self.candidates if c in self.open and self.chunk_finished(c))
        self.candidates.clear()
        self.open.difference_update(ready)
        return ready

    @property
    def finished(self) -> bool:
        return not self.open

    def counts(self, failed_items: int, reused: int) -> BatchCounts:
        """Counts from the job statuses known now (C-speed counting: cheap for 100k jobs)."""
        m = self.m
        codes = self.codes
        per = {letter: codes.count(ord(letter)) for letter in "qrcfxdle"}
        by = {"q": per["q"], "r": per["r"], "c": per["c"] + per["d"], "f": per["f"], "x": per["x"]}
        by["l"] = per["l"] + per["e"]
        size = m.chunk_size
        done = (m.n_jobs - per["q"] - per["r"]) * size
        running = per["r"] * size

        def take_back(code: int, n: int) -> tuple[int, int]:
            if code in _FINISHED:
                return n, 0
            return (0, n) if code == ord("r") else (0, 0)

        if m.n_jobs:
            last = m.n_jobs - 1
            short = size - (m.n_items - last * size)
            if short:
                d, r = take_back(self.codes[last], short)
                done, running = done - d, running - r
        for chunk in self.batch._patches:
            if chunk >= m.n_jobs:
                continue
            start, stop = m.bounds(chunk)
            d, r = take_back(self.codes[chunk], stop - start)
            done, running = done - d, running - r
            jobs = self.chunk_jobs(chunk)
            for _, code in jobs[1:]:
                letter = chr(code)
                by["c" if letter == "d" else "l" if letter == "e" else letter] += 1
            if all(code in _FINISHED for _, code in jobs):
                done += stop - start
            elif any(code == ord("r") for _, code in jobs):
                running += stop - start
        return BatchCounts(
            items=m.n_items,
            done=done,
            failed=failed_items,
            running=running,
            jobs=sum(by.values()),
            jobs_queued=by["q"],
            jobs_running=by["r"],
            jobs_complete=by["c"],
            jobs_failed=by["f"],
            jobs_cancelled=by["x"],
            jobs_lost=by["l"],
            reused=reused,
        )


# ============================================================================ views
class BatchView:
    """Something that shows a batch's progress while a wait blocks (a tqdm bar or a widget)."""

    def update(self, counts: BatchCounts) -> None:  # pragma: no cover - protocol
        raise NotImplementedError

    def close(self, counts: BatchCounts | None) -> None:  # pragma: no cover - protocol
        raise NotImplementedError


class _Rate:
    """Items per second and ETA from the items done since the view started."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.done0: int | None = None

    def measure(self, counts: BatchCounts) -> BatchCounts:
        if self.done0 is None:
            self.done0 = counts.done
            self.t0 = time.monotonic()
        elapsed = time.monotonic() - self.t0
        gained = counts.done - self.done0
        rate = gained / elapsed if elapsed > 0.2 and gained > 0 else None
        eta = (counts.items - counts.done) / rate if rate else None
        return BatchCounts(**{**counts.__dict__, "rate": rate, "eta": eta})


class TqdmBatchView(BatchView):
    """A tqdm bar over the batch's items (notebook flavour in Jupyter, terminal elsewhere).

    Example::

        view = TqdmBatchView("batch exp1 · score", total=10_000)
    """

    def __init__(self, label: str, total: int, *, notebook: bool | None = None) -> None:
        from .progress import tqdm_class

        self._bar = tqdm_class(notebook)(total=total, desc=label, unit="item", leave=True, smoothing=0.1)
        self._last = 0

    def update(self, counts: BatchCounts) -> None:
        post = []
        if counts.failed:
            post.append(f"{counts.failed:,} failed")
        if counts.running:
            post.append(f"{counts.running:,} running")
        self._bar.set_postfix_str(", ".join(post), refresh=False)
        if counts.done > self._last:
            self._bar.update(counts.done - self._last)
            self._last = counts.done

    def close(self, counts: BatchCounts | None) -> None:
        if counts is not None:
            self.update(counts)
        self._bar.close()


_COLORS = {
    "complete": "#16a34a",
    "failed": "#dc2626",
    "running": "#2563eb",
    "queued": "#6b7280",
    "cancelled": "#9ca3af",
    "partial": "#d97706",
}


def batch_status(counts: BatchCounts) -> str:
    """One word for a batch: queued, running, complete, partial (finished with failures), cancelled."""
    if not counts.finished:
        return "running" if counts.running or counts.done else "queued"
    if counts.failed == 0:
        return "complete"
    if (
        counts.jobs_cancelled
        and counts.jobs_cancelled + counts.jobs_complete == counts.jobs
        and not (counts.jobs_failed or counts.jobs_lost)
    ):
        return "cancelled"
    return "partial" if counts.failed < counts.items else "failed"


def batch_html(manifest: BatchManifest, counts: BatchCounts | None, *, kind: str = "Batch", note: str = "") -> str:
    """A batch's HTML card: id, function, status, a bar, items done / failed / running, jobs."""
    e = html.escape
    title = f"<code>{e(kind)}</code> <b>{e(manifest.id)}</b>"
    fn = f"<code>{e(manifest.function)}</code> over {manifest.n_items:,} items"
    if manifest.runner:
        fn += f" in {manifest.n_jobs:,} chunks of {manifest.chunk_size:,}"
    rows = [("function", fn)]
    if counts is None:
        rows.append(("status", "unknown (call <code>counts()</code>)"))
    else:
        status = batch_status(counts)
        color = _COLORS.get(status, "#6b7280")
        bar = progress_bar(counts.fraction, color)
        rows += [("status", badge(status, color)), ("progress", bar), ("items", e(str(counts)))]
        jobs = (
            f"{counts.jobs:,} jobs: {counts.jobs_complete:,} complete, {counts.jobs_running:,} running, "
            f"{counts.jobs_queued:,} queued"
        )
        for label, n in (
            ("failed", counts.jobs_failed),
            ("cancelled", counts.jobs_cancelled),
            ("lost", counts.jobs_lost),
        ):
            if n:
                jobs += f", {n:,} {label}"
        rows.append(("jobs", e(jobs)))
        if counts.reused:
            rows.append(("reused", e(f"{counts.reused:,} jobs already submitted with key {manifest.key!r}")))
    foot = f'<div style="font-size:11px;color:#6b7280">{e(note)}</div>' if note else ""
    return f'<div class="taskq-batch">{title}{rows_table(rows)}{foot}</div>'


class WidgetBatchView(BatchView):
    """A live ipywidgets view: status, bar, items done / failed / running, rate, ETA and Cancel.

    Example::

        view = WidgetBatchView(batch)   # display(view.widget)
    """

    def __init__(self, manifest: BatchManifest, on_cancel: Callable[[], Any] | None = None) -> None:
        try:
            import ipywidgets as w
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError('live batch widgets need ipywidgets: pip install "taskq-sdk[notebook]"') from exc
        self._m = manifest
        self.title = w.HTML(
            f"<b>Batch</b> <code>{html.escape(manifest.id)}</code> · <code>{html.escape(manifest.function)}</code>"
            f" · {manifest.n_items:,} items"
        )
        if manifest.key:
            self.title.value += f" · key <code>{html.escape(manifest.key)}</code>"
        self.status = w.HTML(_badge("queued"))
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, layout=w.Layout(width="320px"))
        self.label = w.HTML("")
        self.cancel = w.Button(description="Cancel", button_style="danger", layout=w.Layout(width="80px"))
        if on_cancel is not None:
            self.cancel.on_click(lambda _b: on_cancel())
        else:
            self.cancel.disabled = True
        self.widget = w.VBox([self.title, w.HBox([self.status, self.bar, self.cancel]), self.label])

    def update(self, counts: BatchCounts) -> None:
        status = batch_status(counts)
        self.status.value = _badge(status)
        self.bar.value = counts.fraction
        self.bar.bar_style = {"complete": "success", "failed": "danger", "partial": "warning"}.get(status, "info")
        reused = f" · {counts.reused:,} jobs reused (already submitted with this key)" if counts.reused else ""
        self.label.value = html.escape(str(counts) + reused)
        if counts.finished:
            self.cancel.disabled = True

    def close(self, counts: BatchCounts | None) -> None:
        if counts is not None:
            self.update(counts)
        self.cancel.disabled = True


def _badge(status: str) -> str:
    return badge(status, _COLORS.get(status, "#6b7280"))


_UNREAD: Any = object()  # "not given": read it from the server


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
        client: AsyncBatchMethods,
        manifest: BatchManifest,
        patches: Patches | None = None,
        *,
        reused: int = 0,
    ) -> None:
        self._client = client
        self._m = manifest
        self._patches: Patches = dict(patches or {})
        self._reused = reused
        self._cache: dict[int, ChunkOutcome] = {}
        self._last: BatchCounts | None = None
        self._bstore: BatchStore | None = None

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

    @property
    def n_jobs(self) -> int:
        """Number of jobs (chunks) the items were split into (re-runs not counted)."""
        return self._m.n_jobs

    @property
    def chunk_size(self) -> int:
        return self._m.chunk_size

    @property
    def reused(self) -> int:
        """Jobs that already existed when this batch was submitted (same key, same content): not run again."""
        return self._reused

    @property
    def manifest(self) -> BatchManifest:
        """What is stored about this batch in Redis."""
        return self._m

    @property
    def client(self) -> AsyncBatchMethods:
        return self._client

    def job_ids(self) -> list[str]:
        """The ids of the batch's jobs in input order (one per chunk; re-runs not included)."""
        return [self._m.job_id(c) for c in range(self._m.n_jobs)]

    def jobs(self) -> list[AsyncJob]:
        """Handles on the batch's jobs in input order (one per chunk).

        Example::

            first = batch.jobs()[0]; await first.status()
        """
        return [AsyncJob(self._client, jid, known=True) for jid in self.job_ids()]

    def __repr__(self) -> str:
        counts = f" ({self._last})" if self._last is not None else ""
        reused = f" reused={self._reused}" if self._reused else ""
        return f"<{type(self).__name__} {self.id} {self._m.function} items={self._m.n_items}{reused}{counts}>"

    def _repr_html_(self) -> str:
        return batch_html(self._m, self._last, kind=type(self).__name__)

    # ------------------------------------------------------------------ plumbing
    async def _bstore_call(self, fn: Callable[[BatchStore], Any], what: str = "reach") -> Any:
        async def call(store: Store) -> Any:
            if self._bstore is None or self._bstore.redis is not store.redis:
                self._bstore = BatchStore(store.redis)
            return await fn(self._bstore)

        return await self._client._store_call(call, what)

    async def _fetch(self, follower: _Follower, chunks: list[int]) -> list[ChunkOutcome]:
        """The outcomes of finished chunks, from their jobs' results (one pipelined round trip)."""
        jobs: list[tuple[str, int]] = []
        for chunk in chunks:
            jobs.extend(follower.chunk_jobs(chunk))
        blobs = await self._bstore_call(lambda b: b.results([j for j, _ in jobs]))
        store = self._client._open()
        records: dict[str, tuple[int, ResultRecord | None]] = {}
        for (jid, code), blob in zip(jobs, blobs, strict=True):
            records[jid] = (code, store.decode_result(blob) if blob is not None else None)
        m = self._m
        out: list[ChunkOutcome] = []
        for chunk in chunks:
            start, stop = m.bounds(chunk)
            primary = m.job_id(chunk)
            code, record = records[primary]
            values, status, errors = _job_items(primary, stop - start, code, record, m.runner)
            attempts = {primary: record.attempt} if record is not None and record.attempt else {}
            job_ids: list[str] | str = primary
            for jid, offsets in self._patches.get(chunk, ()):
                pcode, precord = records[jid]
                pvals, pstatus, perrors = _job_items(jid, len(offsets), pcode, precord, m.runner)
                if precord is not None and precord.attempt:
                    attempts[jid] = precord.attempt
                if isinstance(job_ids, str):
                    job_ids = [job_ids] * (stop - start)
                for k, offset in enumerate(offsets):
                    values[offset] = pvals[k]
                    status[offset] = pstatus[k]
                    job_ids[offset] = jid
                    errors.pop(offset, None)
                    if k in perrors:
                        errors[offset] = perrors[k]
            out.append(ChunkOutcome(chunk, start, values, status, errors, job_ids, attempts))
        return out

    def _make_view(self, progress: bool | str, on_cancel: Callable[[], Any] | None) -> BatchView | None:
        """The progress view asked for, created (and displayed) in the calling thread."""
        if progress is False or progress in ("none", ""):
            return None
        label = f"{self._m.function} ({self._m.batch[:16]})"
        if progress == "widget" or (progress in (True, "auto") and _widgets_wanted()):
            try:
                view = WidgetBatchView(self._m, on_cancel=on_cancel)
            except ImportError:
                if progress == "widget":
                    raise
                return TqdmBatchView(label, self._m.n_items)
            from IPython.display import display

            display(view.widget)  # type: ignore[no-untyped-call]
            return view
        if progress in (True, "auto", "tqdm", "notebook"):
            return TqdmBatchView(label, self._m.n_items, notebook=True if progress == "notebook" else None)
        raise ConfigurationError(f"progress= takes True, False, 'tqdm', 'notebook' or 'widget', not {progress!r}")

    def _cancel_soon(self) -> None:
        """Cancel from a widget button: schedule :meth:`cancel` on the client's loop."""
        task = asyncio.ensure_future(self.cancel())
        self._client._track(task)

    async def _rows_failed(self, follower: _Follower) -> int:
        """Failed items as known without fetching results: failed jobs, plus the chunk runner's counts."""
        m = self._m
        reported: dict[str, int] = {}
        if m.runner:
            reported = await self._bstore_call(lambda b: b.rows_failed(m.tenant, m.batch))
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
    ) -> AsyncIterator[list[ChunkOutcome]]:
        """Finished chunks' outcomes as they finish (cached ones first), until all ``chunks`` are done."""
        keep = (self._m.kind == "map") if cache is None else cache
        wanted = list(range(self._m.n_jobs)) if chunks is None else sorted(set(chunks))
        cached = [self._cache[c] for c in wanted if c in self._cache]
        todo = [c for c in wanted if c not in self._cache]
        failed_seen = sum(sum(1 for s in o.status if s != ord("c")) for o in cached)
        if cached:
            yield cached
        if not todo:
            return
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        started = time.monotonic()
        rate = _Rate()
        last_view = 0.0
        outage_since: float | None = None
        async with _Follower(self, todo) as follower:
            while True:
                ready = follower.settle()
                for start in range(0, len(ready), FETCH_GROUP):
                    outcomes = await self._fetch(follower, ready[start : start + FETCH_GROUP])
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
                if follower.finished:
                    return
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    counts = follower.counts(failed_seen, self._reused)
                    self._last = counts
                    raise _wait_timeout(self.id, round(time.monotonic() - started, 3), counts)
                try:
                    await follower.wait(remaining)
                    outage_since = None
                except BrokerUnavailable:
                    outage_since = outage_since or time.monotonic()
                    if time.monotonic() - outage_since > self._client.settings.outage_budget:
                        raise
                    await asyncio.sleep(0.5)

    # ------------------------------------------------------------------ status
    async def counts(self) -> BatchCounts:
        """Items done / failed / running and jobs by status, from one bulk status read.

        Example::

            c = await batch.counts(); c.done, c.failed, c.finished
        """
        async with _Follower(self, None, subscribe=False) as follower:
            follower.settle()
            failed = await self._rows_failed(follower)
            counts = follower.counts(failed, self._reused)
        self._last = counts
        return counts

    async def status(self) -> str:
        """One word: queued, running, complete, partial (finished, some items failed), failed, cancelled."""
        return batch_status(await self.counts())

    async def done(self) -> bool:
        """True once every job of the batch finished."""
        return (await self.counts()).finished

    async def wait(self, timeout: float | None = None, *, progress: bool | str = False) -> BatchCounts:
        """Wait until every job finished (results are not fetched); return the final counts.

        Raises :class:`WaitTimeout` after ``timeout`` seconds (the jobs live on).
        ``progress=True`` shows a bar (a live widget in Jupyter, tqdm elsewhere).

        Example::

            counts = await batch.wait(timeout=600, progress=True)
        """
        return await self._wait(timeout, self._make_view(progress, self._cancel_soon))

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
        rate = _Rate()
        async with _Follower(self, None) as follower:
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
                yield counts
                if follower.finished:
                    return
                until = time.monotonic() + every
                while not follower.finished and time.monotonic() < until:
                    await follower.wait(max(0.0, until - time.monotonic()))
                    follower.settle()

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

    async def results(self, timeout: float | None = None, *, progress: bool | str = False) -> list[Any]:
        """Every item's result in input order; raises the first item error met (see :meth:`gather`).

        Example::

            values = await batch.results(timeout=600, progress=True)
        """
        return await self._collect("raise", timeout, self._make_view(progress, self._cancel_soon))

    async def gather(
        self, errors: ErrorMode = "raise", timeout: float | None = None, *, progress: bool | str = False
    ) -> list[Any]:
        """Every item's result in input order; ``errors`` says what a failed item does.

        ``"raise"``: raise its exception (a :class:`JobFailed` naming the item) as soon as it is
        seen; ``"skip"``: leave it out (the list gets shorter); ``"return"``: put the exception in
        its place.

        Example::

            values = await batch.gather(errors="return")
            failed = [i for i, v in enumerate(values) if isinstance(v, Exception)]
        """
        return await self._collect(errors, timeout, self._make_view(progress, self._cancel_soon))

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

    async def to_frame(self, timeout: float | None = None, *, progress: bool | str = False) -> pd.DataFrame:
        """The results as a DataFrame in input order, with ``taskq_status``, ``taskq_error``, ``taskq_job_id``.

        Dict results become columns (prefixed with the function name), other results one column
        named after the function. A DataFrame fan-out's frame comes back on its original index.

        Example::

            df = await batch.to_frame()
            df[df.taskq_status == "failed"]
        """
        return await self._to_frame(timeout, self._make_view(progress, self._cancel_soon))

    async def _to_frame(
        self,
        timeout: float | None,
        view: BatchView | None,
        *,
        chunks: Sequence[int] | None = None,
        index: Any = _UNREAD,
    ) -> pd.DataFrame:
        """Stream the finished chunks into a frame (``index``: the frame's index, if the caller has it)."""
        from .pandas import FrameBuilder

        if index is _UNREAD:
            index = await self._frame_index()
        builder = FrameBuilder(self._m, index=index)
        try:
            async for outcomes in self._stream(timeout=timeout, view=view, chunks=chunks):
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
        blob = await self._bstore_call(lambda b: b.read_index(m.tenant, m.batch))
        if blob is None:
            return None
        return self._client._codec.loads(blob)

    # ------------------------------------------------------------------ control
    async def cancel(self) -> int:
        """Cancel every job not yet finished; return how many were cancelled (queued) or stopped (running).

        Items that already finished keep their results.

        Example::

            await batch.cancel()
        """
        store = self._client._open()
        async with _Follower(self, None, subscribe=False) as follower:
            todo = [jid for _, jid in follower.unfinished_ids()]
        if not todo:
            return 0
        event = '{"e": "done", "s": "cancelled"}'
        now = now_ms()
        queue = self._m.queue

        def args_for(jid: str) -> list[Any]:
            return [jid, now, store.cancel_blob(jid, queue), store.result_ttl_ms, store.meta_ttl_after_finish_ms, event]

        outs = await self._bstore_call(lambda b: b.cancel_many(todo, args_for))
        return sum(1 for o in outs if o in ("cancelled", "running"))

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
        from ._client_batches import resubmit_items

        m = self._m
        failed: dict[int, list[int]] = {}
        if positions is not None:
            for pos in sorted({int(p) for p in positions}):
                if not 0 <= pos < m.n_items:
                    raise ConfigurationError(f"item {pos} is not in this batch of {m.n_items} items")
                failed.setdefault(pos // m.chunk_size, []).append(pos % m.chunk_size)
        else:
            async with _Follower(self, None, subscribe=False) as follower:
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
        new = await resubmit_items(self, failed)
        for chunk, entry in new.items():
            self._patches.setdefault(chunk, []).append(entry)
            self._cache.pop(chunk, None)
        return sum(len(offs) for offs in failed.values())

    # ------------------------------------------------------------------ views
    def widget(self) -> Any:
        """A live ipywidgets view of the batch (status, bar, counts, rate, ETA, Cancel) that updates itself.

        Call it on the client's event loop (in async code); ``Batch.widget()`` from anywhere.

        Example::

            display(batch.widget())
        """
        view = WidgetBatchView(self._m, on_cancel=self._cancel_soon)
        self._start_view(view)
        return view.widget

    def _start_view(self, view: BatchView) -> None:
        task = asyncio.ensure_future(self._drive_view(view))
        self._client._track(task)

    async def _drive_view(self, view: BatchView) -> None:
        counts: BatchCounts | None = None
        try:
            async for latest in self._follow(view, every=0.5):
                counts = latest
        except (TaskqError, asyncio.CancelledError):
            pass
        finally:
            view.close(counts)


def _widgets_wanted() -> bool:
    from .progress import in_notebook

    return in_notebook()


def _wait_timeout(batch_id: str, waited: float, counts: BatchCounts) -> WaitTimeout:
    exc = WaitTimeout(batch_id, waited, batch_status(counts))
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
class Batch:
    """A batch of jobs for blocking code: the :class:`AsyncBatch` API, each call waiting for its answer.

    Example::

        batch = client.map("score", texts, chunk_size=100, key="exp1")
        batch.wait(progress=True)
        values = batch.results()
        batch.to_frame()
    """

    def __init__(self, abatch: AsyncBatch, client: BatchFacade) -> None:
        self._batch = abatch
        self._client = client

    @property
    def id(self) -> str:
        """The batch's full id: ``client.batch(batch.id)`` finds it again, also from another process."""
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

    @property
    def n_jobs(self) -> int:
        return self._batch.n_jobs

    @property
    def chunk_size(self) -> int:
        return self._batch.chunk_size

    @property
    def reused(self) -> int:
        return self._batch.reused

    @property
    def manifest(self) -> BatchManifest:
        return self._batch.manifest

    @property
    def async_batch(self) -> AsyncBatch:
        """The underlying :class:`AsyncBatch` (lives on the client's event-loop thread)."""
        return self._batch

    def __repr__(self) -> str:
        return repr(self._batch).replace("<AsyncBatch", "<Batch", 1)

    def _repr_html_(self) -> str:
        with contextlib.suppress(TaskqError):
            self.counts()
        return self._batch._repr_html_().replace("AsyncBatch", "Batch", 1)

    def _view(self, progress: bool | str) -> BatchView | None:
        return self._batch._make_view(progress, self.cancel)

    def job_ids(self) -> list[str]:
        return self._batch.job_ids()

    def jobs(self) -> list[Job]:
        return [self._client._wrap(j) for j in self._batch.jobs()]

    def counts(self) -> BatchCounts:
        return self._client._call(self._batch.counts)

    def status(self) -> str:
        return self._client._call(self._batch.status)

    def done(self) -> bool:
        return self._client._call(self._batch.done)

    def wait(self, timeout: float | None = None, *, progress: bool | str = False) -> BatchCounts:
        return self._client._call(self._batch._wait, timeout, self._view(progress))

    def results(self, timeout: float | None = None, *, progress: bool | str = False) -> list[Any]:
        return self._client._call(self._batch._collect, "raise", timeout, self._view(progress))

    def gather(
        self, errors: ErrorMode = "raise", timeout: float | None = None, *, progress: bool | str = False
    ) -> list[Any]:
        return self._client._call(self._batch._collect, errors, timeout, self._view(progress))

    def as_completed(self, timeout: float | None = None, *, errors: ErrorMode = "raise") -> Iterator[tuple[int, Any]]:
        """Yield ``(index, value)`` as items finish (see :meth:`AsyncBatch.as_completed`)."""
        agen = self._batch._completed_groups(timeout, errors)
        try:
            while True:
                group = self._client._call(_next_group, agen)
                if group is None:
                    return
                yield from group
        finally:
            with contextlib.suppress(Exception):
                self._client._call(agen.aclose)

    def errors(self, timeout: float | None = None) -> dict[int, Exception]:
        return self._client._call(self._batch.errors, timeout)

    def to_frame(self, timeout: float | None = None, *, progress: bool | str = False) -> pd.DataFrame:
        return self._client._call(self._batch._to_frame, timeout, self._view(progress))

    def cancel(self) -> int:
        return self._client._call(self._batch.cancel)

    def retry_failed(self) -> int:
        return self._client._call(self._batch.retry_failed)

    def widget(self) -> Any:
        view = WidgetBatchView(self._batch.manifest, on_cancel=self.cancel)
        self._client._portal.call_soon(self._batch._start_view, view)
        return view.widget
