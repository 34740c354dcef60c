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
from ..serialization import RemoteError

__all__ = ["ChunkOutcome", "item_exception", "job_items"]


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
