"""Following a batch: which of its jobs finished, kept current by the batch's event channel.

One bulk status read, then events as jobs start and finish; a missed event is covered by a
re-check of unfinished jobs when the channel stays quiet (and every few seconds regardless)::

    # not run: internal, what a batch's waits run
    async with Follower(core, manifest, patches, chunks=None) as follower:
        while not follower.finished:
            await follower.wait(timeout=1.0)
            for chunk in follower.settle(): ...     # chunks whose jobs all finished
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .counts import EVENT_CODES, FINISHED, BatchCounts
from .manifest import BatchManifest, Patches

if TYPE_CHECKING:
    from .._core import ClientCore

__all__ = ["RECHECK_EVERY", "Follower"]

RECHECK_EVERY = 5.0  # seconds between re-reads of unfinished jobs' statuses, events or not


class Follower:
    """Knows the status of a batch's jobs: one bulk snapshot, then the batch's event channel.

    A missed event is covered by a re-check of unfinished jobs when the channel stays quiet.
    """

    def __init__(
        self,
        core: ClientCore,
        manifest: BatchManifest,
        patches: Patches,
        chunks: Sequence[int] | None,
        *,
        subscribe: bool = True,
    ) -> None:
        self.core = core
        self.patches = patches  # the batch's own dict: re-runs added while following are seen
        self.subscribe = subscribe
        m = manifest
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
        self.last_snapshot = 0.0

    async def __aenter__(self) -> Follower:
        if self.subscribe:
            self._cm = self.core.batch_events(self.m.tenant, self.m.batch)
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
            if old in FINISHED:
                return
            self.codes[chunk] = code
        elif jid is not None:
            old = self.extra[jid]
            if old in FINISHED:
                return
            self.extra[jid] = code
            chunk = self.extra_chunk[jid]
        else:
            return
        if code in FINISHED:
            self.candidates.add(chunk)

    def unfinished_ids(self) -> list[tuple[int | None, str]]:
        out: list[tuple[int | None, str]] = [
            (c, self.m.job_id(c)) for c in self.chunks if self.codes[c] not in FINISHED
        ]
        wanted = self._wanted
        out += [(None, j) for j, code in self.extra.items() if code not in FINISHED and self.extra_chunk[j] in wanted]
        return out

    def sync_patches(self) -> None:
        """Follow re-runs added since (``retry_failed`` while this follower runs): their chunks reopen."""
        for chunk, entries in self.patches.items():
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
        codes = await self.core.call(lambda s: s.batches.statuses([j for _, j in todo]))
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
            code = EVENT_CODES.get(str(kind), 0)
            if not code:
                return False
        chunk = self.m.chunk_of_job(jid)
        if chunk is not None:
            if code == ord("q") and self.codes[chunk] not in FINISHED:
                self.codes[chunk] = code
            else:
                self._set(chunk, None, code)
            return True
        if jid not in self.extra:
            self.sync_patches()
        if jid in self.extra:
            if code == ord("q") and self.extra[jid] not in FINISHED:
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
        jobs += [(jid, self.extra.get(jid, ord("q"))) for jid, _ in self.patches.get(chunk, ())]
        return jobs

    def chunk_finished(self, chunk: int) -> bool:
        return all(code in FINISHED for _, code in self.chunk_jobs(chunk))

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

        def take_back(code: int, n: int) -> tuple[int, int]:
            if code in FINISHED:
                return n, 0
            return (0, n) if code == ord("r") else (0, 0)

        size = m.chunk_size
        if m.auto:  # chunks of several sizes: add them up (auto batches have few jobs)
            done = running = 0
            for code, n in zip(codes, m.sizes(), strict=False):
                d, r = take_back(code, n)
                done, running = done + d, running + r
        else:
            done = (m.n_jobs - per["q"] - per["r"]) * size
            running = per["r"] * size
        if m.n_jobs and not m.auto:
            last = m.n_jobs - 1
            short = size - (m.n_items - last * size)
            if short:
                d, r = take_back(self.codes[last], short)
                done, running = done - d, running - r
        for chunk in self.patches:
            if chunk >= m.n_jobs:
                continue
            start, stop = m.bounds(chunk)
            d, r = take_back(self.codes[chunk], stop - start)
            done, running = done - d, running - r
            jobs = self.chunk_jobs(chunk)
            for _, code in jobs[1:]:
                letter = chr(code)
                by["c" if letter == "d" else "l" if letter == "e" else letter] += 1
            if all(code in FINISHED for _, code in jobs):
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
