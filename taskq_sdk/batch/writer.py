"""Writing a batch's jobs: every job encoded and size-checked before anything is written, then sent
a few thousand per Lua call, all calls in one pipeline; and the jobs of a batch's re-runs.

Each group of jobs is packed while the previous one is on the server, and its rows are released
once packed, so the client holds the encoded jobs plus about two groups::

    # not run: internal, what client.map writes with
    plan = encode_jobs(core, "score", payloads, bounds=[(0, 100), (100, 200)], runner=True, **options)
    flags = await write_jobs(core, header, plan.rows, fresh=True)     # b"111...": created per job
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .._backend.batches import BulkHeader, pack_rows
from .._backend.envelope import JobEncoder
from .._backend.store import now_ms
from .._chunks import RUNNER_NAME, take_items
from .._names import qualify
from .._redact import call_repr
from ..errors import PayloadTooLarge, SerializationError, TaskqError
from .manifest import BatchManifest, Patches, encode_patch_list

if TYPE_CHECKING:
    from .._core import ClientCore

__all__ = ["Plan", "chunk_repr", "encode_jobs", "resubmit_items", "write_jobs"]

GROUP_ROWS = 2000  # jobs per Lua call
GROUP_BYTES = 2 * 1024 * 1024  # payload bytes per Lua call
REPR_MAX = 64  # short enough for the server's compact hash encoding


def _short(value: Any, limit: int) -> str:
    if isinstance(value, str):
        text = repr(value[:limit])
    elif value is None or isinstance(value, bool | int | float):
        text = repr(value)
    else:
        text = call_repr("", (value,), {}, limit=limit)[1:-1]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _chunk_repr(name: str, start: int, stop: int) -> str:
    text = f"{name} × {stop - start} [{start}:{stop}]"
    return text if len(text) <= REPR_MAX else text[: REPR_MAX - 1] + "…"


def chunk_repr(name: str, start: int, stop: int) -> str:
    """How a chunk job shows in listings: ``score × 100 [300:400]``."""
    text = f"{name} × {stop - start} [{start}:{stop}]"
    return text if len(text) <= REPR_MAX else text[: REPR_MAX - 1] + "…"


class Plan:
    """The validated, encoded jobs of one batch, ready to be written."""

    def __init__(self) -> None:
        self.rows: list[Any] = []  # flat [id, job_bytes, args_repr, ...]
        self.hashes: list[str] | None = None


def encode_jobs(
    core: ClientCore,
    name: str,
    payloads: Iterator[Any],
    *,
    bounds: Sequence[tuple[int, int]],
    runner: bool,
    mode: str,
    shared: dict[str, Any],
    tenant: str,
    local: str,
    hashed: bool,
    first: int = 0,
    limit_key: str | None = None,
    timing: bool = False,
) -> Plan:
    """Every job's id, encoded definition and short repr; raises before anything is written.

    ``bounds`` gives each payload's items (``[start, stop)``); the jobs are chunks ``first``, ``first + 1``, ...
    """
    plan = Plan()
    now = now_ms()
    encoder = JobEncoder(core.codec, enqueued_ms=now, limit_key=limit_key)
    limit = core.settings.max_payload_bytes
    hashes: list[str] | None = [] if hashed else None
    prefix = qualify(tenant, f"{local}.")
    kw_repr = call_repr("", (), shared, limit=REPR_MAX)[1:-1] if shared else ""
    job_fn = RUNNER_NAME if runner else name
    rows = plan.rows
    for i, (payload, (start, stop)) in enumerate(zip(payloads, bounds, strict=True), start=first):
        args: list[Any]
        kwargs: dict[str, Any]
        if runner:
            args = []
            kwargs = {"function": name, "items": payload, "mode": mode, "kwargs": shared, "batch": local}
            if timing:  # only then: a batch without timing keeps its job hashes (and keyed re-use) as before
                kwargs["timing"] = True
            what = f"chunk {i} (item {start})" if stop - start == 1 else f"chunk {i} (items {start}-{stop - 1})"
            text = chunk_repr(name, start, stop)
        else:
            args = list(payload) if mode == "star" else [payload]
            kwargs = shared
            what = f"item {i}"
            inner = ", ".join(_short(a, REPR_MAX) for a in args)
            text = f"{name}({inner}{', ' + kw_repr if kw_repr else ''})"
            if len(text) > REPR_MAX:
                text = text[: REPR_MAX - 1] + "…"
        try:
            job_bytes = encoder.encode(job_fn, args, kwargs)
        except SerializationError as exc:
            raise SerializationError(f"{what}: {exc}") from None
        if len(job_bytes) > limit:
            raise PayloadTooLarge(len(job_bytes), limit, what=f"{what} of the batch")
        if hashes is not None:
            digest = encoder.digest(job_bytes, job_fn, args, kwargs)
            hashes.append(digest)
            rows += [f"{prefix}{i}.{digest}", job_bytes, text]
        else:
            rows += [f"{prefix}{i}", job_bytes, text]
    plan.hashes = hashes
    return plan


async def write_jobs(core: ClientCore, header: BulkHeader, rows: list[Any], *, fresh: bool) -> bytes:
    """Write ``rows`` (flat ``id, job_bytes, repr`` triples) a few thousand per Lua call.

    Each group is packed while the previous one is on the server, and its rows are released once
    packed (``rows`` is consumed), so the client holds the encoded jobs plus about two groups.
    """
    now = now_ms()

    def groups() -> Iterator[bytes]:
        start = 0
        while start < len(rows):
            stop, size = start, 0
            while stop < len(rows) and stop - start < GROUP_ROWS * 3 and (size < GROUP_BYTES or stop == start):
                size += len(rows[stop + 1]) + 100
                stop += 3
            blob = pack_rows(rows[start:stop])
            rows[start:stop] = [None] * (stop - start)
            start = stop
            yield blob

    async def send(blob: bytes) -> bytes:
        out: bytes = await core.call(
            lambda s: s.batches.submit(header, [blob], now=now, fresh=fresh), "submit a batch to"
        )
        return out

    flags: list[bytes] = []
    pending: asyncio.Task[bytes] | None = None
    try:
        for blob in groups():
            task = asyncio.ensure_future(send(blob))
            if pending is not None:
                flags.append(await pending)
            pending = task
            await asyncio.sleep(0)  # let it start sending before the next group is packed
        if pending is not None:
            flags.append(await pending)
            pending = None
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
    rows.clear()
    return b"".join(flags)


async def resubmit_items(
    core: ClientCore, m: BatchManifest, patches: Patches, failed: dict[int, list[int]]
) -> dict[int, tuple[str, list[int]]]:
    """Submit new jobs for the given items of each chunk (a batch's re-run); record them as patches."""
    store = core.open()
    chunks = sorted(failed)
    calls = await core.call(lambda s: s.batches.calls([m.job_id(c) for c in chunks]))
    missing = [chunk for chunk, call in zip(chunks, calls, strict=True) if call is None]
    if missing:
        raise TaskqError(
            f"cannot re-run items of batch {m.id}: the inputs of {len(missing)} chunk(s) (first: chunk "
            f"{missing[0]}) are no longer stored (results are kept TASKQ_KEEP_RESULT seconds); submit them again"
        )
    token = uuid.uuid4().hex[:8]
    job_fn = RUNNER_NAME if m.runner else m.function
    header = m.header(store, function=job_fn)
    encoder = JobEncoder(core.codec, enqueued_ms=now_ms(), limit_key=m.limit_key)
    rows: list[Any] = []
    new: dict[int, tuple[str, list[int]]] = {}
    for chunk, call in zip(chunks, calls, strict=True):
        assert call is not None
        offsets = failed[chunk]
        args, kwargs = call
        if m.runner:
            kwargs = {**kwargs, "items": take_items(kwargs.get("items"), list(offsets), m.mode)}
        job_id = qualify(m.tenant, f"{m.batch}.r{token}.{chunk}")
        start, _ = m.bounds(chunk)
        rows += [
            job_id,
            encoder.encode(job_fn, args, kwargs),
            chunk_repr(m.function, start, start + len(offsets)) + " re-run",
        ]
        new[chunk] = (job_id, list(offsets))
    await write_jobs(core, header, rows, fresh=True)
    stored = {str(c): encode_patch_list([*patches.get(c, []), new[c]]) for c in new}
    await core.call(lambda s: s.batches.write_patches(m.tenant, m.batch, stored, ttl_ms=header.meta_ttl_ms))
    return new
