"""Submitting batches: ``client.map``, ``client.batch`` (re-attach) and the DataFrame fan-out.

The options are validated once (by the same code as ``submit``: :meth:`ClientCore.prepare`), each
job's definition is encoded and size-checked before anything is written (:mod:`.writer`), then the
jobs go to the server a few thousand per Lua call, then the manifest::

    batch = await map_items(core, "score", texts, chunk_size=500, key="exp1-run")
    again = await attach(core, "exp1-run")          # from another process, after a kernel restart
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import msgpack

from .._backend.batches import BulkHeader
from .._backend.durable import durable_timeout_ms
from .._backend.store import now_ms
from .._chunks import MODES, RUNNER_NAME
from .._core import SUBMIT_OPTIONS, job_name
from .._names import JOB_ID_RE, local_part, new_job_id, tenant_of
from ..errors import BadArguments, ConfigurationError, JobNotFound, SerializationError, TaskqError
from .autochunk import choose_sizes, plan_rest, unknown_sizes
from .handles import AsyncBatch
from .manifest import BatchManifest, decode_patches, runs_of
from .writer import Plan, encode_jobs, write_jobs

if TYPE_CHECKING:
    import pandas as pd

    from .._core import ClientCore

__all__ = ["attach", "map_items", "submit_batch", "submit_frame"]

logger = logging.getLogger("taskq_sdk.batch")

KEY_MAX = 120
INDEX_MAX_BYTES = 32 * 1024 * 1024  # a fan-out's index is stored for re-attach up to this size
#: submit's options that apply to every job of a map (an id and the cache are per call: key= and cache=)
MAP_OPTIONS = tuple(o for o in SUBMIT_OPTIONS if o not in ("_job_id", "_cache"))


def _check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > KEY_MAX or not JOB_ID_RE.fullmatch(key):
        raise ConfigurationError(
            f"batch key {key!r} is not valid: use 1-{KEY_MAX} characters from letters, digits and _ . - = + @ / "
            "(no ':' and no spaces)"
        )
    return key


async def map_items(
    core: ClientCore,
    fn: str | Callable[..., Any],
    items: Iterable[Any],
    /,
    *,
    chunk_size: int | str = "auto",
    key: str | None = None,
    star: bool = False,
    kwargs: dict[str, Any] | None = None,
    tenant: str | None = None,
    workspace: str | None = None,
    timing: bool = False,
    **options: Any,
) -> AsyncBatch:
    """What ``client.map`` does (options as documented there): chunks sized automatically, or as given.

    Example::

        batch = await map_items(core, "score", texts, chunk_size=100, key="exp1-run")
    """
    name = job_name(fn, "map()")
    check_chunk_size(chunk_size)
    data = items if isinstance(items, list) else list(items)
    if star:
        for i, item in enumerate(data):
            if not isinstance(item, list | tuple):
                raise ConfigurationError(f"star=True needs each item to be a tuple of arguments; item {i} is not")

    def payloads(bounds: Sequence[tuple[int, int]], runner: bool) -> Iterator[Any]:
        if runner:
            return (data[s:e] for s, e in bounds)
        return (data[s] for s, _ in bounds)

    return await submit_batch(
        core,
        name,
        payloads,
        n_items=len(data),
        chunk_size=chunk_size,
        runner=chunk_size != 1,
        mode="star" if star else "items",
        kwargs=kwargs,
        key=key,
        tenant=tenant,
        workspace=workspace,
        options=options,
        timing=timing,
    )


def check_chunk_size(chunk_size: Any) -> None:
    """``chunk_size`` must be ``"auto"`` or a positive integer."""
    if chunk_size == "auto" and isinstance(chunk_size, str):
        return
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ConfigurationError(f'chunk_size must be "auto" or a positive integer, not {chunk_size!r}')


async def attach(core: ClientCore, batch_id: str) -> AsyncBatch:
    """What ``client.batch`` does: re-attach to a batch by id (or key), from anywhere.

    Raises :class:`JobNotFound` if no such batch is stored for this client's tenant (the
    manifest expires with the batch's jobs).

    Example::

        batch = await client.batch("exp1-run")
        values = await batch.gather(errors="return")
    """
    full = core.resolve_id(batch_id)
    if full is None:
        raise _batch_not_found(batch_id)
    tenant, local = tenant_of(full), local_part(full)
    blob, raw_patches = await core.call(lambda s: s.batches.read_manifest(tenant, local))
    if blob is None:
        raise _batch_not_found(batch_id)
    manifest = BatchManifest.decode(blob)
    return AsyncBatch(core, manifest, decode_patches(raw_patches))


async def submit_batch(
    core: ClientCore,
    name: str,
    payloads: Callable[[Sequence[tuple[int, int]], bool], Iterator[Any]],
    *,
    n_items: int,
    chunk_size: int | str,
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
    timing: bool = False,
) -> AsyncBatch:
    """Validate, encode, write the jobs (pipelined), then the manifest; the batch handle.

    ``payloads(bounds, runner)`` yields the payload of each ``[start, stop)`` of items (for the
    chunk runner, or one item per job). With ``chunk_size="auto"`` the sizes come from
    :mod:`.autochunk` (which may write the first chunks as a probe before the others are
    planned); a map whose chunks are all single items then runs them as plain jobs.
    """
    if mode not in MODES:
        raise ConfigurationError(f"unknown mode {mode!r}")
    for opt in options:
        if opt == "_job_id":
            raise ConfigurationError("a batch derives its job ids; use key= for an idempotent batch")
        if opt == "timeout":
            raise BadArguments.timeout_is_a_wait(name, options[opt], f"batch.results(timeout={options[opt]!r})")
        if opt not in MAP_OPTIONS:
            hint = "" if opt.startswith("_") else "; pass the function's keyword arguments with kwargs={...}"
            raise ConfigurationError(
                f"unknown option {opt!r} ({', '.join(MAP_OPTIONS)}, chunk_size, key, star, kwargs){hint}"
            )
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ConfigurationError(f"kwargs= takes a dict, not {type(kwargs).__name__}")
    if not isinstance(timing, bool):
        raise ConfigurationError(f"timing= takes True or False, not {timing!r}")
    shared = dict(kwargs or {})
    local = _check_key(key) if key is not None else new_job_id()
    job_fn = RUNNER_NAME if runner else name
    auto = chunk_size == "auto"
    # one validation of options, identity and names: exactly what submit() checks
    template = core.prepare(job_fn, (), {**options, "tenant": tenant, "workspace": workspace})
    t = tenant_of(template.job_id)
    await core.check_known(name, template.queue)
    await core.check_limit_shared(template.limit_key, t)
    if runner or auto:
        await core.check_known(RUNNER_NAME, template.queue)
    await core.check_arguments(name, name, template.queue, shared, wait_hint=None)
    manifest = BatchManifest(
        batch=local,
        tenant=t,
        function=name,
        runner=runner,
        mode=mode,
        n_items=n_items,
        chunk_size=chunk_size if isinstance(chunk_size, int) else 1,
        key=key,
        workspace=template.workspace,
        queue=template.queue,
        timeout=template.timeout,
        max_tries=template.max_tries,
        job_ttl_ms=template.job_ttl_ms,
        created_ms=now_ms(),
        kind=kind,
        frame=dict(frame or {}),
        timing=timing,
        limit_key=template.limit_key,
    )
    if index_blob is not None and len(index_blob) <= INDEX_MAX_BYTES:
        manifest.frame["index"] = True
    store = core.open()

    def header_for(function: str) -> BulkHeader:
        made = manifest.header(store, function=function, batch_state=template.state, score_ms=template.score_ms)
        return replace(made, durable_ms=durable_timeout_ms(core.settings)) if template.durable else made

    header = header_for(job_fn)
    patches: dict[bytes, bytes] = {}
    old: BatchManifest | None = None
    if key is not None:
        old_blob, patches = await core.call(lambda s: s.batches.read_manifest(t, local))
        if old_blob is not None:
            try:
                old = BatchManifest.decode(old_blob)
            except (TaskqError, ValueError, KeyError, msgpack.UnpackException):
                old = None

    def encode(bounds: list[tuple[int, int]], first: int) -> Plan:
        return encode_jobs(
            core, name, payloads(bounds, runner), bounds=bounds, runner=runner, mode=mode, shared=shared,
            tenant=t, local=local, hashed=key is not None, first=first, limit_key=template.limit_key,
            timing=timing,
        )  # fmt: skip

    written: list[bytes] = []
    probe_hashes: list[str] = []
    probe_ids: list[str] = []
    if auto:
        probe_bounds: list[tuple[int, int]] = []

        probe_events = contextlib.AsyncExitStack()
        events: list[Any] = []  # the batch's event subscription, opened before the probe's first job

        async def probe(sizes: list[int]) -> None:
            if not events:
                events.append(await probe_events.enter_async_context(core.batch_events(t, manifest.batch)))
            if not probe_bounds:
                # every item is checked before the probe's jobs are written (the final chunks differ)
                check = [(i, i + 1) for i in range(len(sizes))]
                for size in unknown_sizes(n_items - len(sizes), workers=len(sizes)):
                    check.append((check[-1][1], check[-1][1] + size))
                encode(check[len(sizes) :], len(sizes)).rows.clear()
            fresh_bounds: list[tuple[int, int]] = []
            at = probe_bounds[-1][1] if probe_bounds else 0
            for size in sizes:
                fresh_bounds.append((at, at + size))
                at += size
            plan = encode(fresh_bounds, len(probe_bounds))
            probe_bounds.extend(fresh_bounds)
            probe_hashes.extend(plan.hashes or [])
            probe_ids.extend(str(plan.rows[i]) for i in range(0, len(plan.rows), 3))
            written.append(await write_jobs(core, header, plan.rows, fresh=key is None))

        async def probe_started() -> bool:
            codes = await core.call(lambda s: s.batches.statuses(probe_ids))
            return any(c != ord("q") for c in codes)

        async def probe_news(timeout: float) -> None:
            # a probe job started or finished (its measurement is written before it finishes)
            await events[0].get(timeout)

        single = None
        if old is not None and old.auto and old.n_items == n_items and old.mode == mode:
            sizes = old.sizes()  # the same key again: the same chunks, so unchanged ones are reused
            single = not old.runner
        elif old is not None and old.auto and old.runner and 0 < old.n_items < n_items and old.mode == mode:
            # rows appended: the old chunks again (reused where unchanged), new ones for the rest
            sizes = old.sizes() + await plan_rest(
                core, name, n_items=n_items - old.n_items, queue=template.queue, tenant=t,
                target=core.settings.target_chunk_seconds,
            )  # fmt: skip
            single = False
        else:
            async with probe_events:
                sizes = await choose_sizes(
                    core, name, n_items=n_items, queue=template.queue, tenant=t,
                    target=core.settings.target_chunk_seconds, probe=probe, probe_started=probe_started,
                    deferred=template.state == "deferred", news=probe_news,
                )  # fmt: skip
        if single is None:
            single = kind == "map" and not probe_ids and all(size == 1 for size in sizes)
        if single:
            runner = manifest.runner = False  # one item per job: plain jobs, as with chunk_size=1
            job_fn = name
            header = header_for(job_fn)
        manifest.runs = runs_of(sizes)
        manifest.chunk_size = max(sizes, default=1)
    bounds = [manifest.bounds(c) for c in range(manifest.n_jobs)]
    done = len(probe_ids)
    try:
        plan = encode(bounds[done:], done)
    except TaskqError:
        for job_id in probe_ids:  # a later item cannot be sent: the probe's jobs go too
            await core.cancel(job_id)
        raise
    if plan.hashes is not None:
        manifest.hashes = probe_hashes + plan.hashes
    if key is not None:
        same = False
        if old is not None and old.hashes is not None and manifest.hashes is not None and old.runner == runner:
            # re-runs stay valid for the chunks that are the same job again (same items, same content)
            n_old = old.n_jobs
            same = all(
                int(c) < min(n_old, manifest.n_jobs)
                and old.hashes[int(c)] == manifest.hashes[int(c)]
                and old.bounds(int(c)) == manifest.bounds(int(c))
                for c in patches
            )
        if not same and patches:
            await core.call(lambda s: s.batches.clear_patches(t, local))
            patches = {}
    written.append(await write_jobs(core, header, plan.rows, fresh=key is None))
    flags = b"".join(written)
    reused = flags.count(b"0")
    ttl = header.meta_ttl_ms
    await core.call(lambda s: s.batches.write_manifest(t, local, manifest.encode(), ttl_ms=ttl))
    if manifest.frame.get("index") and index_blob is not None:
        await core.call(lambda s: s.batches.write_index(t, local, index_blob, ttl_ms=ttl))
    if reused:
        logger.info(
            "batch %s: %d of %d jobs were already submitted with this key and are reused (not run again)",
            manifest.id,
            reused,
            manifest.n_jobs,
        )
    return AsyncBatch(core, manifest, decode_patches(patches), reused=reused)


def _batch_not_found(batch_id: str) -> JobNotFound:
    exc = JobNotFound(batch_id)
    exc.args = (
        f"Batch {batch_id!r} was not found: no manifest is stored for it (check the id and the client's tenant; "
        "manifests expire with the batch's jobs).",
    )
    return exc


async def submit_frame(
    core: ClientCore,
    data: pd.DataFrame | pd.Series,
    fn: str | Callable[..., Any],
    *,
    column: Any,
    columns: Sequence[Any] | None,
    rows: bool,
    chunk_size: int | str,
    prefix: str | None,
    expand: bool,
    key: str | None,
    kwargs: dict[str, Any] | None,
    options: dict[str, Any],
    timing: bool = False,
) -> AsyncBatch:
    """What ``df.taskq.apply`` submits: chunks of rows through the chunk runner (see :mod:`taskq_sdk.pandas`)."""
    from .frame import frame_inputs, frame_payloads

    source, mode = frame_inputs(data, column, columns, rows)
    check_chunk_size(chunk_size)
    if prefix is not None and not isinstance(prefix, str):
        raise ConfigurationError(f"prefix= takes a string, not {type(prefix).__name__}")
    name = job_name(fn, "apply()")
    try:
        index_blob: bytes | None = core.codec.dumps(data.index)
    except SerializationError:
        index_blob = None
    options = dict(options)
    tenant = options.pop("tenant", None)
    workspace = options.pop("workspace", None)
    return await submit_batch(
        core,
        name,
        lambda bounds, _runner: frame_payloads(source, mode, bounds),
        n_items=len(source),
        chunk_size=chunk_size,
        runner=True,
        mode=mode,
        kwargs=kwargs,
        key=key,
        tenant=tenant,
        workspace=workspace,
        options=options,
        kind="frame",
        frame={"mode": mode, "prefix": prefix if prefix is not None else name, "expand": expand},
        index_blob=index_blob,
        timing=timing,
    )
