"""arq's job and result envelopes: the only place that builds or reads them.

A job is stored as arq stores it (``arq:job:<id>``): the codec's encoding of
``{"t": try, "f": function, "a": args, "k": kwargs, "et": enqueue_ms}``; a result adds
``"s"`` (success), ``"r"`` (value or :class:`~taskq_sdk.serialization.RemoteError`), ``"st"``/``"ft"``
(start/finish ms), ``"q"`` (queue key) and ``"id"``. Plain arq clients and workers read and write
the same shapes, so the two interoperate::

    blob = encode_job(codec, "add", [1, 2], {}, enqueued_ms=now_ms())
    call = decode_job(codec, blob)            # JobCall(function='add', args=[1, 2], kwargs={}, ...)
    record = decode_result(codec, result_blob)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgpack

from ..errors import DeserializationError
from ..serialization import Codec, RemoteError

__all__ = [
    "JobCall",
    "JobEncoder",
    "ResultRecord",
    "decode_job",
    "decode_result",
    "encode_job",
    "encode_result",
    "job_call_of",
]


@dataclass(slots=True)
class JobCall:
    """A decoded job definition: what to call, with what, and when it was enqueued."""

    function: str
    args: list[Any]
    kwargs: dict[str, Any]
    enqueued_ms: int | None
    #: ``_limit_key=``: the declared limit this job counts against (see :mod:`taskq_sdk.limits`)
    limit_key: str | None = None


@dataclass
class ResultRecord:
    """A decoded result envelope: success flag, value or error, timing and the original call."""

    success: bool
    value: Any
    error: RemoteError | None
    function: str
    args: list[Any]
    kwargs: dict[str, Any]
    attempt: int
    started_ms: int | None
    finished_ms: int | None
    #: the job's ``_limit_key`` (kept so a retry counts against the same limit)
    limit_key: str | None = None


def _job(
    function: str, args: list[Any], kwargs: dict[str, Any], enqueued_ms: int, limit_key: str | None = None
) -> dict[str, Any]:
    # the key order is part of the format: the enqueue time comes last (see JobEncoder.digest);
    # 'lk' (a limit key) is taskq's own, which arq's reader ignores
    if limit_key:
        return {"t": None, "f": function, "a": args, "k": kwargs, "lk": limit_key, "et": enqueued_ms}
    return {"t": None, "f": function, "a": args, "k": kwargs, "et": enqueued_ms}


def encode_job(
    codec: Codec,
    function: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    enqueued_ms: int,
    limit_key: str | None = None,
) -> bytes:
    """The stored form of a job (arq's envelope, encoded with the wire codec).

    Example::

        blob = encode_job(codec, "add", [1, 2], {}, enqueued_ms=now_ms())
    """
    return codec.serializer(_job(function, list(args), kwargs, enqueued_ms, limit_key))


class JobEncoder:
    """Encodes many jobs enqueued at one instant, and hashes their content without the enqueue time.

    The codec packs the envelope in key order, so the enqueue time is its tail: the content hash
    drops those bytes instead of encoding each job twice (a batch's idempotent ids use it).

    Example::

        enc = JobEncoder(codec, enqueued_ms=now_ms())
        blob = enc.encode("score", ["text"], {})
        enc.digest(blob, "score", ["text"], {})   # '3f2a9c0d1b2e' (same content -> same digest)
    """

    def __init__(self, codec: Codec, *, enqueued_ms: int, limit_key: str | None = None) -> None:
        self._serializer = codec.serializer
        self._enqueued_ms = enqueued_ms
        self._limit_key = limit_key
        self._tail = b"\xa2et" + msgpack.packb(enqueued_ms)

    def encode(self, function: str, args: list[Any], kwargs: dict[str, Any]) -> bytes:
        return self._serializer(_job(function, args, kwargs, self._enqueued_ms, self._limit_key))

    def digest(self, job_bytes: bytes, function: str, args: list[Any], kwargs: dict[str, Any]) -> str:
        """A short hash of a job's definition without its enqueue time."""
        if job_bytes.endswith(self._tail):
            body = job_bytes[: -len(self._tail)]
        else:  # another codec layout: encode without the time
            body = self._serializer(_job(function, args, kwargs, 0, self._limit_key))
        return hashlib.blake2b(body, digest_size=6).hexdigest()


#: the end of year 9999 in epoch ms: any later enqueue time is corrupt
MAX_EPOCH_MS = 253_402_300_800_000


def decode_job(codec: Codec, blob: bytes) -> JobCall:
    """A stored job's definition; raises ``DeserializationError``, ``KeyError``, ``TypeError`` or ``ValueError``.

    Example::

        call = decode_job(codec, blob); call.function, call.args
    """
    d = codec.deserializer(blob)
    et = d.get("et")
    if et is not None and not (isinstance(et, int | float) and 0 <= et < MAX_EPOCH_MS):
        raise ValueError(f"its enqueue time 'et' is not a time: {et!r}")
    lk = d.get("lk")
    return JobCall(
        str(d["f"]),
        list(d.get("a") or []),
        dict(d.get("k") or {}),
        int(et) if et else None,
        str(lk) if lk else None,
    )


def job_call_of(record: ResultRecord) -> JobCall | None:
    """The call a result envelope records, when it records one (a cancel-before-start does not)."""
    if record.function in ("", "?"):
        return None
    return JobCall(record.function, record.args, record.kwargs, None, record.limit_key)


def encode_result(
    codec: Codec,
    call: JobCall,
    *,
    attempt: int,
    success: bool,
    value: Any,
    started_ms: int,
    finished_ms: int,
    queue_key: str,
    job_id: str = "",
) -> bytes:
    """The stored form of a job's outcome (arq's result envelope).

    Example::

        blob = encode_result(codec, call, attempt=1, success=True, value=3, started_ms=t0, finished_ms=t1,
                             queue_key="arq:queue")
    """
    envelope = {
        "t": attempt,
        "f": call.function,
        "a": call.args,
        "k": call.kwargs,
        "et": call.enqueued_ms if call.enqueued_ms is not None else started_ms,
        "s": success,
        "r": value,
        "st": started_ms,
        "ft": finished_ms,
        "q": queue_key,
        "id": job_id,
    }
    if call.limit_key:
        envelope["lk"] = call.limit_key  # taskq's own; arq's reader ignores it
    return codec.serializer(envelope)


def decode_result(codec: Codec, blob: bytes) -> ResultRecord:
    """Decode a result envelope written by a taskq or arq worker (or by a cancel).

    An envelope that cannot be decoded becomes a failed record with a ``DeserializationError``.

    Example::

        record = decode_result(codec, blob); record.success, record.value
    """
    try:
        d = codec.deserializer(blob)
    except DeserializationError as exc:
        err = RemoteError(type="DeserializationError", message=str(exc), traceback="", kind="deserialization")
        return ResultRecord(False, None, err, "?", [], {}, 0, None, None)
    success = bool(d.get("s"))
    value = d.get("r")
    error: RemoteError | None = None
    if not success:
        if isinstance(value, RemoteError):
            error = value
        else:
            error = RemoteError(type="RemoteError", message=str(value), traceback="", kind="error")
        value = None
    return ResultRecord(
        success=success,
        value=value,
        error=error,
        function=str(d.get("f", "?")),
        args=list(d.get("a") or []),
        kwargs=dict(d.get("k") or {}),
        attempt=int(d.get("t") or 0),
        started_ms=d.get("st"),
        finished_ms=d.get("ft"),
        limit_key=d["lk"] if isinstance(d.get("lk"), str) else None,
    )
