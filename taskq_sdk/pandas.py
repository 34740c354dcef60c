"""DataFrame fan-out: run a job function over a column, several columns or whole rows, in chunks.

``import taskq_sdk.pandas`` registers a ``.taskq`` accessor on DataFrames and Series::

    import taskq_sdk.pandas  # registers the accessor
    out = df.taskq.apply("sentiment", column="text", client=client, chunk_size=500)
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
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

try:
    import numpy as np
    import pandas as pd
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('taskq_sdk.pandas needs pandas and numpy: pip install "taskq-sdk[pandas]"') from exc

from .batch import ITEM_STATUS, AsyncBatch, BatchManifest, BatchView, ChunkOutcome
from .errors import ConfigurationError, SerializationError

if TYPE_CHECKING:
    from .client import AsyncClient, Client

__all__ = ["FrameBuilder", "TaskqAccessor", "apply", "apply_async", "rerun_failed", "rerun_failed_async"]

STATUS_COLUMN = "taskq_status"
ERROR_COLUMN = "taskq_error"
JOB_COLUMN = "taskq_job_id"
TASKQ_COLUMNS = (STATUS_COLUMN, ERROR_COLUMN, JOB_COLUMN)
_STATUS_CATEGORIES = ["complete", "failed", "cancelled", "lost", "expired", "pending"]
_STATUS_CODE = np.zeros(256, dtype=np.int8)
for _letter, _name in ITEM_STATUS.items():
    _STATUS_CODE[_letter] = _STATUS_CATEGORIES.index(_name)

#: which client ran a fan-out, so ``rerun_failed(out)`` works without ``client=``
_CLIENTS: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


# ============================================================================ building the frame
Block = Any  # a chunk's values for one column: a numpy array or a pandas ExtensionArray

_FLOATS = frozenset({float, int})


def _infer(values: list[Any]) -> Block:
    """``values`` as a typed array, inferred as ``pd.Series(values)`` would (fast paths for plain numbers)."""
    kinds = set(map(type, values))
    try:
        if kinds == {int}:
            return np.array(values, dtype=np.int64)
        if kinds == {float} or kinds == _FLOATS:
            return np.array(values, dtype=np.float64)
        if kinds == {bool}:
            return np.array(values, dtype=bool)
    except OverflowError:
        pass
    series = pd.Series(values)
    return series.to_numpy() if series.dtype == object else series.array


def _all_missing(block: Block) -> bool:
    if isinstance(block, np.ndarray):
        if block.dtype.kind in "iub":
            return False
        if block.dtype.kind in "fc":
            return bool(np.isnan(block).all())
    return bool(pd.isna(block).all())


def _missing_block(k: int, dtype: Any) -> Block:
    """``k`` missing values that concatenate with ``dtype`` the way a whole-column inference would."""
    block = np.full(k, np.nan)
    if dtype is None or (isinstance(dtype, np.dtype) and dtype.kind in "iubfcO"):
        return block
    try:
        return pd.Series(block).astype(dtype).array
    except (TypeError, ValueError):
        return block


def _column(blocks: list[tuple[int, int, Block | None]], n: int) -> pd.Series:
    """One output column from per-chunk blocks (``None``: the chunk has no value for it)."""
    missing = [b is None or not len(b) or _all_missing(b) for _, _, b in blocks]
    present: list[Block] = [b for (_, _, b), gone in zip(blocks, missing, strict=True) if not gone and b is not None]
    dtypes = {b.dtype for b in present}
    if len(dtypes) == 1:
        dtype = next(iter(dtypes))
    elif dtypes:
        dtype = pd.concat([pd.Series(b[:0]) for b in present], ignore_index=True).dtype
    else:
        dtype = None
    parts: list[Block] = []
    pos = 0
    for (start, stop, b), gone in zip(blocks, missing, strict=True):
        if start > pos:
            parts.append(_missing_block(start - pos, dtype))
        parts.append(_missing_block(stop - start, dtype) if gone and present else b)
        pos = stop
    if pos < n:
        parts.append(_missing_block(n - pos, dtype))
    if not parts:
        return pd.Series(np.full(0, np.nan))
    if all(isinstance(p, np.ndarray) for p in parts) and len({p.dtype for p in parts}) == 1:
        return pd.Series(np.concatenate(parts) if len(parts) > 1 else parts[0], copy=False)
    return pd.concat([pd.Series(p, copy=False) for p in parts], ignore_index=True)


class _ColumnAcc:
    """One output column while chunks arrive: written straight into one numpy array while every chunk
    has the same number dtype (no second copy at the end), else kept as per-chunk blocks."""

    def __init__(self, builder: FrameBuilder) -> None:
        self.b = builder
        self.dense: np.ndarray[Any, Any] | None = None
        self.spans: list[tuple[int, int, int]] = []  # (chunk, start, stop) written into dense
        self.blocks: dict[int, Block] = {}

    def add(self, chunk: int, start: int, block: Block) -> None:
        stop = start + len(block)
        dense = self.dense
        if dense is not None:
            if isinstance(block, np.ndarray) and block.dtype == dense.dtype:
                dense[start:stop] = block
                self.spans.append((chunk, start, stop))
                return
            self._to_blocks()
        elif not self.blocks and isinstance(block, np.ndarray) and block.dtype.kind in "iufb":
            self.dense = np.empty(self.b.n, dtype=block.dtype)
            self.dense[start:stop] = block
            self.spans.append((chunk, start, stop))
            return
        self.blocks[chunk] = block

    def _to_blocks(self) -> None:
        assert self.dense is not None
        for chunk, start, stop in self.spans:
            self.blocks[chunk] = self.dense[start:stop].copy()
        self.dense = None
        self.spans = []

    def finish(self) -> pd.Series:
        if self.dense is not None:
            if sum(stop - start for _, start, stop in self.spans) == self.b.n:
                dense, self.dense = self.dense, None
                return pd.Series(dense, copy=False)
            self._to_blocks()
        m = self.b.m
        blocks: list[tuple[int, int, Block | None]] = []
        for chunk in sorted(self.blocks):
            start, stop = m.bounds(chunk)
            blocks.append((start, stop, self.blocks.pop(chunk)))
        return _column(blocks, self.b.n)


class FrameBuilder:
    """Collects chunk outcomes into typed columns and builds the result frame at the end.

    Example::

        builder = FrameBuilder(batch.manifest, index=df.index)
        for outcome in outcomes: builder.add(outcome)
        out = builder.finish(batch_id=batch.id)
    """

    def __init__(self, manifest: BatchManifest, *, index: Any = None) -> None:
        self.m = manifest
        n = manifest.n_items
        self.n = n
        frame = manifest.frame
        prefix = frame.get("prefix")
        self.prefix: str = str(prefix) if prefix is not None else manifest.function
        self.expand: bool = bool(frame.get("expand", True))
        self.index = index
        self.status = bytearray(b"p") * n
        self.errors: dict[int, str] = {}
        self.job_override: dict[int, str] = {}
        self.scalar_col = _ColumnAcc(self)
        self.dict_cols: dict[Any, _ColumnAcc] = {}
        self.has_scalar = False
        #: positions whose value was None in a chunk inferred as numbers: None again if the column ends up object
        self.nones: dict[Any, list[int]] = {}

    def add(self, o: ChunkOutcome) -> None:
        """Take one chunk's outcome (values are turned into small typed arrays right away)."""
        k = o.n
        self.status[o.start : o.start + k] = o.status
        for offset, (_jid, err) in o.errors.items():
            self.errors[o.start + offset] = str(err)[:1000]
        if not isinstance(o.job_ids, str):
            primary = self.m.job_id(o.chunk)
            for offset, jid in enumerate(o.job_ids):
                if jid != primary:
                    self.job_override[o.start + offset] = jid
        values = o.values
        if not o.errors and o.status.count(99) == k and (not self.expand or dict not in set(map(type, values))):
            # the common case: every row complete, no dicts - the values are the column
            self.scalar_col.add(o.chunk, o.start, self._typed(None, o.start, values))
            self.has_scalar = self.has_scalar or values.count(None) < k
            return
        scalars: list[Any] = [np.nan] * k
        dicts: dict[Any, list[Any]] = {}
        chunk_has_scalar = False
        for i, (v, letter) in enumerate(zip(values, o.status, strict=True)):
            if letter != 99:  # ord("c"): failed rows stay missing
                continue
            if self.expand and isinstance(v, dict):
                for key, x in v.items():
                    col = dicts.get(key)
                    if col is None:
                        col = dicts[key] = [np.nan] * k
                    col[i] = x
            else:
                scalars[i] = v
                if v is not None:
                    chunk_has_scalar = True
        if chunk_has_scalar or not dicts:
            self.scalar_col.add(o.chunk, o.start, self._typed(None, o.start, scalars))
            self.has_scalar = self.has_scalar or chunk_has_scalar
        for key, values in dicts.items():
            acc = self.dict_cols.get(key)
            if acc is None:
                acc = self.dict_cols[key] = _ColumnAcc(self)
            acc.add(o.chunk, o.start, self._typed(key, o.start, values))

    def _typed(self, key: Any, start: int, values: list[Any]) -> Block:
        """A chunk's values as a small typed array; remembers where ``None`` became NaN in a typed chunk."""
        block = _infer(values)
        if block.dtype != object and values.count(None):
            spots = self.nones.setdefault(key, [])
            spots.extend(start + i for i, v in enumerate(values) if v is None)
        return block

    def finish(self, *, batch_id: str | None = None) -> pd.DataFrame:
        """The result frame: value columns, then ``taskq_status``, ``taskq_error``, ``taskq_job_id``."""
        n = self.n
        columns: dict[Any, Any] = {}
        name = self.prefix or self.m.function
        if self.has_scalar or not self.dict_cols:
            columns[name] = self._restore_nones(None, self.scalar_col.finish())
        for key in list(self.dict_cols):
            label = f"{self.prefix}_{key}" if self.prefix else key
            columns[label] = self._restore_nones(key, self.dict_cols.pop(key).finish())
        codes = _STATUS_CODE[np.frombuffer(self.status, dtype=np.uint8)] if n else np.zeros(0, np.int8)
        self.status = bytearray()
        columns[STATUS_COLUMN] = pd.Categorical.from_codes(codes, categories=_STATUS_CATEGORIES, validate=False)
        errors = np.full(n, None, dtype=object)
        for pos, text in self.errors.items():
            errors[pos] = text
        columns[ERROR_COLUMN] = pd.Series(errors, dtype=object, copy=False)
        columns[JOB_COLUMN] = self._job_ids()
        # one column at a time: a DataFrame built from a dict would copy (and re-infer) every column
        out = pd.DataFrame(index=pd.RangeIndex(n))
        for label, values in columns.items():
            out[label] = _on_range_index(values, n)
        if self.index is not None:
            out.index = self.index
        out.attrs["taskq"] = {
            "batch": batch_id or self.m.id,
            "function": self.m.function,
            "prefix": self.prefix,
            "chunk_size": self.m.chunk_size,
        }
        return out

    def _restore_nones(self, key: Any, column: pd.Series) -> pd.Series:
        spots = self.nones.pop(key, None)
        if spots and column.dtype == object:
            values = column.to_numpy(copy=True)
            values[spots] = None
            return pd.Series(values, dtype=object)
        return column

    def _job_ids(self) -> pd.Categorical:
        m = self.m
        ids = [m.job_id(c) for c in range(m.n_jobs)]
        sizes = [m.bounds(c)[1] - m.bounds(c)[0] for c in range(m.n_jobs)]
        dtype = np.int32 if m.n_jobs + len(self.job_override) > 30000 else np.int16
        codes = np.repeat(np.arange(m.n_jobs, dtype=dtype), sizes) if m.n_jobs else np.zeros(0, dtype)
        if self.job_override:
            extra = sorted(set(self.job_override.values()))
            where = {jid: m.n_jobs + i for i, jid in enumerate(extra)}
            ids += extra
            for pos, jid in self.job_override.items():
                codes[pos] = where[jid]
        return pd.Categorical.from_codes(codes, categories=ids, validate=False) if ids else pd.Categorical([])


def _on_range_index(values: Any, n: int) -> Any:
    if isinstance(values, pd.Series) and not isinstance(values.index, pd.RangeIndex):
        return values.set_axis(pd.RangeIndex(n))
    return values


# ============================================================================ fan-out
def _inputs(data: pd.DataFrame | pd.Series, column: Any, columns: Sequence[Any] | None, rows: bool) -> tuple[Any, str]:
    """The object whose chunks travel to the workers, and the chunk runner's mode."""
    chosen = sum(x is not None and x is not False for x in (column, columns, rows or None))
    if isinstance(data, pd.Series):
        if chosen:
            raise ConfigurationError("a Series fans out its values; column=, columns= and rows= are for DataFrames")
        return data, "series"
    if not isinstance(data, pd.DataFrame):
        raise ConfigurationError(f"apply() takes a DataFrame or a Series, not {type(data).__name__}")
    if chosen != 1:
        raise ConfigurationError("say what each call receives: column='text', columns=['x', 'y'] or rows=True")
    if column is not None:
        if column not in data.columns:
            raise ConfigurationError(f"no column {column!r} in the DataFrame (columns: {list(data.columns)[:20]})")
        return data[column], "series"
    if columns is not None:
        cols = list(columns)
        missing = [c for c in cols if c not in data.columns]
        if missing or not cols:
            raise ConfigurationError(f"columns= names missing columns: {missing or 'none given'}")
        return data[cols], "columns"
    return data, "rows"


def _column_source(column: pd.Series) -> Any:
    """What one column's chunks are cut from: its numpy array for plain numbers, else the Series."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iufb":
        return column.to_numpy()
    return column


def _cut(source: Any, start: int, stop: int) -> Any:
    if isinstance(source, np.ndarray):
        return source[start:stop]
    return source.iloc[start:stop].reset_index(drop=True)


def _payloads(source: pd.DataFrame | pd.Series, mode: str, chunk_size: int) -> Iterator[Any]:
    """Each chunk's payload for the chunk runner (numpy slices for number columns: cheap both ways)."""
    n = len(source)
    if mode == "series":
        assert isinstance(source, pd.Series)
        col = _column_source(source)
        for s in range(0, n, chunk_size):
            yield _cut(col, s, s + chunk_size)
        return
    assert isinstance(source, pd.DataFrame)
    names = list(source.columns)
    cols = [_column_source(source.iloc[:, i]) for i in range(len(names))]
    for s in range(0, n, chunk_size):
        yield [names, [_cut(c, s, s + chunk_size) for c in cols]]


async def _submit(
    aclient: Any,
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
    from ._client_batches import _fn_name

    source, mode = _inputs(data, column, columns, rows)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ConfigurationError(f"chunk_size must be a positive integer, not {chunk_size!r}")
    if prefix is not None and not isinstance(prefix, str):
        raise ConfigurationError(f"prefix= takes a string, not {type(prefix).__name__}")
    name = _fn_name(fn)
    n = len(source)
    payloads = _payloads(source, mode, chunk_size)
    try:
        index_blob: bytes | None = aclient._codec.dumps(data.index)
    except SerializationError:
        index_blob = None
    tenant = options.pop("tenant", None)
    workspace = options.pop("workspace", None)
    batch: AsyncBatch = await aclient._submit_batch(
        name,
        payloads,
        n_items=n,
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
    return batch


async def _gather(batch: AsyncBatch, index: Any, timeout: float | None, view: BatchView | None) -> pd.DataFrame:
    out = await batch._to_frame(timeout, view, index=index)
    out.attrs["taskq"]["reused"] = batch.reused
    return out


async def apply_async(
    data: pd.DataFrame | pd.Series,
    fn: str | Callable[..., Any],
    *,
    client: AsyncClient,
    column: Any = None,
    columns: Sequence[Any] | None = None,
    rows: bool = False,
    chunk_size: int = 500,
    prefix: str | None = None,
    expand: bool = True,
    key: str | None = None,
    kwargs: dict[str, Any] | None = None,
    timeout: float | None = None,
    progress: bool | str = False,
    **options: Any,
) -> pd.DataFrame:
    """:func:`apply` for ``async`` code, with an :class:`~taskq_sdk.AsyncClient`.

    Example::

        out = await taskq_sdk.pandas.apply_async(df, "sentiment", column="text", client=aclient)
    """
    batch = await _submit(
        client, data, fn, column=column, columns=columns, rows=rows, chunk_size=chunk_size, prefix=prefix,
        expand=expand, key=key, kwargs=kwargs, options=options,
    )  # fmt: skip
    return await _gather(batch, data.index, timeout, batch._make_view(progress, batch._cancel_soon))


def apply(
    data: pd.DataFrame | pd.Series,
    fn: str | Callable[..., Any],
    *,
    client: Client,
    column: Any = None,
    columns: Sequence[Any] | None = None,
    rows: bool = False,
    chunk_size: int = 500,
    prefix: str | None = None,
    expand: bool = True,
    key: str | None = None,
    kwargs: dict[str, Any] | None = None,
    timeout: float | None = None,
    progress: bool | str = True,
    **options: Any,
) -> pd.DataFrame:
    """Run job ``fn`` on every row of ``data`` in chunks on the workers; a result frame on ``data``'s index.

    ``column=`` / ``columns=`` / ``rows=True`` choose what each call receives (a Series needs
    none). Dict results become columns ``{prefix}_{key}`` (``prefix`` defaults to the function
    name; ``prefix=""`` keeps the bare keys), other results one column named ``prefix``;
    ``expand=False`` keeps dicts in one column. Per-row errors land in ``taskq_error`` with
    ``taskq_status == "failed"``; other rows are unaffected. ``key=`` makes a re-run reuse
    submitted work. ``_timeout=`` is per chunk job. ``progress`` shows rows done / failed /
    running with rate and ETA (a widget in Jupyter, tqdm elsewhere).

    Example::

        out = taskq_sdk.pandas.apply(df, "sentiment", column="text", client=client, chunk_size=500)
        df.join(out)
    """
    batch = client._call(
        _submit, client.async_client, data, fn, column=column, columns=columns, rows=rows, chunk_size=chunk_size,
        prefix=prefix, expand=expand, key=key, kwargs=kwargs, options=options,
    )  # fmt: skip
    _CLIENTS[batch.id] = client
    view = batch._make_view(progress, lambda: client._call(batch.cancel))
    return client._call(_gather, batch, data.index, timeout, view)


# ============================================================================ re-running failures
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
        if col in (STATUS_COLUMN, JOB_COLUMN):
            merged = result[col].to_numpy(dtype=object, copy=True) if col in result.columns else np.full(len(out), None)
            merged[positions] = new_values.astype(object).to_numpy()
            categories = _STATUS_CATEGORIES if col == STATUS_COLUMN else list(dict.fromkeys(merged))
            result[col] = pd.Categorical(merged, categories=categories)
            continue
        if col not in result.columns:
            result[col] = _missing_block(len(out), new_values.dtype).to_numpy()
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
    out: pd.DataFrame, *, client: AsyncClient, timeout: float | None = None, progress: bool | str = False
) -> pd.DataFrame:
    """:func:`rerun_failed` for ``async`` code.

    Example::

        fixed = await taskq_sdk.pandas.rerun_failed_async(out, client=aclient)
    """
    batch = await client.batch(_batch_of(out))
    positions = _positions_to_rerun(out, batch.size)
    if not len(positions):
        return out.copy()
    await batch._retry(positions.tolist())
    chunks = sorted({int(p) // batch.chunk_size for p in positions})
    sub = await batch._to_frame(timeout, batch._make_view(progress, batch._cancel_soon), chunks=chunks)
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
            raise ConfigurationError("pass client=: the client that ran this fan-out is gone")
    batch = client.batch(batch_id)
    positions = _positions_to_rerun(out, batch.size)
    if not len(positions):
        return out.copy()
    abatch = batch.async_batch
    client._call(abatch._retry, positions.tolist())
    chunks = sorted({int(p) // batch.chunk_size for p in positions})
    view = abatch._make_view(progress, batch.cancel)
    sub = client._call(abatch._to_frame, timeout, view, chunks=chunks)
    _CLIENTS[batch_id] = client
    return _merge(out, sub, positions)


# ============================================================================ the accessor
class TaskqAccessor:
    """``df.taskq`` / ``series.taskq``: fan a job function out over rows (see :func:`apply`).

    Example::

        out = df.taskq.apply("sentiment", column="text", client=client, chunk_size=500)
        out = out.taskq.rerun_failed()
    """

    def __init__(self, obj: pd.DataFrame | pd.Series) -> None:
        self._obj = obj

    def apply(
        self,
        fn: str | Callable[..., Any],
        *,
        client: Client,
        column: Any = None,
        columns: Sequence[Any] | None = None,
        rows: bool = False,
        chunk_size: int = 500,
        prefix: str | None = None,
        expand: bool = True,
        key: str | None = None,
        kwargs: dict[str, Any] | None = None,
        timeout: float | None = None,
        progress: bool | str = True,
        **options: Any,
    ) -> pd.DataFrame:
        """:func:`taskq_sdk.pandas.apply` on this frame or Series (same arguments).

        Example::

            out = df.taskq.apply("sentiment", column="text", client=client, chunk_size=500)
        """
        return apply(
            self._obj, fn, client=client, column=column, columns=columns, rows=rows, chunk_size=chunk_size,
            prefix=prefix, expand=expand, key=key, kwargs=kwargs, timeout=timeout, progress=progress, **options,
        )  # fmt: skip

    def rerun_failed(
        self, *, client: Client | None = None, timeout: float | None = None, progress: bool | str = True
    ) -> pd.DataFrame:
        """:func:`taskq_sdk.pandas.rerun_failed` on a frame :meth:`apply` returned.

        Example::

            out = out.taskq.rerun_failed()
        """
        if not isinstance(self._obj, pd.DataFrame):
            raise ConfigurationError("rerun_failed() works on the DataFrame apply() returned")
        return rerun_failed(self._obj, client=client, timeout=timeout, progress=progress)


def _register() -> None:
    for register in (pd.api.extensions.register_dataframe_accessor, pd.api.extensions.register_series_accessor):
        target = pd.DataFrame if register is pd.api.extensions.register_dataframe_accessor else pd.Series
        if getattr(target, "taskq", None) is None or getattr(target.taskq, "_accessor", None) is not TaskqAccessor:
            register("taskq")(TaskqAccessor)


_register()
