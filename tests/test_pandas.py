"""DataFrame fan-out on a real server and real workers, compared with a local ``df.apply`` of the same function.

Frames with string, duplicate and MultiIndex labels, empty and one-row frames, NaN/None inputs,
mixed result shapes, partial failure and ``rerun_failed``, columns and whole rows, re-attach,
idempotent re-runs; and a million rows.
"""

from __future__ import annotations

import asyncio
import math
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import taskq_sdk.pandas as tpd
from taskq_sdk import AsyncClient, Client, ConfigurationError
from taskq_sdk.config import Settings

from . import jobfns
from .conftest import figure

TASKQ = ["taskq_status", "taskq_error", "taskq_job_id"]


def expand_local(results: pd.Series, prefix: str) -> pd.DataFrame:
    """What the fan-out promises, computed locally: dicts to prefixed columns, other values to one column."""
    values = results.tolist()
    has_scalar = any(not isinstance(v, dict) and v is not None for v in values)
    has_dict = any(isinstance(v, dict) for v in values)
    cols: dict[str, Any] = {}
    if has_scalar or not has_dict:
        cols[prefix] = pd.Series([np.nan if isinstance(v, dict) else v for v in values])
    keys: list[Any] = []
    for v in values:
        if isinstance(v, dict):
            keys += [k for k in v if k not in keys]
    for k in keys:
        cols[f"{prefix}_{k}"] = pd.Series([v.get(k, np.nan) if isinstance(v, dict) else np.nan for v in values])
    out = pd.DataFrame(cols)
    out.index = results.index
    return out


def check(out: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert out.index.equals(expected.index)
    assert list(out.columns) == [*expected.columns, *TASKQ]
    pd.testing.assert_frame_equal(out[list(expected.columns)], expected, check_dtype=True)


@pytest.fixture
def client(settings: Settings, worker: Any) -> Any:
    with Client(settings=settings) as c:
        yield c


@pytest.mark.parametrize(
    "index",
    [
        pd.Index(["a", "b", "c", "d", "e", "f"]),
        pd.Index(["x", "y", "x", "x", "z", "y"]),
        pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1), ("b", 1), ("c", 9), ("d", 0)], names=["k", "n"]),
        pd.RangeIndex(10, 70, 10),
    ],
    ids=["strings", "duplicates", "multiindex", "range"],
)
def test_column_fan_out_equals_local_apply_on_any_index(client: Client, index: pd.Index) -> None:
    df = pd.DataFrame({"text": ["good", "fine", "great", None, "ok", "meh"], "n": range(6)}, index=index)
    out = df.taskq.apply("toy_sentiment", column="text", client=client, chunk_size=4, progress=False)
    check(out, expand_local(df["text"].apply(jobfns.toy_sentiment), "toy_sentiment"))
    assert (out["taskq_status"] == "complete").all() and out["taskq_error"].isna().all()
    assert out["taskq_job_id"].nunique() == 2
    scalar = df.taskq.apply("double", column="n", client=client, chunk_size=4, progress=False)
    check(scalar, pd.DataFrame({"double": df["n"].apply(jobfns.double)}))


def test_empty_frame_and_one_row(client: Client) -> None:
    empty = pd.DataFrame({"n": pd.Series([], dtype="int64")}, index=pd.Index([], dtype="str"))
    out = tpd.apply(empty, "double", column="n", client=client, progress=False)
    assert out.empty and list(out.columns) == ["double", *TASKQ] and out.index.equals(empty.index)
    one = pd.DataFrame({"n": [21]}, index=["only"])
    out = tpd.apply(one, "double", column="n", client=client, progress=False)
    check(out, pd.DataFrame({"double": [42]}, index=["only"]))


def test_nan_none_inputs_and_dtypes(client: Client) -> None:
    df = pd.DataFrame(
        {
            "f": [1.5, np.nan, -2.0, np.nan, 0.0],
            "i": [1, 2, 3, 4, 5],
            "o": pd.Series(["a", None, "b", None, 7], dtype=object),
            "s": ["x", "y", None, "z", "w"],
            "t": pd.to_datetime(["2024-01-01", None, "2024-03-01", "2024-04-01", None]),
            "b": [True, False, True, True, False],
            "c": pd.Categorical(["u", "v", None, "u", "v"]),
        }
    )
    for col in df.columns:
        out = df.taskq.apply("describe", column=col, client=client, chunk_size=2, progress=False)
        check(out, pd.DataFrame({"describe": df[col].apply(jobfns.describe)}))
    for col in ("o", "s"):
        out = df.taskq.apply("toy_sentiment", column=col, client=client, chunk_size=3, progress=False)
        check(out, expand_local(df[col].apply(jobfns.toy_sentiment), "toy_sentiment"))
    out = df.taskq.apply("double", column="f", client=client, chunk_size=2, progress=False)
    check(out, pd.DataFrame({"double": df["f"].apply(jobfns.double)}))
    out = df.taskq.apply("double", column="o", client=client, chunk_size=2, progress=False)
    assert out["taskq_status"].tolist() == ["complete", "failed", "complete", "failed", "complete"]
    assert out["double"].tolist()[::2] == ["aa", "bb", 14]


def test_mixed_result_shapes_and_partial_failure(client: Client) -> None:
    df = pd.DataFrame({"x": range(40)}, index=[f"r{i}" for i in range(40)])
    out = df.taskq.apply("shape_shifter", column="x", client=client, chunk_size=6, progress=False)
    failed = out["taskq_status"] == "failed"
    assert failed.tolist() == [x % 7 == 0 and x > 0 for x in range(40)]
    assert out.loc[failed, "taskq_error"].str.startswith("ArithmeticError: seven divides").all()
    ok = df[~failed.to_numpy()]
    expected = expand_local(ok["x"].apply(jobfns.shape_shifter), "shape_shifter")
    got = out.loc[~failed, list(expected.columns)]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert list(out.columns) == ["shape_shifter", "shape_shifter_a", "shape_shifter_b", *TASKQ]
    assert out.loc[failed, ["shape_shifter", "shape_shifter_a"]].isna().all().all()
    # prefix="" keeps bare dict keys; expand=False keeps dicts whole
    bare = df.taskq.apply("shape_shifter", column="x", client=client, chunk_size=40, prefix="", progress=False)
    assert {"a", "b"} <= set(bare.columns)
    whole = df.taskq.apply("shape_shifter", column="x", client=client, prefix="s", expand=False, progress=False)
    assert whole.loc["r0", "s"] == {"a": 0, "b": "0"} and list(whole.columns) == ["s", *TASKQ]


def test_columns_and_rows_inputs(client: Client) -> None:
    df = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [10.0, 20.0, np.nan, 40.0, 50.0], "c": list("vwxyz")})
    out = df.taskq.apply("pair_sum", columns=["a", "b"], client=client, chunk_size=2, progress=False)
    expected = pd.Series([jobfns.pair_sum(a, b) for a, b in zip(df.a, df.b, strict=True)], index=df.index)
    pd.testing.assert_series_equal(out["pair_sum"], expected, check_names=False)
    rows = df.taskq.apply("row_text", rows=True, client=client, chunk_size=3, progress=False)
    local = [jobfns.row_text(r) for r in df.to_dict("records")]
    assert rows["row_text"].tolist() == local
    series = df["a"].taskq.apply("double", client=client, progress=False)
    assert series["double"].tolist() == [2, 4, 6, 8, 10]
    with pytest.raises(ConfigurationError, match="column="):
        df.taskq.apply("double", client=client)
    with pytest.raises(ConfigurationError, match="no column"):
        df.taskq.apply("double", column="nope", client=client)


def test_rerun_failed_reruns_only_failed_rows(client: Client, tmp_path: Path) -> None:
    flags = tmp_path / "flags"
    flags.write_text("2 17 18 33")
    df = pd.DataFrame({"x": range(40)}, index=pd.Index([f"k{i % 13}" for i in range(40)]))
    out = df.taskq.apply(
        "fail_if_flagged", column="x", client=client, chunk_size=8, kwargs={"flags": str(flags)}, progress=False
    )
    assert np.flatnonzero(out["taskq_status"] != "complete").tolist() == [2, 17, 18, 33]
    assert out["fail_if_flagged"].isna().sum() == 4
    first_jobs = set(out["taskq_job_id"])
    flags.write_text("33")
    fixed = tpd.rerun_failed(out, progress=False)
    assert fixed.index.equals(df.index)
    assert np.flatnonzero(fixed["taskq_status"] != "complete").tolist() == [33]
    assert fixed["fail_if_flagged"].iloc[[2, 17, 18]].tolist() == [6, 51, 54]
    assert fixed["taskq_error"].iloc[2] is None or pd.isna(fixed["taskq_error"].iloc[2])
    assert set(fixed["taskq_job_id"].iloc[[2, 17]]) - first_jobs, "re-run rows name their new job"
    assert fixed["taskq_job_id"].iloc[0] in first_jobs
    assert out["taskq_status"].iloc[2] == "failed", "the original frame is untouched"
    flags.write_text("")
    final = fixed.taskq.rerun_failed(client=client, progress=False)
    check(final, pd.DataFrame({"fail_if_flagged": [x * 3 for x in range(40)]}, index=df.index).astype("float64"))
    with pytest.raises(ConfigurationError, match="whole frame"):
        tpd.rerun_failed(final.iloc[:5], client=client)


def test_reattach_and_idempotent_apply(settings: Settings, worker: Any, sync_redis: Any) -> None:
    df = pd.DataFrame({"x": range(30)}, index=pd.MultiIndex.from_product([["a", "b", "c"], range(10)]))
    with Client(settings=settings, tenant="acme") as client:
        out = df.taskq.apply("mark", column="x", client=client, chunk_size=7, key="frame-1", progress=False)
        assert out["mark"].tolist() == [x * 2 for x in range(30)]
        again = df.taskq.apply("mark", column="x", client=client, chunk_size=7, key="frame-1", progress=False)
        pd.testing.assert_frame_equal(again, out)
        runs = {int(k): int(v) for k, v in sync_redis.hgetall("load:runs").items()}
        assert runs == dict.fromkeys(range(30), 1)
        batch = client.batch("frame-1")
        assert batch.reused == 0 and batch.n_jobs == 5
        pd.testing.assert_frame_equal(batch.to_frame(timeout=10), out)


def test_async_apply(settings: Settings, worker: Any) -> None:
    async def main() -> pd.DataFrame:
        async with AsyncClient(settings=settings) as aclient:
            df = pd.DataFrame({"n": [1, 2, 3]}, index=["a", "b", "c"])
            out = await tpd.apply_async(df, "adouble", column="n", client=aclient, chunk_size=2)
            return out

    out = asyncio.run(main())
    assert out["adouble"].tolist() == [2, 4, 6] and list(out.index) == ["a", "b", "c"]


def million_rows(client: Client, n: int, chunk_size: int) -> None:
    df = pd.DataFrame({"x": np.arange(n, dtype=np.int64)}, index=pd.RangeIndex(n) * 3)
    tracemalloc.start()
    start = time.perf_counter()
    out = df.taskq.apply("double", column="x", client=client, chunk_size=chunk_size, progress=False)
    took = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    expected = df["x"].apply(jobfns.double)
    pd.testing.assert_series_equal(out["double"], expected, check_names=False)
    assert out.index.equals(df.index) and (out["taskq_status"] == "complete").all()
    # the frame's own buffers (deep=True would also count the shared None/NaN objects of object columns)
    size = out.memory_usage(deep=False).sum()
    figure(f"fanout_{n}_rows_per_s", round(n / took))
    figure(f"fanout_{n}_client_peak_over_result_buffers", round(peak / size, 2))
    assert peak < 3 * size, f"client peak {peak / 1e6:.1f} MB vs result {size / 1e6:.1f} MB"
    assert math.isfinite(took)


def test_a_million_rows_equal_the_local_computation(settings: Settings, start_worker_process: Any) -> None:
    """1,000,000 rows in 2,000 chunks: equal to df.apply, in order, client peak under 3x the result frame."""
    start_worker_process()
    start_worker_process()
    with Client(settings=settings) as client:
        million_rows(client, 1_000_000, 500)
