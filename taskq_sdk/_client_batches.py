"""Batch methods of the clients (``map``, ``batch``): fan many jobs out and gather them.

A mixin over the client core, so that this feature lives in its own module::

    batch = client.map("score", texts, chunk_size=500, key="exp1-run")
    again = client.batch("exp1-run")          # from another process, after a kernel restart

Submission is bulk: the options are validated once (by the same code as ``submit``), each job's
definition is encoded and size-checked before anything is written, then the jobs go to the
server a few thousand per Lua call, all calls in one pipeline.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgpack

from ._backend.batches import BatchStore, BulkHeader, pack_rows
from ._backend.store import now_ms
from ._client_core import AsyncClientCore, ClientCore
from ._names import JOB_ID_RE, local_part, qualify, tenant_of
from ._redact import call_repr
from .batch import AsyncBatch, Batch, BatchManifest, decode_patches, encode_patch_list
from .errors import ConfigurationError, JobNotFound, PayloadTooLarge, SerializationError, TaskqError
from .jobs.mapping import MODES, RUNNER_NAME, take_items
from .registry import spec_for

__all__ = ["AsyncBatchMethods", "BatchFacade"]

logger = logging.getLogger("taskq_sdk.batch")

KEY_MAX = 120
GROUP_ROWS = 2000  # jobs per Lua call
GROUP_BYTES = 2 * 1024 * 1024  # payload bytes per Lua call
INDEX_MAX_BYTES = 32 * 1024 * 1024  # a fan-out's index is stored for re-attach up to this size
REPR_MAX = 64  # short enough for the server's compact hash encoding

_MAP_OPTIONS = ("_defer_by", "_defer_until", "_expires", "_timeout", "_retries", "_queue")


def _fn_name(fn: str | Callable[..., Any]) -> str:
    if isinstance(fn, str):
        if not fn:
            raise ConfigurationError("the job name must be a non-empty string")
        return fn
    if callable(fn):
        return spec_for(fn).name
    raise ConfigurationError(f"map() takes a job name or a function, not {type(fn).__name__}")


def _check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > KEY_MAX or not JOB_ID_RE.fullmatch(key):
        raise ConfigurationError(
            f"batch key {key!r} is not valid: use 1-{KEY_MAX} characters from letters, digits and _ . - = + @ / "
            "(no ':' and no spaces)"
        )
    return key


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


def _content_hash(job_bytes: bytes, enq_tail: bytes, encode_without_time: Callable[[], bytes]) -> str:
    """A short hash of a job's definition without its enqueue time (same content -> same hash)."""
    # the codec packs the envelope in order, so the enqueue time is its tail; re-encode if not
    body = job_bytes[: -len(enq_tail)] if job_bytes.endswith(enq_tail) else encode_without_time()
    return hashlib.blake2b(body, digest_size=6).hexdigest()


class _Plan:
    """The validated, encoded jobs of one batch, ready to be written."""

    def __init__(self) -> None:
        self.rows: list[Any] = []  # flat [id, job_bytes, args_repr, ...]
        self.hashes: list[str] | None = None


async def _write_jobs(
    client: AsyncClientCore, bstore: BatchStore, header: BulkHeader, rows: list[Any], *, fresh: bool
) -> bytes:
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
        out: bytes = await client._store_call(
            lambda s: bstore.submit(header, [blob], now=now, fresh=fresh), "submit a batch to"
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


async def resubmit_items(batch: AsyncBatch, failed: dict[int, list[int]]) -> dict[int, tuple[str, list[int]]]:
    """Submit new jobs for the given items of each chunk (a batch's re-run); record them as patches."""
    client = batch.client
    m = batch.manifest
    store = client._open()
    bstore = BatchStore(store.redis)
    chunks = sorted(failed)
    primary = [m.job_id(c) for c in chunks]
    results = await client._store_call(lambda s: bstore.results(primary))
    blobs = await client._store_call(lambda s: bstore.job_blobs(primary))
    missing: list[int] = []
    definitions: dict[int, tuple[list[Any], dict[str, Any]]] = {}
    for chunk, res, job in zip(chunks, results, blobs, strict=True):
        found: tuple[list[Any], dict[str, Any]] | None = None
        for source in (res, job):
            if source is None:
                continue
            d = client._codec.deserializer(source)
            # a cancel-before-start or a lost job leaves a result without the call: use the job's own then
            if str(d.get("f") or "?") != "?" and (d.get("a") or d.get("k")):
                found = (list(d.get("a") or []), dict(d.get("k") or {}))
                break
        if found is None:
            missing.append(chunk)
        else:
            definitions[chunk] = found
    if missing:
        raise TaskqError(
            f"cannot re-run items of batch {batch.id}: the inputs of {len(missing)} chunk(s) (first: chunk "
            f"{missing[0]}) are no longer stored (results are kept TASKQ_KEEP_RESULT seconds); submit them again"
        )
    token = uuid.uuid4().hex[:8]
    job_fn = RUNNER_NAME if m.runner else m.function
    header = m.header(store, function=job_fn)
    now = now_ms()
    rows: list[Any] = []
    new: dict[int, tuple[str, list[int]]] = {}
    for chunk in chunks:
        offsets = failed[chunk]
        args, kwargs = definitions[chunk]
        if m.runner:
            kwargs = {**kwargs, "items": take_items(kwargs.get("items"), list(offsets), m.mode)}
        job_id = qualify(m.tenant, f"{m.batch}.r{token}.{chunk}")
        job_bytes = client._codec.serializer({"t": None, "f": job_fn, "a": args, "k": kwargs, "et": now})
        start, _ = m.bounds(chunk)
        rows += [job_id, job_bytes, _chunk_repr(m.function, start, start + len(offsets)) + " re-run"]
        new[chunk] = (job_id, list(offsets))
    await _write_jobs(client, bstore, header, rows, fresh=True)
    patches = {str(c): encode_patch_list([*batch._patches.get(c, []), new[c]]) for c in new}
    await client._store_call(lambda s: bstore.write_patches(m.tenant, m.batch, patches, ttl_ms=header.meta_ttl_ms))
    return new


class AsyncBatchMethods(AsyncClientCore):
    """Batch methods of :class:`~taskq_sdk.AsyncClient`."""

    async def map(
        self,
        fn: str | Callable[..., Any],
        items: Iterable[Any],
        /,
        *,
        chunk_size: int = 1,
        key: str | None = None,
        star: bool = False,
        kwargs: dict[str, Any] | None = None,
        tenant: str | None = None,
        workspace: str | None = None,
        **options: Any,
    ) -> AsyncBatch:
        """Run job ``fn`` once per item, as one batch; returns an :class:`AsyncBatch` (results in input order).

        ``chunk_size=1`` makes one job per item; larger chunks run ``chunk_size`` items per job
        through the built-in chunk runner, which catches each item's error separately. ``key``
        makes the batch idempotent: its id is the key, and submitting the same items again
        reuses the jobs that exist (finished or running) instead of running them twice.
        ``star=True`` unpacks each item as positional arguments; ``kwargs`` go to every call.
        SDK options as in ``submit``: ``_timeout`` (per job), ``_retries``, ``_queue``,
        ``_expires``, ``_defer_by``, ``_defer_until``.

        Example::

            batch = await client.map("score", texts, chunk_size=100, key="exp1-run", kwargs={"model": "v2"})
            values = await batch.results(timeout=600)
        """
        name = _fn_name(fn)
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be a positive integer, not {chunk_size!r}")
        data = items if isinstance(items, list) else list(items)
        if star:
            for i, item in enumerate(data):
                if not isinstance(item, list | tuple):
                    raise ConfigurationError(f"star=True needs each item to be a tuple of arguments; item {i} is not")
        if chunk_size == 1:
            payloads: Iterator[Any] = iter(data)
        else:
            payloads = (data[s : s + chunk_size] for s in range(0, len(data), chunk_size))
        return await self._submit_batch(
            name,
            payloads,
            n_items=len(data),
            chunk_size=chunk_size,
            runner=chunk_size > 1,
            mode="star" if star else "items",
            kwargs=kwargs,
            key=key,
            tenant=tenant,
            workspace=workspace,
            options=options,
        )

    async def batch(self, batch_id: str) -> AsyncBatch:
        """Re-attach to a batch by id (or key), also from another process or after a kernel restart.

        Raises :class:`JobNotFound` if no such batch is stored for this client's tenant (the
        manifest expires with the batch's jobs).

        Example::

            batch = await client.batch("exp1-run")
            values = await batch.gather(errors="return")
        """
        full = self._resolve_id(batch_id)
        if full is None:
            raise _batch_not_found(batch_id)
        tenant, local = tenant_of(full), local_part(full)
        store = self._open()
        bstore = BatchStore(store.redis)
        blob, raw_patches = await self._store_call(lambda s: bstore.read_manifest(tenant, local))
        if blob is None:
            raise _batch_not_found(batch_id)
        manifest = BatchManifest.decode(blob)
        return AsyncBatch(self, manifest, decode_patches(raw_patches))

    async def _submit_batch(
        self,
        name: str,
        payloads: Iterator[Any],
        *,
        n_items: int,
        chunk_size: int,
        runner: bool,
        mode: str,
        kwargs: dict[str, Any] | None,
        key: str | None,
        tenant: str | None,
        workspace: str | None,
        options: dict[str, Any],
        kind: str = "map",
        frame: dict[str, Any] | None = None,
        index_blob: bytes | None = None,
    ) -> AsyncBatch:
        """Validate, encode, write the jobs (pipelined), then the manifest; the batch handle."""
        if mode not in MODES:
            raise ConfigurationError(f"unknown mode {mode!r}")
        for opt in options:
            if opt == "_job_id":
                raise ConfigurationError("a batch derives its job ids; use key= for an idempotent batch")
            if opt not in _MAP_OPTIONS:
                hint = "" if opt.startswith("_") else "; pass the function's keyword arguments with kwargs={...}"
                raise ConfigurationError(
                    f"unknown option {opt!r} ({', '.join(_MAP_OPTIONS)}, chunk_size, key, star, kwargs){hint}"
                )
        if kwargs is not None and not isinstance(kwargs, dict):
            raise ConfigurationError(f"kwargs= takes a dict, not {type(kwargs).__name__}")
        shared = dict(kwargs or {})
        local = _check_key(key) if key is not None else uuid.uuid4().hex
        job_fn = RUNNER_NAME if runner else name
        # one validation of options, identity and names: exactly what submit() checks
        template = self._prepare(job_fn, (), {**options, "tenant": tenant, "workspace": workspace})
        t = tenant_of(template.job_id)
        await self._check_known(name, template.queue)
        if runner:
            await self._check_known(RUNNER_NAME, template.queue)
        store = self._open()
        bstore = BatchStore(store.redis)
        header = BulkHeader(
            queue=template.queue,
            workspace=template.workspace,
            function=job_fn,
            timeout=template.timeout,
            max_tries=template.max_tries,
            state=template.state,
            score_ms=template.score_ms,
            job_ttl_ms=template.job_ttl_ms,
            meta_ttl_ms=template.job_ttl_ms + store.meta_ttl_after_finish_ms,
            batch=local,
        )
        plan = self._encode(
            name, payloads, n_items=n_items, chunk_size=chunk_size, runner=runner, mode=mode, shared=shared,
            tenant=t, local=local, hashed=key is not None,
        )  # fmt: skip
        manifest = BatchManifest(
            batch=local,
            tenant=t,
            function=name,
            runner=runner,
            mode=mode,
            n_items=n_items,
            chunk_size=chunk_size,
            key=key,
            workspace=template.workspace,
            queue=template.queue,
            timeout=template.timeout,
            max_tries=template.max_tries,
            job_ttl_ms=template.job_ttl_ms,
            created_ms=now_ms(),
            hashes=plan.hashes,
            kind=kind,
            frame=dict(frame or {}),
        )
        if index_blob is not None and len(index_blob) <= INDEX_MAX_BYTES:
            manifest.frame["index"] = True
        patches: dict[bytes, bytes] = {}
        if key is not None:
            old_blob, patches = await self._store_call(lambda s: bstore.read_manifest(t, local))
            same = False
            if old_blob is not None:
                try:
                    old = BatchManifest.decode(old_blob)
                    same = (old.hashes, old.n_items, old.chunk_size, old.runner) == (
                        manifest.hashes,
                        manifest.n_items,
                        manifest.chunk_size,
                        manifest.runner,
                    )
                except (TaskqError, ValueError, KeyError, msgpack.UnpackException):
                    same = False
            if not same and patches:
                from ._backend.batches import patches_key

                await self._store_call(lambda s: s.redis.delete(patches_key(t, local)))
                patches = {}
        flags = await _write_jobs(self, bstore, header, plan.rows, fresh=key is None)
        reused = flags.count(b"0")
        ttl = header.meta_ttl_ms
        await self._store_call(lambda s: bstore.write_manifest(t, local, manifest.encode(), ttl_ms=ttl))
        if manifest.frame.get("index") and index_blob is not None:
            await self._store_call(lambda s: bstore.write_index(t, local, index_blob, ttl_ms=ttl))
        if reused:
            logger.info(
                "batch %s: %d of %d jobs were already submitted with this key and are reused (not run again)",
                manifest.id,
                reused,
                manifest.n_jobs,
            )
        return AsyncBatch(self, manifest, decode_patches(patches), reused=reused)

    def _encode(
        self,
        name: str,
        payloads: Iterator[Any],
        *,
        n_items: int,
        chunk_size: int,
        runner: bool,
        mode: str,
        shared: dict[str, Any],
        tenant: str,
        local: str,
        hashed: bool,
    ) -> _Plan:
        """Every job's id, encoded definition and short repr; raises before anything is written."""
        plan = _Plan()
        serializer = self._codec.serializer
        limit = self._settings.max_payload_bytes
        now = now_ms()
        tail = b"\xa2et" + msgpack.packb(now)
        hashes: list[str] | None = [] if hashed else None
        prefix = qualify(tenant, f"{local}.")
        kw_repr = call_repr("", (), shared, limit=REPR_MAX)[1:-1] if shared else ""
        job_fn = RUNNER_NAME if runner else name
        rows = plan.rows
        for i, payload in enumerate(payloads):
            start = i * chunk_size
            stop = min(n_items, start + chunk_size)
            if runner:
                envelope: dict[str, Any] = {
                    "t": None,
                    "f": job_fn,
                    "a": [],
                    "k": {"function": name, "items": payload, "mode": mode, "kwargs": shared, "batch": local},
                    "et": now,
                }
                what = f"chunk {i} (items {start}-{stop - 1})"
                text = _chunk_repr(name, start, stop)
            else:
                args = list(payload) if mode == "star" else [payload]
                envelope = {"t": None, "f": job_fn, "a": args, "k": shared, "et": now}
                what = f"item {i}"
                inner = ", ".join(_short(a, REPR_MAX) for a in args)
                text = f"{name}({inner}{', ' + kw_repr if kw_repr else ''})"
                if len(text) > REPR_MAX:
                    text = text[: REPR_MAX - 1] + "…"
            try:
                job_bytes = serializer(envelope)
            except SerializationError as exc:
                raise SerializationError(f"{what}: {exc}") from None
            if len(job_bytes) > limit:
                raise PayloadTooLarge(len(job_bytes), limit, what=f"{what} of the batch")
            if hashes is not None:
                env = envelope
                digest = _content_hash(job_bytes, tail, lambda e=env: serializer({**e, "et": 0}))  # type: ignore[misc]
                hashes.append(digest)
                rows += [f"{prefix}{i}.{digest}", job_bytes, text]
            else:
                rows += [f"{prefix}{i}", job_bytes, text]
        plan.hashes = hashes
        return plan


def _batch_not_found(batch_id: str) -> JobNotFound:
    exc = JobNotFound(batch_id)
    exc.args = (
        f"Batch {batch_id!r} was not found: no manifest is stored for it (check the id and the client's tenant; "
        "manifests expire with the batch's jobs).",
    )
    return exc


class BatchFacade(ClientCore):
    """Blocking batch methods of :class:`~taskq_sdk.Client` (one line each, into the async ones)."""

    def _batch_handle(self, abatch: AsyncBatch) -> Batch:
        return Batch(abatch, self)

    def map(
        self,
        fn: str | Callable[..., Any],
        items: Iterable[Any],
        /,
        *,
        chunk_size: int = 1,
        key: str | None = None,
        star: bool = False,
        kwargs: dict[str, Any] | None = None,
        tenant: str | None = None,
        workspace: str | None = None,
        **options: Any,
    ) -> Batch:
        return self._batch_handle(
            self._call(
                self._async_batches.map,
                fn,
                items,
                chunk_size=chunk_size,
                key=key,
                star=star,
                kwargs=kwargs,
                tenant=tenant,
                workspace=workspace,
                **options,
            )
        )

    def batch(self, batch_id: str) -> Batch:
        return self._batch_handle(self._call(self._async_batches.batch, batch_id))

    @property
    def _async_batches(self) -> AsyncBatchMethods:
        assert isinstance(self._async, AsyncBatchMethods)
        return self._async
