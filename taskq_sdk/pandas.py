"""DataFrame fan-out: run a job function over a column, several columns or whole rows, in chunks.

``import taskq_sdk.pandas`` registers a ``.taskq`` accessor on DataFrames and Series::

    import taskq_sdk.pandas  # registers the accessor
    out = df.taskq.apply("sentiment", column="text", client=client)
    out[["sentiment_score", "sentiment_label", "taskq_status", "taskq_error"]]
    fixed = taskq_sdk.pandas.rerun_failed(out)      # re-runs only the failed rows

Rows are chunked into jobs of the built-in chunk runner; an error in one row is caught and
recorded in that row only. The result is a new DataFrame on the original index (string labels,
duplicates and MultiIndex included): dict results become columns prefixed with the function
name (``sentiment_score``), other results one column named after the function, plus
``taskq_status`` (complete, failed, cancelled, lost, expired), ``taskq_error`` and
``taskq_job_id``. Results stream back chunk by chunk into typed columns, so the client holds
about one result frame, not a Python object per row.

Inputs: ``column="text"`` calls ``fn(value)`` per row (like ``df["text"].apply(fn)``);
``columns=["x", "y"]`` calls ``fn(x, y)``; ``rows=True`` calls ``fn(row)`` with the row as a
``dict``. ``key=`` makes the run idempotent: re-running the cell after a kernel restart reuses
what was submitted, and ``client.batch(key).to_frame()`` gathers it from anywhere.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

try:
    import numpy as np
    import pandas as pd
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('taskq_sdk.pandas needs pandas and numpy: pip install "taskq-sdk[pandas]"') from exc

from ._callables import default_async_client, default_client, display_name, job_target, with_default_priority
from .batch.frame import (
    ATTEMPTS_COLUMN,
    DURATION_COLUMN,
    JOB_COLUMN,
    STARTED_COLUMN,
    STATUS_CATEGORIES,
    STATUS_COLUMN,
    TASKQ_COLUMNS,
    WORKER_COLUMN,
    FrameBuilder,
    missing_block,
)
from .batch.handles import AsyncBatch, gather_frame, retry_items
from .batch.submit import submit_frame
from .errors import ConfigurationError
from .limits import chunk_size_for
from .row_cache import lookup_rows, merge_rows, store_rows
from .views.progress import BatchView, make_batch_view

if TYPE_CHECKING:
    from .client import AsyncClient, Client

__all__ = ["FrameBuilder", "TaskqAccessor", "apply", "apply_async", "rerun_failed", "rerun_failed_async"]

#: which client ran a fan-out, so ``rerun_failed(out)`` works without ``client=``
_CLIENTS: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


async def _gather(
    batch: AsyncBatch, index: Any, timeout: float | None, progress: bool | str | BatchView
) -> pd.DataFrame:
    out = await gather_frame(batch, timeout, progress, index=index)
    out.attrs["taskq"]["reused"] = batch.reused
    return out


async def _submit(core: Any, data: pd.DataFrame | pd.Series, fn: str | Callable[..., Any], **how: Any) -> AsyncBatch:
    # result columns keep the function's own name; the job goes by the name the cluster shipped it under
    if how.get("prefix") is None:
        how["prefix"] = display_name(fn)
    how["options"] = with_default_priority(fn, how.get("options") or {})
    how["chunk_size"] = chunk_size_for(fn, how["chunk_size"], how["options"])  # a limit counts jobs
    target = await job_target(core, fn)
    how["chunk_size"] = await core.chunk_size_by_name(target, how["chunk_size"], how["options"])
    return await submit_frame(core, data, target, **how)


async def apply_async(
    data: pd.DataFrame | pd.Series,
    fn: str | Callable[..., Any],
    *,
    client: AsyncClient | None = None,
    column: Any = None,
    columns: Sequence[Any] | None = None,
    rows: bool = False,
    chunk_size: int | str = "auto",
    prefix: str | None = None,
    expand: bool = True,
    key: str | None = None,
    kwargs: dict[str, Any] | None = None,
    timeout: float | None = None,
    progress: bool | str = False,
    cache: bool | float | timedelta = False,
    timing: bool = False,
    **options: Any,
) -> pd.DataFrame:
    """:func:`apply` for ``async`` code, with an :class:`~taskq_sdk.AsyncClient`.

    Example::

        out = await taskq_sdk.pandas.apply_async(df, "sentiment", column="text", client=aclient)
    """
    client = client if client is not None else default_async_client("apply_async()")
    how = {"column": column, "columns": columns, "rows": rows, "kwargs": kwargs, "prefix": prefix, "expand": expand}
    lookup = await lookup_rows(client.core, data, fn, cache=cache, key=key, **how)
    if lookup is not None:  # only the rows the cache lacks run (taskq_sdk.row_cache)
        todo, computed = lookup.todo, None
        if len(todo):
            computed = await apply_async(
                data.iloc[todo], fn, client=client, chunk_size=chunk_size, timeout=timeout,
                progress=progress, timing=timing, **how, **options,
            )  # fmt: skip
            await store_rows(client.core, lookup, computed)
        merged = merge_rows(lookup, data.index, computed)
        return _timing_columns(merged) if timing else merged
    batch = await _submit(
        client.core, data, fn, column=column, columns=columns, rows=rows, chunk_size=chunk_size, prefix=prefix,
        expand=expand, key=key, kwargs=kwargs, options=options, timing=timing,
    )  # fmt: skip
    return await _gather(batch, data.index, timeout, progress)


def apply(
    data: pd.DataFrame | pd.Series,
    fn: str | Callable[..., Any],
    *,
    client: Client | None = None,
    column: Any = None,
    columns: Sequence[Any] | None = None,
    rows: bool = False,
    chunk_size: int | str = "auto",
    prefix: str | None = None,
    expand: bool = True,
    key: str | None = None,
    kwargs: dict[str, Any] | None = None,
    timeout: float | None = None,
    progress: bool | str = True,
    cache: bool | float | timedelta = False,
    timing: bool = False,
    **options: Any,
) -> pd.DataFrame:
    """Run job ``fn`` on every row of ``data`` in chunks on the workers; a result frame on ``data``'s index.

    ``column=`` / ``columns=`` / ``rows=True`` choose what each call receives (a Series needs
    none). Dict results become columns ``{prefix}_{key}`` (``prefix`` defaults to the function
    name; ``prefix=""`` keeps the bare keys), other results one column named ``prefix``;
    ``expand=False`` keeps dicts in one column. ``chunk_size="auto"`` (the default) sizes each
    chunk job to about ``TASKQ_TARGET_CHUNK_SECONDS`` from measured row times; an integer fixes
    it. Per-row errors land in ``taskq_error`` with
    ``taskq_status == "failed"``; other rows are unaffected. ``key=`` makes a re-run reuse
    submitted work. ``_timeout=`` is per chunk job. ``progress`` shows rows done / failed /
    running with rate and ETA (a widget in Jupyter, tqdm elsewhere). ``cache=True`` (or a
    timedelta) stores each complete row's result by its inputs: a re-run computes only the rows
    that changed or failed (see :mod:`taskq_sdk.row_cache`). ``timing=True`` adds, per row,
    ``taskq_started`` (UTC), ``taskq_duration_s``, ``taskq_worker`` and ``taskq_attempts``
    (timing off reads no clock per row and sends nothing extra).

    Example::

        out = taskq_sdk.pandas.apply(df, "sentiment", column="text", client=client)
        df.join(out)
    """
    client = client if client is not None else default_client("df.taskq.apply()")
    portal = client.portal
    how = {"column": column, "columns": columns, "rows": rows, "kwargs": kwargs, "prefix": prefix, "expand": expand}
    lookup = portal.call(lookup_rows, client.async_client.core, data, fn, cache=cache, key=key, **how)
    if lookup is not None:  # only the rows the cache lacks run (taskq_sdk.row_cache)
        todo, computed = lookup.todo, None
        if len(todo):
            computed = apply(
                data.iloc[todo], fn, client=client, chunk_size=chunk_size, timeout=timeout,
                progress=progress, timing=timing, **how, **options,
            )  # fmt: skip
            portal.call(store_rows, client.async_client.core, lookup, computed)
        merged = merge_rows(lookup, data.index, computed)
        return _timing_columns(merged) if timing else merged
    batch = portal.call(
        _submit, client.async_client.core, data, fn, column=column, columns=columns, rows=rows,
        chunk_size=chunk_size, prefix=prefix, expand=expand, key=key, kwargs=kwargs, options=options, timing=timing,
    )  # fmt: skip
    _CLIENTS[batch.id] = client
    # the view is made here, in the caller's thread, so a notebook shows it under the running cell
    view = make_batch_view(progress, batch.manifest, lambda: portal.call(batch.cancel)) or False
    return portal.call(_gather, batch, data.index, timeout, view)


def _timing_columns(out: pd.DataFrame) -> pd.DataFrame:
    """The timing columns with their dtypes on a frame that mixes cached rows (not run now: no time,
    no worker, 0 attempts) with computed ones."""
    started = out[STARTED_COLUMN] if STARTED_COLUMN in out else pd.Series(pd.NaT, index=out.index)
    out[STARTED_COLUMN] = pd.to_datetime(started, utc=True).astype("datetime64[ns, UTC]")
    out[DURATION_COLUMN] = out[DURATION_COLUMN].astype(float) if DURATION_COLUMN in out else np.nan
    worker = out[WORKER_COLUMN].astype(object) if WORKER_COLUMN in out else pd.Series(None, index=out.index)
    out[WORKER_COLUMN] = pd.Categorical(worker.where(worker.notna(), None))
    attempts = out[ATTEMPTS_COLUMN] if ATTEMPTS_COLUMN in out else pd.Series(0, index=out.index)
    out[ATTEMPTS_COLUMN] = attempts.fillna(0).astype(np.int32)
    order = [c for c in out.columns if c not in TASKQ_COLUMNS] + [c for c in TASKQ_COLUMNS if c in out.columns]
    return out[order]


def _positions_to_rerun(out: pd.DataFrame, size: int) -> np.ndarray[Any, Any]:
    if STATUS_COLUMN not in out.columns:
        raise ConfigurationError("rerun_failed() takes the frame apply() returned (it has no taskq_status column)")
    if len(out) != size:
        raise ConfigurationError(
            f"rerun_failed() needs the whole frame apply() returned ({size} rows), not {len(out)} rows: "
            "rows are matched by position"
        )
    status = out[STATUS_COLUMN].to_numpy()
    return np.flatnonzero(status != "complete")


def _merge(out: pd.DataFrame, sub: pd.DataFrame, positions: np.ndarray[Any, Any]) -> pd.DataFrame:
    """A copy of ``out`` with the rows at ``positions`` taken from ``sub`` (same length and order)."""
    result = out.copy()
    for col in sub.columns:
        new_values = sub[col].iloc[positions]
        if col in (STATUS_COLUMN, JOB_COLUMN, WORKER_COLUMN):
            merged = result[col].to_numpy(dtype=object, copy=True) if col in result.columns else np.full(len(out), None)
            merged[positions] = new_values.astype(object).to_numpy()
            categories = (
                STATUS_CATEGORIES if col == STATUS_COLUMN else [c for c in dict.fromkeys(merged) if c is not None]
            )
            result[col] = pd.Categorical(merged, categories=categories)
            continue
        if col not in result.columns:
            result[col] = missing_block(len(out), new_values.dtype).to_numpy()
        current = result[col]
        target = pd.concat([current.iloc[:0], new_values.iloc[:0]]).dtype
        column = current.astype(target) if current.dtype != target else current.copy()
        column.iloc[positions] = new_values.to_numpy()
        result[col] = column
    order = [c for c in result.columns if c not in TASKQ_COLUMNS] + [c for c in TASKQ_COLUMNS if c in result.columns]
    return result[order]


def _batch_of(out: pd.DataFrame) -> str:
    info = out.attrs.get("taskq")
    if not isinstance(info, dict) or not info.get("batch"):
        raise ConfigurationError(
            "this frame does not say which batch made it (attrs['taskq'] is missing); pass the frame apply() returned"
        )
    return str(info["batch"])


async def rerun_failed_async(
    out: pd.DataFrame, *, client: AsyncClient | None = None, timeout: float | None = None, progress: bool | str = False
) -> pd.DataFrame:
    """:func:`rerun_failed` for ``async`` code.

    Example::

        out = await taskq_sdk.pandas.apply_async(df, "score", column="text", client=aclient)
        fixed = await taskq_sdk.pandas.rerun_failed_async(out, client=aclient)
    """
    client = client if client is not None else default_async_client("rerun_failed_async()")
    batch = await client.batch(_batch_of(out))
    positions = _positions_to_rerun(out, batch.size)
    if not len(positions):
        return out.copy()
    await retry_items(batch, positions.tolist())
    chunks = sorted({batch.manifest.locate(int(p))[0] for p in positions})
    sub = await gather_frame(batch, timeout, progress, chunks=chunks)
    return _merge(out, sub, positions)


def rerun_failed(
    out: pd.DataFrame, *, client: Client | None = None, timeout: float | None = None, progress: bool | str = True
) -> pd.DataFrame:
    """Re-run only the rows of ``out`` whose ``taskq_status`` is not complete; a new frame with their new results.

    ``out`` is the whole frame :func:`apply` returned (rows are matched by position). The client
    defaults to the one that ran it.

    Example::

        out = df.taskq.apply("sentiment", column="text", client=client)
        out = taskq_sdk.pandas.rerun_failed(out)      # after fixing the worker's code
    """
    batch_id = _batch_of(out)
    if client is None:
        client = _CLIENTS.get(batch_id)
        if client is None or client.is_closed:
            client = default_client("rerun_failed()")
    batch = client.batch(batch_id)
    positions = _positions_to_rerun(out, batch.size)
    if not len(positions):
        return out.copy()
    abatch = batch.async_batch
    client.portal.call(retry_items, abatch, positions.tolist())
    chunks = sorted({batch.manifest.locate(int(p))[0] for p in positions})
    view = make_batch_view(progress, batch.manifest, batch.cancel) or False
    sub = client.portal.call(gather_frame, abatch, timeout, view, chunks=chunks)
    _CLIENTS[batch_id] = client
    return _merge(out, sub, positions)


# ============================================================================ the accessor
class TaskqAccessor:
    """``df.taskq`` / ``series.taskq``: fan a job function out over rows (see :func:`apply`).

    Example::

        out = df.taskq.apply("sentiment", column="text", client=client)
        out = df.taskq.apply("score", column="text", client=client)
        out = out.taskq.rerun_failed()
    """

    def __init__(self, obj: pd.DataFrame | pd.Series) -> None:
        self._obj = obj

    def apply(
        self,
        fn: str | Callable[..., Any],
        *,
        client: Client | None = None,
        column: Any = None,
        columns: Sequence[Any] | None = None,
        rows: bool = False,
        chunk_size: int | str = "auto",
        prefix: str | None = None,
        expand: bool = True,
        key: str | None = None,
        kwargs: dict[str, Any] | None = None,
        timeout: float | None = None,
        progress: bool | str = True,
        cache: bool | float | timedelta = False,
        timing: bool = False,
        **options: Any,
    ) -> pd.DataFrame:
        """:func:`taskq_sdk.pandas.apply` on this frame or Series (same arguments).

        Example::

            out = df.taskq.apply("sentiment", column="text", client=client)
        """
        return apply(
            self._obj, fn, client=client, column=column, columns=columns, rows=rows, chunk_size=chunk_size,
            prefix=prefix, expand=expand, key=key, kwargs=kwargs, timeout=timeout, progress=progress, cache=cache,
            timing=timing, **options,
        )  # fmt: skip

    def _info(self, what: str) -> dict[str, Any]:
        info = self._obj.attrs.get("taskq")
        if not isinstance(info, dict):
            raise ConfigurationError(f".taskq.{what} is known only on the frame df.taskq.apply() returned")
        return info

    @property
    def reused(self) -> bool:
        """Whether :meth:`apply` with ``key=`` found this work already submitted and reused it (on its result).

        Example::

            out = df.taskq.apply(score, column="text", key="reviews-v1")
            out.taskq.reused        # True when the cell ran before with the same key
        """
        return bool(self._info("reused").get("reused", False))

    @property
    def batch_id(self) -> str:
        """The id of the batch that made this frame (``client.batch(out.taskq.batch_id)`` re-attaches).

        Example::

            out = df.taskq.apply("score", column="text", client=client)
            client.batch(out.taskq.batch_id).counts()
        """
        return str(self._info("batch_id")["batch"])

    def rerun_failed(
        self, *, client: Client | None = None, timeout: float | None = None, progress: bool | str = True
    ) -> pd.DataFrame:
        """:func:`taskq_sdk.pandas.rerun_failed` on a frame :meth:`apply` returned.

        Example::

            out = df.taskq.apply("score", column="text", client=client)
            out = out.taskq.rerun_failed()
        """
        if not isinstance(self._obj, pd.DataFrame):
            raise ConfigurationError("rerun_failed() works on the DataFrame apply() returned")
        return rerun_failed(self._obj, client=client, timeout=timeout, progress=progress)


def _register() -> None:
    # `import taskq_sdk` may have registered its placeholder already (taskq_sdk._pandas_hook): keep it
    for cls, register in (
        (pd.DataFrame, pd.api.extensions.register_dataframe_accessor),
        (pd.Series, pd.api.extensions.register_series_accessor),
    ):
        current = getattr(cls.__dict__.get("taskq"), "_accessor", None)
        if not str(getattr(current, "__module__", "")).startswith("taskq_sdk."):
            register("taskq")(TaskqAccessor)


_register()
