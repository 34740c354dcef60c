"""Reading the shared worker-liveness keys leniently: any tenant may write them, so junk is skipped.

``taskq:workers`` and ``taskq:worker:<id>`` are the one family every tenant's server user may
write (workers of every tenant announce themselves there). A reader must never fail on what it
finds: an undecodable member, a record of the wrong type, a field that is not a number. Such
entries are skipped (and logged once, at debug level), never raised::

    ids = member_ids(await redis.zrange(layout.WORKERS_ZSET, 0, -1))
    info = worker_info(wid, record(row))        # a WorkerInfo, or None for junk
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from redis.exceptions import ResponseError

from ..models import WorkerInfo, ms_to_dt

__all__ = ["is_wrong_type", "member_ids", "note_junk", "record", "worker_info"]

logger = logging.getLogger("taskq_sdk.liveness")
_noted: set[str] = set()


def note_junk(kind: str, detail: Any) -> None:
    """Log once per kind of junk (at debug level) that a liveness entry was skipped."""
    if kind in _noted:
        return
    _noted.add(kind)
    logger.debug("skipping junk in the shared worker-liveness keys (%s): %.200s", kind, detail)


def is_wrong_type(exc: BaseException) -> bool:
    """Whether ``exc`` is the server's WRONGTYPE answer (a key holding another kind of value)."""
    return isinstance(exc, ResponseError) and str(exc).startswith("WRONGTYPE")


def _text(v: Any) -> str | None:
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            return None
    return v if isinstance(v, str) else None


def member_ids(raw: Iterable[Any]) -> list[str]:
    """The worker ids among the members of the liveness set (undecodable members skipped)."""
    out: list[str] = []
    for member in raw:
        text = _text(member)
        if text is None:
            note_junk("undecodable member", member)
            continue
        out.append(text)
    return out


def record(row: Any) -> dict[str, str] | None:
    """A worker's liveness hash as text (``{}`` if gone), or ``None`` when the key held something else."""
    if isinstance(row, BaseException) or not isinstance(row, Mapping):
        note_junk("not a hash", row)
        return None
    out: dict[str, str] = {}
    for k, v in row.items():
        key, value = _text(k), _text(v)
        if key is not None and value is not None:
            out[key] = value
    return out


def _int(value: str | None) -> int:
    try:
        number = float(value or 0)
    except ValueError:
        return 0
    return int(number) if math.isfinite(number) and abs(number) < 2**63 else 0


def _time(value: str | None) -> datetime | None:
    try:
        return ms_to_dt(value or None)
    except (ValueError, OverflowError, OSError):
        return None


def worker_info(wid: str, d: dict[str, str]) -> WorkerInfo | None:
    """The :class:`WorkerInfo` of one liveness record; fields that are not numbers read as 0 / unknown."""
    try:
        return WorkerInfo(
            id=wid,
            host=d.get("host", "?"),
            pid=_int(d.get("pid")),
            status=d.get("status", "?"),
            queue=d.get("queue", "default"),
            max_jobs=_int(d.get("max_jobs")),
            ongoing=_int(d.get("ongoing")),
            complete=_int(d.get("complete")),
            failed=_int(d.get("failed")),
            retried=_int(d.get("retried")),
            cancelled=_int(d.get("cancelled")),
            started_at=_time(d.get("started")),
            last_seen=_time(d.get("seen")),
            functions=[f for f in d.get("functions", "").split(",") if f],
        )
    except ValueError as exc:  # pydantic's ValidationError is one
        note_junk("unreadable record", exc)
        return None
