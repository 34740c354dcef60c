"""Building a batch's results into a DataFrame, and cutting a DataFrame into chunk payloads.

Results stream back chunk by chunk into typed columns, so the client holds about one result
frame, not a Python object per row: dict results become columns prefixed with the function name,
other results one column named after the function, plus ``taskq_status``, ``taskq_error`` and
``taskq_job_id``. Needs pandas and numpy (``pip install "taskq-sdk[pandas]"``)::

    # not run: internal, the outcomes come from a batch's follower
    builder = FrameBuilder(batch.manifest, index=df.index)
    for outcome in outcomes: builder.add(outcome)
    out = builder.finish(batch_id=batch.id)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

try:
    import numpy as np
    import pandas as pd
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError('DataFrame results need pandas and numpy: pip install "taskq-sdk[pandas]"') from exc

from ..errors import ConfigurationError
from .counts import ITEM_STATUS
from .manifest import BatchManifest
from .outcomes import ChunkOutcome, RowTimes

__all__ = [
    "ATTEMPTS_COLUMN",
    "DURATION_COLUMN",
    "ERROR_COLUMN",
    "JOB_COLUMN",
    "STARTED_COLUMN",
    "STATUS_CATEGORIES",
    "STATUS_COLUMN",
    "TASKQ_COLUMNS",
    "TIMING_COLUMNS",
    "WORKER_COLUMN",
    "FrameBuilder",
    "frame_inputs",
    "frame_payloads",
    "missing_block",
]

STATUS_COLUMN = "taskq_status"
ERROR_COLUMN = "taskq_error"
JOB_COLUMN = "taskq_job_id"
STARTED_COLUMN = "taskq_started"
DURATION_COLUMN = "taskq_duration_s"
WORKER_COLUMN = "taskq_worker"
ATTEMPTS_COLUMN = "taskq_attempts"
#: the per-row timing columns of a fan-out run with ``timing=True``
TIMING_COLUMNS = (STARTED_COLUMN, DURATION_COLUMN, WORKER_COLUMN, ATTEMPTS_COLUMN)
TASKQ_COLUMNS = (STATUS_COLUMN, ERROR_COLUMN, JOB_COLUMN, *TIMING_COLUMNS)
STATUS_CATEGORIES = ["complete", "failed", "cancelled", "lost", "expired", "pending"]
_STATUS_CODE = np.zeros(256, dtype=np.int8)
for _letter, _name in ITEM_STATUS.items():
    _STATUS_CODE[_letter] = STATUS_CATEGORIES.index(_name)


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


def missing_block(k: int, dtype: Any) -> Block:
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
            parts.append(missing_block(start - pos, dtype))
        parts.append(missing_block(stop - start, dtype) if gone and present else b)
        pos = stop
    if pos < n:
        parts.append(missing_block(n - pos, dtype))
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

        # not run: internal, the outcomes come from a batch's follower
        builder = FrameBuilder(batch.manifest, index=df.index)
        for outcome in outcomes: builder.add(outcome)
        out = builder.finish(batch_id=batch.id)
    """

    def __init__(self, manifest: BatchManifest, *, index: Any = None, timing: bool = False) -> None:
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
        self.timing = _TimingColumns(n) if timing else None

    def add(self, o: ChunkOutcome) -> None:
        """Take one chunk's outcome (values are turned into small typed arrays right away)."""
        k = o.n
        self.status[o.start : o.start + k] = o.status
        if self.timing is not None and o.times is not None:
            self.timing.add(o.start, o.times)
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
        """The result frame: value columns, then ``taskq_status``, ``taskq_error``, ``taskq_job_id`` (and timing)."""
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
        columns[STATUS_COLUMN] = pd.Categorical.from_codes(codes, categories=STATUS_CATEGORIES, validate=False)
        errors = np.full(n, None, dtype=object)
        for pos, text in self.errors.items():
            errors[pos] = text
        columns[ERROR_COLUMN] = pd.Series(errors, dtype=object, copy=False)
        columns[JOB_COLUMN] = self._job_ids()
        if self.timing is not None:
            columns.update(self.timing.finish())
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


class _TimingColumns:
    """``taskq_started``, ``taskq_duration_s``, ``taskq_worker``, ``taskq_attempts`` while chunks arrive."""

    def __init__(self, n: int) -> None:
        self.started = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)  # epoch microseconds; min: NaT
        self.duration = np.full(n, np.nan)
        self.worker = np.full(n, -1, dtype=np.int32)
        self.workers: dict[str, int] = {}
        self.attempts = np.zeros(n, dtype=np.int32)

    def add(self, start: int, times: RowTimes) -> None:
        stop = start + len(times.attempts)
        nat = np.iinfo(np.int64).min
        self.started[start:stop] = [nat if t is None else t for t in times.started_us]
        self.duration[start:stop] = [np.nan if d is None else d / 1e6 for d in times.duration_us]
        codes = self.workers
        self.worker[start:stop] = [-1 if w is None else codes.setdefault(w, len(codes)) for w in times.worker]
        self.attempts[start:stop] = times.attempts

    def finish(self) -> dict[str, Any]:
        started = pd.Series(self.started.view("datetime64[us]")).astype("datetime64[ns]").dt.tz_localize("UTC")
        return {
            STARTED_COLUMN: started,
            DURATION_COLUMN: pd.Series(self.duration, copy=False),
            WORKER_COLUMN: pd.Categorical.from_codes(self.worker, categories=list(self.workers), validate=False),
            ATTEMPTS_COLUMN: pd.Series(self.attempts, copy=False),
        }


def _on_range_index(values: Any, n: int) -> Any:
    if isinstance(values, pd.Series) and not isinstance(values.index, pd.RangeIndex):
        return values.set_axis(pd.RangeIndex(n))
    return values


# ============================================================================ cutting a frame into chunks
def frame_inputs(
    data: pd.DataFrame | pd.Series, column: Any, columns: Sequence[Any] | None, rows: bool
) -> tuple[Any, str]:
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


def frame_payloads(source: pd.DataFrame | pd.Series, mode: str, bounds: Sequence[tuple[int, int]]) -> Iterator[Any]:
    """Each chunk's payload for the chunk runner (numpy slices for number columns: cheap both ways)."""
    if mode == "series":
        assert isinstance(source, pd.Series)
        col = _column_source(source)
        for s, e in bounds:
            yield _cut(col, s, e)
        return
    assert isinstance(source, pd.DataFrame)
    names = list(source.columns)
    cols = [_column_source(source.iloc[:, i]) for i in range(len(names))]
    for s, e in bounds:
        yield [names, [_cut(c, s, e) for c in cols]]
