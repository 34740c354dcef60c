"""Row-level result cache for DataFrame fan-out: a re-run computes only the rows it has not seen.

``df.taskq.apply(fn, column="text", cache=True)`` hashes each row's inputs (pandas' own
vectorised row hash), reads the results stored for those hashes in one server round trip per
50,000 rows, submits only the other rows, stores their results, and returns one frame in the
original order. 100 changed rows of 100,000 compute 100 rows. A row's entry is keyed by the
function's identity and version (as :mod:`taskq_sdk.caching`), the call's shape (mode, column
names, ``kwargs``, ``prefix``, ``expand``) and the row's values; failed rows are never stored, so
re-running the cell re-runs exactly the failed and the changed rows::

    # not run: internal, what df.taskq.apply(fn, cache=True) runs
    lookup = await lookup_rows(core, df, score, cache=True, column="text", columns=None, rows=False,
                               kwargs=None, prefix="score", expand=True)
    todo = df.iloc[lookup.todo]                # only these rows run
    await store_rows(core, lookup, computed)   # the computed frame of todo's rows
    out = merge_rows(lookup, df.index, computed)
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from ._cache_options import cache_setting
from ._digests import inputs_digest
from ._names import DEFAULT_WORKSPACE
from .batch.frame import ERROR_COLUMN, JOB_COLUMN, STATUS_CATEGORIES, STATUS_COLUMN, TASKQ_COLUMNS, frame_inputs
from .caching import describe_function, function_digest_of
from .errors import ConfigurationError
from .serialization import FORMAT_MSGPACK, MAGIC, WIRE_VERSION, Codec

if TYPE_CHECKING:
    from ._core import ClientCore

__all__ = ["RowLookup", "lookup_rows", "merge_rows", "store_rows"]

#: rows per server round trip when reading or writing row entries
ROUND_TRIP_ROWS = 50_000
#: row values always travel as msgpack (never pickle, whatever the client's serializer)
_CODEC = Codec("msgpack")
WIRE_HEADER = MAGIC + bytes([WIRE_VERSION]) + FORMAT_MSGPACK


@dataclass
class RowLookup:
    """What the cache holds for a frame's rows: which rows hit (their stored results) and which must run."""

    tenant: str
    entry: str  # the cache entry holding this call shape's rows (one hash, row digest -> result)
    ttl_ms: int
    function: str  # for the hit/miss metrics
    digests: bytes  # 8 bytes per row of the input
    hit: np.ndarray[Any, Any]  # bool per row
    stored: list[list[Any]] = field(default_factory=list)  # per hit row, in row order: [job id, columns, values]

    @property
    def todo(self) -> np.ndarray[Any, Any]:
        """Positions of the rows that must run."""
        return np.flatnonzero(~self.hit)

    def digest(self, row: int) -> bytes:
        return self.digests[row * 8 : row * 8 + 8]


def _row_digests(source: pd.DataFrame | pd.Series) -> bytes:
    """8 bytes per row of ``source``'s values (pandas' stable row hash; canonical digests as a fallback)."""
    try:
        hashed = pd.util.hash_pandas_object(source, index=False).to_numpy(dtype=np.uint64)
    except TypeError:  # cells pandas cannot hash (lists, dicts): each row's canonical digest
        values = source.to_numpy(dtype=object).tolist()
        hashed = np.array([int(inputs_digest(v)[:16], 16) for v in values], dtype=np.uint64)
    packed: bytes = hashed.astype(">u8").tobytes()
    return packed


async def lookup_rows(
    core: ClientCore,
    data: pd.DataFrame | pd.Series,
    fn: Any,
    *,
    cache: Any,
    column: Any,
    columns: Sequence[Any] | None,
    rows: bool,
    kwargs: dict[str, Any] | None,
    prefix: str | None,
    expand: bool,
    key: str | None = None,
) -> RowLookup | None:
    """The stored results of ``data``'s rows for this call (None when ``cache`` is off)."""
    setting = cache_setting(cache, "cache=")
    if setting is False:
        return None
    if key is not None:
        raise ConfigurationError(
            "apply(cache=...) and key= are two ways to reuse work: cache= reuses rows by their inputs (and re-runs "
            "exactly the changed and failed ones), key= reuses one submitted batch; pass one of them"
        )
    source, mode = frame_inputs(data, column, columns, rows)
    name = fn if isinstance(fn, str) else ""
    described = describe_function(core, fn, name)
    names = [str(c) for c in source.columns] if isinstance(source, pd.DataFrame) else [str(source.name)]
    shape = inputs_digest([described.version, mode, names, kwargs or {}, prefix, expand], core.codec.dumps)
    entry = f"{function_digest_of(described)}:rows:{shape[:24]}"
    ttl_ms = int((core.settings.cache_ttl if setting is True else float(setting)) * 1000)
    tenant, _ = core.identity(None, None)
    digests = _row_digests(source)
    n = len(digests) // 8
    hit = np.zeros(n, dtype=bool)
    lookup = RowLookup(tenant, entry, ttl_ms, described.identity, digests, hit)
    for start in range(0, n, ROUND_TRIP_ROWS):
        part = digests[start * 8 : (start + ROUND_TRIP_ROWS) * 8]
        rows_found, bodies, count = await core.call(
            lambda s, p=part: s.cache.rows_get(tenant, entry, p, ttl_ms=ttl_ms, header=WIRE_HEADER)  # type: ignore[misc]
        )
        if not count:
            continue
        try:
            records = _CODEC.loads_bodies(count, bodies)
        except Exception:  # entries this client cannot read are misses, never an error
            continue
        positions = np.frombuffer(rows_found, dtype=">u4").astype(np.int64) + start
        for row, record in zip(positions.tolist(), records, strict=True):
            if isinstance(record, list) and len(record) == 3:
                hit[row] = True
                lookup.stored.append(record)
    await core.call(
        lambda s: s.cache.count_rows(tenant, core.workspace or DEFAULT_WORKSPACE, lookup.function, int(hit.sum()), n)
    )
    return lookup


async def store_rows(core: ClientCore, lookup: RowLookup, computed: pd.DataFrame | None) -> int:
    """Store the complete rows of ``computed`` (the frame of ``lookup.todo``'s rows); returns how many."""
    if computed is None or not len(computed):
        return 0
    done = np.flatnonzero(computed[STATUS_COLUMN].to_numpy() == "complete")
    if not len(done):
        return 0
    results = [c for c in computed.columns if c not in TASKQ_COLUMNS]
    job_ids = computed[JOB_COLUMN].iloc[done].astype(str).tolist()
    # many small lists are made here: the cyclic collector would rescan them again and again
    with _collector_paused():
        rows = computed[results].iloc[done].to_numpy(dtype=object).tolist()
        records = [[j, results, v] for j, v in zip(job_ids, rows, strict=True)]
        try:
            blobs: list[bytes | None] = list(_CODEC.dumps_many(records))
        except Exception:  # a value the wire format cannot carry: that row (only) is computed again next time
            blobs = [_dumps_or_none(r) for r in records]
        # each computed row's 8-byte digest, picked by position in one step
        picked = np.frombuffer(lookup.digests, dtype="V8")[lookup.todo[done]].tolist()
        if all(b is not None for b in blobs):
            digests, values = picked, cast("list[bytes]", blobs)
        else:
            kept = [(d, b) for d, b in zip(picked, blobs, strict=True) if b is not None]
            digests, values = [d for d, _ in kept], [b for _, b in kept]
    for start in range(0, len(values), ROUND_TRIP_ROWS):
        stop = start + ROUND_TRIP_ROWS
        await core.call(
            lambda s, d=digests[start:stop], b=values[start:stop]: s.cache.rows_put(  # type: ignore[misc]
                lookup.tenant, lookup.entry, d, b, ttl_ms=lookup.ttl_ms, max_rows=core.settings.cache_max_entries
            )
        )
    return len(values)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while many small lists are made (it would rescan them repeatedly)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


def _dumps_or_none(record: Any) -> bytes | None:
    try:
        return _CODEC.dumps(record)
    except Exception:
        return None


def _stored_frame(stored: list[list[Any]]) -> pd.DataFrame:
    """The hit rows' result columns (rows stored by runs with other columns get theirs; the rest NaN)."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, (_, cols, _) in enumerate(stored):
        groups.setdefault(tuple(cols), []).append(i)
    parts = []
    for cols, rows in groups.items():
        part = pd.DataFrame([stored[i][2] for i in rows], columns=list(cols))
        part.index = pd.Index(rows)
        parts.append(part.infer_objects())
    out = parts[0] if len(parts) == 1 else pd.concat(parts).sort_index()
    return out.reset_index(drop=True)


def merge_rows(lookup: RowLookup, index: pd.Index, computed: pd.DataFrame | None) -> pd.DataFrame:
    """One frame in ``index``'s order: the stored rows and the ``computed`` ones."""
    parts: list[pd.DataFrame] = []
    n_hit = len(lookup.stored)
    if n_hit:
        with _collector_paused():
            cached = _stored_frame(lookup.stored)
        cached[STATUS_COLUMN] = pd.Categorical(["complete"] * n_hit, categories=STATUS_CATEGORIES)
        cached[ERROR_COLUMN] = pd.Series([None] * n_hit, dtype=object)
        cached[JOB_COLUMN] = [record[0] for record in lookup.stored]
        parts.append(cached)
    if computed is not None and len(computed):
        parts.append(computed.reset_index(drop=True))
    if not parts:
        return pd.DataFrame(index=index)
    both = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    positions = np.concatenate([np.flatnonzero(lookup.hit), lookup.todo])[: len(both)]
    out = both.iloc[np.argsort(positions, kind="stable")].reset_index(drop=True)
    out[STATUS_COLUMN] = pd.Categorical(out[STATUS_COLUMN].astype(object), categories=STATUS_CATEGORIES)
    out[JOB_COLUMN] = pd.Categorical(out[JOB_COLUMN].astype(object))
    order = [c for c in out.columns if c not in TASKQ_COLUMNS] + [c for c in TASKQ_COLUMNS if c in out.columns]
    out = out[order]
    out.index = index
    attrs = dict(computed.attrs.get("taskq", {})) if computed is not None else {}
    attrs.update({"cached_rows": n_hit, "computed_rows": len(lookup.todo)})
    attrs.setdefault("batch", None)
    out.attrs["taskq"] = attrs
    return out
