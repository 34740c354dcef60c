"""What finished jobs of a batch say about their items: values, per-item statuses and per-item errors.

A chunk job returns ``{"n", "v": values, "e": [[offset, RemoteError], ...]}`` (the chunk runner
catches each item's error); a plain job's result is its one item. Re-runs of some items are laid
over the chunk they belong to::

    # not run: internal, reads a chunk's stored result record
    values, status, errors = job_items(job_id, 3, ord("c"), record, runner=True)
    status                                  # bytearray(b'cfc'): the second item failed
    item_exception(1, job_id, errors[1][1], runner=True)   # JobFailed('item 1: ...')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._backend.envelope import ResultRecord
from ..errors import JobCancelled, JobFailed, JobLost, ResultExpired
from ..handles import exception_for
from ..models import JobInfo
from ..serialization import RemoteError

__all__ = ["ChunkOutcome", "RowTimes", "item_exception", "job_items", "row_times"]


@dataclass
class RowTimes:
    """Per item of a chunk: when it started (epoch microseconds), how long it took (us), where it ran, attempts.

    ``None`` where not known (a chunk that failed as a whole does not say when its items ran).

    Example::

        times = RowTimes([0, 5000], [5000, 800], ["w1", "w1"], [1, 1])
        times.started_us[1], times.duration_us[1], times.worker[1], times.attempts[1]   # 5000, 800, 'w1', 1
    """

    started_us: list[int | None]
    duration_us: list[int | None]
    worker: list[str | None]
    attempts: list[int]

    def lay_over(self, offsets: list[int], other: RowTimes) -> None:
        """A re-run of the items at ``offsets``: its times replace theirs, its attempts add to theirs."""
        for k, offset in enumerate(offsets):
            self.started_us[offset] = other.started_us[k]
            self.duration_us[offset] = other.duration_us[k]
            self.worker[offset] = other.worker[k]
            self.attempts[offset] += other.attempts[k]


def row_times(n: int, record: ResultRecord | None, info: JobInfo | None, *, runner: bool) -> RowTimes:
    """The times of one job's ``n`` items: the chunk runner's per-item record, else the job's own times.

    A job of one item is timed by its start and finish; a chunk whose runner recorded timing
    (``"t"``, see :func:`taskq_sdk.jobs.mapping.row_timing`) by that; anything else has no start.
    Worker and attempts come from the job's info (``Store.states``) and result record. Example::

        from taskq_sdk._backend.envelope import ResultRecord

        record = ResultRecord(True, {"t": [1_000, [5000, 800]]}, None, "f", [], {}, 1, None, None)
        times = row_times(2, record, None, runner=True)
        assert times.started_us == [1_000, 6_000] and times.duration_us == [5000, 800]
    """
    started: list[int | None] = [None] * n
    durations: list[int | None] = [None] * n
    value = record.value if record is not None and record.success else None
    timed = value.get("t") if runner and isinstance(value, dict) else None
    if isinstance(timed, list) and len(timed) == 2 and isinstance(timed[1], list) and len(timed[1]) == n:
        at = int(timed[0])
        for i, took in enumerate(timed[1]):
            started[i] = at
            durations[i] = int(took)
            at += int(took)
    elif n == 1:
        begin_ms = record.started_ms if record is not None else None
        end_ms = record.finished_ms if record is not None else None
        if begin_ms is None and info is not None and info.started_at is not None:
            begin_ms = int(info.started_at.timestamp() * 1000)
            end_ms = int(info.finished_at.timestamp() * 1000) if info.finished_at is not None else None
        if begin_ms is not None:
            started[0] = begin_ms * 1000
            durations[0] = (end_ms - begin_ms) * 1000 if end_ms is not None else None
    attempts = record.attempt if record is not None and record.attempt else info.attempts if info is not None else 0
    worker = info.worker if info is not None else None
    return RowTimes(started, durations, [worker] * n, [attempts] * n)


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
    times: RowTimes | None = None  # per-item timing and placement, when asked for (``timing=True``)

    @property
    def n(self) -> int:
        return len(self.values)

    def job_id_at(self, offset: int) -> str:
        return self.job_ids if isinstance(self.job_ids, str) else self.job_ids[offset]


def _lost_error(kind: str) -> RemoteError:
    if kind == "lost":
        return RemoteError("JobLost", "the job vanished before it finished", "", kind="lost")
    return RemoteError("ResultExpired", "the job finished but its result has expired", "", kind="expired")


def job_items(
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
