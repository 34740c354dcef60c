"""Submitting batches: ``client.map``, ``client.batch`` (re-attach) and the DataFrame fan-out.

The options are validated once (by the same code as ``submit``: :meth:`ClientCore.prepare`), each
job's definition is encoded and size-checked before anything is written (:mod:`.writer`), then the
jobs go to the server a few thousand per Lua call, then the manifest::

    batch = await map_items(core, "score", texts, chunk_size=500, key="exp1-run")
    again = await attach(core, "exp1-run")          # from another process, after a kernel restart
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import msgpack

from .._backend.durable import durable_timeout_ms
from .._backend.store import now_ms
from .._chunks import MODES, RUNNER_NAME
from .._core import job_name
from .._names import JOB_ID_RE, local_part, tenant_of
from ..errors import BadArguments, ConfigurationError, JobNotFound, SerializationError, TaskqError
from .handles import AsyncBatch
from .manifest import BatchManifest, decode_patches
from .writer import encode_jobs, write_jobs

if TYPE_CHECKING:
    import pandas as pd

    from .._core import ClientCore

__all__ = ["attach", "map_items", "submit_batch", "submit_frame"]

logger = logging.getLogger("taskq_sdk.batch")

KEY_MAX = 120
INDEX_MAX_BYTES = 32 * 1024 * 1024  # a fan-out's index is stored for re-attach up to this size
MAP_OPTIONS = ("_defer_by", "_defer_until", "_expires", "_timeout", "_retries", "_queue", "_durable", "_limit_key")


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
    chunk_size: int = 1,
    key: str | None = None,
    star: bool = False,
    kwargs: dict[str, Any] | None = None,
    tenant: str | None = None,
    workspace: str | None = None,
    **options: Any,
) -> AsyncBatch:
    """What ``client.map`` does (options as documented there): one job per item, or per chunk of items.

    Example::

        batch = await map_items(core, "score", texts, chunk_size=100, key="exp1-run")
    """
    name = job_name(fn, "map()")
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
    return await submit_batch(
        core,
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
        if opt == "timeout":
            raise BadArguments.timeout_is_a_wait(name, options[opt], f"batch.results(timeout={options[opt]!r})")
        if opt not in MAP_OPTIONS:
            hint = "" if opt.startswith("_") else "; pass the function's keyword arguments with kwargs={...}"
            raise ConfigurationError(
                f"unknown option {opt!r} ({', '.join(MAP_OPTIONS)}, chunk_size, key, star, kwargs){hint}"
            )
    if kwargs is not None and not isinstance(kwargs, dict):
        raise ConfigurationError(f"kwargs= takes a dict, not {type(kwargs).__name__}")
    shared = dict(kwargs or {})
    local = _check_key(key) if key is not None else uuid.uuid4().hex
    job_fn = RUNNER_NAME if runner else name
    # one validation of options, identity and names: exactly what submit() checks
    template = core.prepare(job_fn, (), {**options, "tenant": tenant, "workspace": workspace})
    t = tenant_of(template.job_id)
    await core.check_known(name, template.queue)
    if runner:
        await core.check_known(RUNNER_NAME, template.queue)
    await core.check_arguments(name, name, template.queue, shared, wait_hint=None)
    plan = encode_jobs(
        core, name, payloads, n_items=n_items, chunk_size=chunk_size, runner=runner, mode=mode, shared=shared,
        tenant=t, local=local, hashed=key is not None, limit_key=template.limit_key,
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
    store = core.open()
    header = manifest.header(store, function=job_fn, batch_state=template.state, score_ms=template.score_ms)
    if template.durable:
        header = replace(header, durable_ms=durable_timeout_ms(core.settings))
    patches: dict[bytes, bytes] = {}
    if key is not None:
        old_blob, patches = await core.call(lambda s: s.batches.read_manifest(t, local))
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
            await core.call(lambda s: s.batches.clear_patches(t, local))
            patches = {}
    flags = await write_jobs(core, header, plan.rows, fresh=key is None)
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
    chunk_size: int,
    prefix: str | None,
    expand: bool,
    key: str | None,
    kwargs: dict[str, Any] | None,
    options: dict[str, Any],
) -> AsyncBatch:
    """What ``df.taskq.apply`` submits: chunks of rows through the chunk runner (see :mod:`taskq_sdk.pandas`)."""
    from .frame import frame_inputs, frame_payloads

    source, mode = frame_inputs(data, column, columns, rows)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ConfigurationError(f"chunk_size must be a positive integer, not {chunk_size!r}")
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
        frame_payloads(source, mode, chunk_size),
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
    )
