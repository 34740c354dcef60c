"""How far a batch is: counts of items and jobs, one status word, and the rate at which items finish.

Counting works on one status letter per job (read in bulk, then kept current by the batch's
events), so counting 100k jobs costs a few C-speed ``bytearray.count`` calls::

    c = batch.counts()
    f"{c.done}/{c.items} done, {c.failed} failed"; c.status; c.finished
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..views.html import seconds_text

__all__ = ["EVENT_CODES", "FINISHED", "ITEM_STATUS", "BatchCounts", "Rate", "batch_status"]

#: per-job status letters (see ``_backend.batches.BULK_STATUS``); finished ones never change
FINISHED = frozenset(b"cfxdle")
#: per-item status letters and their names in ``taskq_status`` columns
ITEM_STATUS = {
    ord("c"): "complete",
    ord("f"): "failed",
    ord("x"): "cancelled",
    ord("l"): "lost",
    ord("e"): "expired",
    ord("p"): "pending",
}
#: the status letter each batch event announces
EVENT_CODES = {"started": ord("r"), "complete": ord("c"), "failed": ord("f"), "cancelled": ord("x")}


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

    @property
    def status(self) -> str:
        """One word: queued, running, complete, partial (finished, some items failed), failed, cancelled."""
        return batch_status(self)

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


class Rate:
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
