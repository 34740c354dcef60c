"""Row-level cache for DataFrame fan-out: a re-run computes only the changed (and the failed) rows.

Every row's run counts itself in a Redis key, so "computed 10 rows" is a count, not a timing.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import redis

from taskq_sdk.config import Settings
from taskq_sdk.errors import ConfigurationError

from . import cachefns
from .conftest import JOBS, Api

pd = pytest.importorskip("pandas")

MODULES = (JOBS, "tests.cachefns")


@pytest.fixture
def cache_worker(start_worker: Any) -> Any:
    return start_worker(modules=MODULES)


def runs(r: redis.Redis, key: str) -> int:
    return int(r.get(key) or 0)


def apply(api: Api, client: Any, data: Any, fn: Any, **how: Any) -> Any:
    """df.taskq.apply through a Client, taskq_sdk.pandas.apply_async through an AsyncClient."""
    from taskq_sdk import pandas as tpd

    if api.kind == "sync":
        return tpd.apply(data, fn, client=client, progress=False, **how)
    return api(tpd.apply_async(data, fn, client=client, **how))


def frame(n: int) -> Any:
    texts = [f"row {i} " + "x" * (i % 7) for i in range(n)]
    return pd.DataFrame({"text": texts}, index=[f"r{n - i}" for i in range(n)])  # an index not in order


def test_a_rerun_computes_only_the_changed_rows(api: Api, cache_worker: Any, sync_redis: redis.Redis) -> None:
    client = api.client()
    key = f"rows:{uuid.uuid4().hex[:8]}"
    df = frame(1000)
    how = {"column": "text", "chunk_size": 100, "kwargs": {"key": key}, "cache": True}
    first = apply(api, client, df, cachefns.row_length, **how)
    assert runs(sync_redis, key) == 1000
    assert first.taskq_status.eq("complete").all()
    assert first["row_length"].tolist() == df.text.str.len().tolist()

    changed = df.copy()
    changed.iloc[::100, 0] = changed.text.iloc[::100] + " changed"  # 10 rows
    again = apply(api, client, changed, cachefns.row_length, **how)
    assert runs(sync_redis, key) == 1010
    assert list(again.index) == list(changed.index)
    assert again["row_length"].tolist() == changed.text.str.len().tolist()
    assert again.taskq_status.eq("complete").all()
    assert again.attrs["taskq"]["cached_rows"] == 990 and again.attrs["taskq"]["computed_rows"] == 10

    unchanged = apply(api, client, changed, cachefns.row_length, **how)  # everything stored: no job at all
    assert runs(sync_redis, key) == 1010
    pd.testing.assert_series_equal(unchanged["row_length"], again["row_length"])
    m = api(client.metrics(function="row_length")).totals
    assert (m.cache_hits, m.cache_misses) == (990 + 1000, 1000 + 10)


def test_failed_rows_are_never_stored_so_a_rerun_retries_exactly_them(
    api: Api, cache_worker: Any, sync_redis: redis.Redis
) -> None:
    client = api.client()
    key = f"rows:{uuid.uuid4().hex[:8]}"
    df = pd.DataFrame({"text": ["good", "bad one", "fine", "bad two", "ok"]})
    how = {"column": "text", "kwargs": {"key": key}, "cache": True}
    first = apply(api, client, df, cachefns.row_length, **how)
    assert first.taskq_status.tolist() == ["complete", "failed", "complete", "failed", "complete"]
    again = apply(api, client, df, cachefns.row_length, **how)
    assert runs(sync_redis, key) == 5 + 2
    assert again.taskq_status.tolist() == first.taskq_status.tolist()
    assert again.taskq_error.notna().tolist() == [False, True, False, True, False]


def test_dict_results_keep_their_columns(api: Api, cache_worker: Any, sync_redis: redis.Redis) -> None:
    client = api.client()
    key = f"rows:{uuid.uuid4().hex[:8]}"
    df = pd.DataFrame({"text": ["a", "bb", "ccc"]})
    how = {"column": "text", "kwargs": {"key": key}, "cache": True}
    first = apply(api, client, df, cachefns.row_stats, **how)
    df2 = df.copy()
    df2.loc[1, "text"] = "dd"
    again = apply(api, client, df2, cachefns.row_stats, **how)
    assert runs(sync_redis, key) == 4
    assert list(again.columns) == list(first.columns)
    assert again["row_stats_n"].tolist() == [1, 2, 3]
    assert again["row_stats_upper"].tolist() == ["A", "DD", "CCC"]


def test_cache_clear_forgets_rows_and_key_is_refused(api: Api, cache_worker: Any, sync_redis: redis.Redis) -> None:
    client = api.client()
    key = f"rows:{uuid.uuid4().hex[:8]}"
    df = pd.DataFrame({"text": ["a", "bb"]})
    how = {"column": "text", "kwargs": {"key": key}, "cache": True}
    apply(api, client, df, cachefns.row_length, **how)
    assert api(client.cache_clear(cachefns.row_length)) == 1
    apply(api, client, df, cachefns.row_length, **how)
    assert runs(sync_redis, key) == 4
    with pytest.raises(ConfigurationError, match="two ways to reuse work"):
        apply(api, client, df, cachefns.row_length, key="k", **how)


def test_another_tenant_never_reads_the_rows(settings: Settings, cache_worker: Any, sync_redis: redis.Redis) -> None:
    from taskq_sdk import Client

    key = f"rows:{uuid.uuid4().hex[:8]}"
    df = pd.DataFrame({"text": ["a", "bb"]})
    for tenant in ("acme", "other", "acme"):
        with Client(settings=settings, tenant=tenant) as client:
            out = df.taskq.apply(cachefns.row_length, column="text", kwargs={"key": key}, cache=True, client=client)
            assert out["row_length"].tolist() == [1, 2]
    assert runs(sync_redis, key) == 4


def test_many_values_encode_and_decode_in_bulk() -> None:
    from taskq_sdk.errors import DeserializationError
    from taskq_sdk.serialization import HEADER_SIZE, Codec

    codec = Codec()
    values = [[i, "x", (i, 2.5)] for i in range(70_000)]  # tuples (an extension) and the 32-bit array header
    blobs = codec.dumps_many(values)
    assert blobs[3] == codec.dumps(values[3])
    bodies = b"".join(b[HEADER_SIZE:] for b in blobs)
    assert codec.loads_bodies(len(blobs), bodies) == values
    with pytest.raises(DeserializationError, match="extra data"):  # more values than said
        codec.loads_bodies(3, b"".join(b[HEADER_SIZE:] for b in blobs[:2]) + b"\x01\x02")
    with pytest.raises(DeserializationError):
        codec.loads_bodies(2, bodies[:10])
