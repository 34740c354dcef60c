"""The results database, worker side: the engine extension that records every finished job, off the hot path.

A finish listener appends each finished job to an in-memory list (no I/O), and a background task
hands the list to one dedicated thread every ``TASKQ_RESULTS_DB_FLUSH_INTERVAL`` seconds (0.5),
which encodes the results and writes them in a single transaction; the event loop never waits for
the database. What is stored, where, and how clients read it: :mod:`taskq_sdk.results_db`::

    # not run: worker internals, how python -m taskq_sdk.worker assembles its engine
    Engine(specs, settings=s, extensions=[ResultsDBWriter(s)])   # every worker runs one unless TASKQ_RESULTS_DB=off
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from ._aio import stop_tasks
from .config import mask_url
from .errors import SerializationError
from .results_db import MAX_PENDING, MAX_RESULT_BYTES, PRUNE_INTERVAL_S, ResultsBackend, open_backend, results_url

if TYPE_CHECKING:
    from .config import Settings
    from .extensions import FinishedJob

__all__ = ["ResultsDBWriter", "to_row"]

logger = logging.getLogger("taskq_sdk.results_db")


def _json_or_none(value: Any) -> str | None:
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return text if len(text) <= MAX_RESULT_BYTES else None


def to_row(job: FinishedJob, codec: Any, cache_entry: str | None = None) -> tuple[Any, ...]:
    """One database row for a finished job (encodes its result; runs in the writer thread)."""
    blob: bytes | None = None
    as_json: str | None = None
    if job.state == "complete" and job.value is not None:
        try:
            encoded = codec.dumps(job.value, what="result")
            blob = encoded if len(encoded) <= MAX_RESULT_BYTES else None
        except SerializationError:
            blob = None
        if blob is not None:
            as_json = _json_or_none(job.value)
    stored = int(blob is not None or (job.state == "complete" and job.value is None))
    error = job.error
    return (
        job.job_id,
        job.tenant,
        job.workspace,
        job.function,
        job.state,
        job.attempt,
        job.started_ms / 1000.0 if job.started_ms else None,
        job.finished_ms / 1000.0,
        round(job.duration, 6),
        job.worker_id,
        None if error is None else error.type,
        None if error is None else error.message[:4000],
        blob,
        as_json,
        stored,
        time.time(),
        cache_entry,
    )


class ResultsDBWriter:
    """The engine extension that records finished jobs in the results DB, batched and off the event loop.

    Example::

        # not run: worker internals, how python -m taskq_sdk.worker assembles its engine
        Engine(specs, settings=s, extensions=[ResultsDBWriter(s)])
    """

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        self.settings = settings
        self.url = url or results_url(settings)
        self.flush_interval = settings.results_db_flush_interval
        self._pending: deque[FinishedJob] = deque()
        self._backend: ResultsBackend | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._codec: Any = None
        self._store: Any = None
        self.written = 0
        #: batched writes made (each a transaction): far fewer than jobs, or the DB would be on the hot path
        self.flushes = 0
        self.dropped = 0
        self.failures = 0
        self.pruned = 0
        self._last_prune = 0.0

    def _on_finish(self, job: FinishedJob) -> None:
        # called on the worker's loop after each job's final write: append only, no I/O
        if len(self._pending) >= MAX_PENDING:
            self._pending.popleft()
            self.dropped += 1
        self._pending.append(job)

    async def start(self, engine: Any) -> None:
        if self.url is None:
            return
        from .serialization import Codec

        self._codec = Codec("pickle" if self.settings.serializer == "pickle" else "msgpack")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="taskq-results-db")
        loop = asyncio.get_running_loop()
        url = self.url
        try:
            self._backend = await loop.run_in_executor(self._executor, lambda: open_backend(url, self.settings))
        except Exception as exc:
            logger.error(
                "results DB %s cannot be opened (%s: %s); this worker will not record results "
                "(set TASKQ_RESULTS_DB to a writable path, or TASKQ_RESULTS_DB=off)",
                mask_url(url),
                type(exc).__name__,
                exc,
            )
            self._executor.shutdown(wait=False)
            self._executor = None
            return
        self._store = getattr(engine, "store", None)
        engine.finish_listeners.append(self._on_finish)
        self._task = asyncio.create_task(self._flush_loop(), name="taskq-results-db")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.flush_interval)
            await self.flush()
            if time.monotonic() - self._last_prune >= PRUNE_INTERVAL_S:
                self._last_prune = time.monotonic()
                await self.prune()

    async def prune(self) -> int:
        """Delete rows older than ``TASKQ_RESULTS_DB_RETENTION_DAYS`` (in the writer thread); returns how many."""
        days = self.settings.results_db_retention_days
        if not days or self._backend is None or self._executor is None:
            return 0
        backend, before = self._backend, time.time() - days * 86400
        try:
            n = await asyncio.get_running_loop().run_in_executor(self._executor, backend.prune, before)
        except Exception as exc:
            logger.warning("results DB: pruning rows older than %g days failed: %s", days, exc)
            return 0
        self.pruned += n
        if n:
            logger.info("results DB: pruned %d rows older than %g days", n, days)
        return n

    async def flush(self) -> int:
        """Write everything pending now (in the writer thread); returns how many rows were written."""
        if not self._pending or self._backend is None or self._executor is None:
            return 0
        batch = list(self._pending)
        self._pending.clear()
        backend, codec = self._backend, self._codec
        entries = await self._cache_entries(batch)

        def write() -> int:
            rows = [to_row(j, codec, entries.get(j.job_id)) for j in batch]
            backend.write(rows)
            # counted here, in the one writer thread: a flush cancelled at shutdown still finishes its write
            self.written += len(rows)
            self.flushes += 1
            return len(rows)

        try:
            n = await asyncio.get_running_loop().run_in_executor(self._executor, write)
        except Exception as exc:
            self.failures += 1
            logger.warning("results DB write of %d jobs failed (%s: %s); retrying", len(batch), type(exc).__name__, exc)
            self._pending.extendleft(reversed(batch))
            while len(self._pending) > MAX_PENDING:
                self._pending.popleft()
                self.dropped += 1
            return 0
        return n

    async def _cache_entries(self, batch: list[FinishedJob]) -> dict[str, str]:
        """The cache entries the batch's completed jobs serve: one script call per flush, not per job.

        Only completed jobs can serve an entry; a server that cannot answer (an outage, a Redis
        Cluster, which has no result cache) costs the column, never the rows.
        """
        done = [j.job_id for j in batch if j.state == "complete"]
        if not done or self._store is None:
            return {}
        try:
            return dict(await self._store.cache.entries_of(done))
        except Exception as exc:
            logger.debug("results DB: cache entries not read (%s: %s)", type(exc).__name__, exc)
            return {}

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        if self._backend is not None:
            deadline = time.monotonic() + 10.0
            while self._pending and time.monotonic() < deadline:
                if not await self.flush():
                    await asyncio.sleep(0.2)
            if self._pending:
                logger.error("results DB: %d finished jobs were not recorded at shutdown", len(self._pending))
            backend = self._backend
            self._backend = None
            if self._executor is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, backend.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
