"""Row-level result cache for DataFrame fan-out: a re-run computes only the rows it has not seen.

``df.taskq.apply(fn, column="text", cache=True)`` hashes each row's inputs (pandas' own
vectorised row hash), reads the results stored for those hashes in one server round trip per
50,000 rows, submits only the other rows, stores their results, and returns one frame in the
original order. 100 changed rows of 100,000 compute 100 rows. A row's entry is keyed by the
function's identity and version (as :mod:`taskq_sdk.caching`), the call's shape (mode, column
names, ``kwargs``, ``prefix``, ``expand``) and the row's values; failed rows are never stored, so
re-running the cell re-runs exactly the failed and the changed rows::

    lookup = await lookup_rows(core, df, score, cache=True, column="text", columns=None, rows=False,
                               kwargs=None, prefix="score", expand=True)
    todo = df.iloc[lookup.todo]                # only these rows run
    await store_rows(core, lookup, computed)   # the computed frame of todo's rows
    out = merge_rows(lookup, df.index, computed)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ._cache_options import cache_setting
from ._names import DEFAULT_WORKSPACE
from .batch.frame import ERROR_COLUMN, JOB_COLUMN, STATUS_CATEGORIES, STATUS_COLUMN, TASKQ_COLUMNS, frame_inputs
from .caching import describe_function, function_digest_of, inputs_digest
from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._core import ClientCore

__all__ = ["RowLookup", "lookup_rows", "merge_rows", "store_rows"]

#: rows per server round trip when reading or writing row entries
ROUND_TRIP_ROWS = 50_000


@dataclass
class RowLookup:
    """What the cache holds for a frame's rows: which rows hit (their stored records) and which must run."""

    tenant: str
    entry: str  # the cache entry holding this call shape's rows (one hash, row digest -> result)
    ttl_ms: int
    function: str  # for the hit/miss metrics
    fields: list[str]  # per row of the input, its digest
    hit: np.ndarray[Any, Any]  # bool per row
    records: list[dict[str, Any]] = field(default_factory=list)  # the hit rows' result columns, in row order
    job_ids: list[str] = field(default_factory=list)  # the job that computed each hit row

    @property
    def todo(self) -> np.ndarray[Any, Any]:
        """Positions of the rows that must run."""
        return np.flatnonzero(~self.hit)


def _row_digests(source: pd.DataFrame | pd.Series) -> list[str]:
    """One 64-bit digest per row of ``source``'s values (pandas' stable row hash; canonical digests as a fallback)."""
    try:
        hashed = pd.util.hash_pandas_object(source, index=False).to_numpy()
        return [format(int(h), "016x") for h in hashed]
    except TypeError:  # cells pandas cannot hash (lists, dicts): each row's canonical digest
        values = source.to_numpy(dtype=object).tolist()
        return [inputs_digest(v)[:16] for v in values]


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
    ttl = core.settings.cache_ttl if setting is True else float(setting)
    tenant, _ = core.identity(None, None)
    fields = _row_digests(source)
    blobs: list[bytes | None] = []
    for start in range(0, len(fields), ROUND_TRIP_ROWS):
        part = fields[start : start + ROUND_TRIP_ROWS]
        blobs.extend(await core.call(lambda s, p=part: s.cache.rows_get(tenant, entry, p)))  # type: ignore[misc]
    hit = np.zeros(len(fields), dtype=bool)
    lookup = RowLookup(tenant, entry, int(ttl * 1000), described.identity, fields, hit)
    for i, blob in enumerate(blobs):
        if blob is None:
            continue
        try:
            job_id, record = core.codec.loads(blob)
        except Exception:  # an entry this client cannot read is a miss, never an error
            continue
        hit[i] = True
        lookup.job_ids.append(str(job_id))
        lookup.records.append(dict(record))
    await core.call(
        lambda s: s.cache.count_rows(
            tenant, core.workspace or DEFAULT_WORKSPACE, lookup.function, int(hit.sum()), len(hit)
        )
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
    records = computed[results].iloc[done].astype(object).to_dict("records")
    job_ids = computed[JOB_COLUMN].iloc[done].astype(object).tolist()
    todo = lookup.todo
    mapping: dict[str, bytes] = {}
    for pos, record, job_id in zip(done.tolist(), records, job_ids, strict=True):
        try:
            mapping[lookup.fields[todo[pos]]] = core.codec.dumps([str(job_id), record])
        except Exception:  # a value the wire format cannot carry: that row is computed again next time
            continue
    items = list(mapping.items())
    for start in range(0, len(items), ROUND_TRIP_ROWS):
        part = dict(items[start : start + ROUND_TRIP_ROWS])
        await core.call(
            lambda s, p=part: s.cache.rows_put(  # type: ignore[misc]
                lookup.tenant, lookup.entry, p, ttl_ms=lookup.ttl_ms, max_rows=core.settings.cache_max_entries
            )
        )
    return len(mapping)


def merge_rows(lookup: RowLookup, index: pd.Index, computed: pd.DataFrame | None) -> pd.DataFrame:
    """One frame in ``index``'s order: the stored rows and the ``computed`` ones."""
    parts: list[pd.DataFrame] = []
    n_hit = len(lookup.records)
    if n_hit:
        cached = pd.DataFrame.from_records(lookup.records, index=pd.RangeIndex(n_hit))
        cached[STATUS_COLUMN] = pd.Categorical(["complete"] * n_hit, categories=STATUS_CATEGORIES)
        cached[ERROR_COLUMN] = pd.Series([None] * n_hit, dtype=object)
        cached[JOB_COLUMN] = lookup.job_ids
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
