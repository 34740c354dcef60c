"""The built-in chunk runner (``taskq_map_chunk``) on a real worker: per-item errors, input modes,
tenancy and ctx, whole-chunk failures, cancel, and its payload helpers."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
import redis

from taskq_sdk import Client, JobCancelled, JobFailed, JobStatus, JobTimedOut, UnknownJob
from taskq_sdk.config import Settings
from taskq_sdk.jobs.mapping import RUNNER_NAME, _arguments, take_items
from taskq_sdk.registry import BUILTIN_JOB_MODULES, collect_jobs
from taskq_sdk.serialization import RemoteError

from .conftest import figure, wait_until


def test_the_runner_is_a_builtin_job() -> None:
    assert "taskq_sdk.jobs.mapping" in BUILTIN_JOB_MODULES
    assert RUNNER_NAME in collect_jobs([])


def test_one_bad_item_never_fails_its_neighbours(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        job = client.submit(RUNNER_NAME, "toy_sentiment", ["nice", "bad", None, "so bad", "ok"])
        out = job.result(timeout=30)
        assert out["n"] == 5 and len(out["v"]) == 5
        assert [o for o, _ in out["e"]] == [1, 3]
        err = out["e"][0][1]
        assert isinstance(err, RemoteError) and err.type == "ValueError" and "cannot score 'bad'" in err.message
        assert "toy_sentiment" in err.traceback and "taskq_map_chunk" not in err.traceback.splitlines()[1]
        assert out["v"][2] == {"score": None, "label": "empty"} and out["v"][1] is None


def test_modes_ctx_tenancy_and_async_targets(settings: Settings, worker: Any, sync_redis: redis.Redis) -> None:
    with Client(settings=settings, tenant="acme") as client:
        run = client.submit
        assert run(RUNNER_NAME, "adouble", [1, 2, 3]).result(timeout=30)["v"] == [2, 4, 6]
        assert run(RUNNER_NAME, "pair_sum", [(1, 2), [3, 4]], mode="star").result(timeout=30)["v"] == [3, 7]
        arr = np.array([1.5, 2.5])
        assert run(RUNNER_NAME, "describe", arr, mode="series").result(timeout=30)["v"] == ["float:1.5", "float:2.5"]
        ts = pd.Series(pd.to_datetime(["2024-05-01", None]))
        got = run(RUNNER_NAME, "describe", ts, mode="series").result(timeout=30)["v"]
        assert got == [jobfns_describe(v) for v in ts]
        cols = [["a", "b"], [np.array([1, 2]), ["x", "y"]]]
        summed = run(RUNNER_NAME, "pair_sum", [["a", "b"], [[1, 2], [10, 20]]], mode="columns").result(timeout=30)
        assert summed["v"] == [11, 22]
        rows = run(RUNNER_NAME, "row_text", cols, mode="rows").result(timeout=30)
        assert rows["v"] == ["a=1|b=x", "a=2|b=y"] and rows["e"] == []
        echo = run(RUNNER_NAME, "kwarg_echo", [7], kwargs={"scale": 2}).result(timeout=30)
        assert echo["v"] == [{"x": 7, "scale": 2, "tenant": "acme"}]
        assert run(RUNNER_NAME, "mark", [5, 6]).result(timeout=30)["v"] == [10, 12]
        assert sync_redis.hget("load:runs", "5") == b"1"


def test_whole_chunk_failures(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        with pytest.raises(JobFailed, match="does not serve job 'no_such_function'"):
            client.submit(RUNNER_NAME, "no_such_function", [1]).result(timeout=30)
        with pytest.raises(JobFailed, match="cannot map itself"):
            client.submit(RUNNER_NAME, RUNNER_NAME, [1]).result(timeout=30)
        with pytest.raises(JobFailed, match="unknown chunk mode"):
            client.submit(RUNNER_NAME, "double", [1], mode="zigzag").result(timeout=30)
        with pytest.raises(UnknownJob):
            client.map("no_such_function", [1, 2, 3], chunk_size=2)
        # a chunk job over its time limit fails all its items, each saying so
        batch = client.map("slow_item", [1, 2, 3], chunk_size=2, kwargs={"seconds": 5}, _timeout=0.3)
        values = batch.gather(errors="return", timeout=30)
        assert all(isinstance(v, JobTimedOut) for v in values)
        assert batch.counts().failed == 3 and batch.status() is JobStatus.failed


def test_rows_failed_are_counted_without_fetching_results(
    settings: Settings, worker: Any, sync_redis: redis.Redis
) -> None:
    with Client(settings=settings) as client:
        batch = client.map("toy_sentiment", ["a", "bad", "c", "bad too", "e"], chunk_size=2)
        batch.wait(timeout=30)
        key = f"taskq:t:default:batch:{batch.id}:rf"
        assert {k.decode(): int(v) for k, v in sync_redis.hgetall(key).items()} == {
            batch.job_ids()[0]: 1,
            batch.job_ids()[1]: 1,
        }
        assert 0 < sync_redis.pttl(key) <= 7 * 86_400_000
        fresh = client.batch(batch.id)
        counts = fresh.counts()
        assert counts.failed == 2 and counts.done == 5 and counts.jobs_complete == 3


def test_cancel_stops_a_running_sync_chunk(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        batch = client.map("sync_slow_item", list(range(100)), chunk_size=100, kwargs={"seconds": 0.05})
        job = batch.jobs()[0]
        wait_until(lambda: job.progress().fraction, timeout=10, what="chunk reporting progress")
        start = time.perf_counter()
        assert batch.cancel() is True
        with pytest.raises(JobCancelled):
            job.result(timeout=10)
        figure("chunk_cancel_stop_ms", round((time.perf_counter() - start) * 1000))
        values = batch.gather(errors="return", timeout=10)
        assert all(isinstance(v, JobCancelled) for v in values)


def test_payload_helpers() -> None:
    assert _arguments([1, 2], "items") == ([1, 2], True)
    assert _arguments([(1, 2), 3], "star") == ([(1, 2), (3,)], False)
    values, single = _arguments(np.array([1, 2], dtype=np.int64), "series")
    assert values == [1, 2] and type(values[0]) is int and single
    cols = [["a", "b"], [np.array([1.0, 2.0]), ["x", None]]]
    assert _arguments(cols, "columns") == ([(1.0, "x"), (2.0, None)], False)
    assert _arguments(cols, "rows") == ([{"a": 1.0, "b": "x"}, {"a": 2.0, "b": None}], True)
    frame = pd.DataFrame({"a": [1, 2]})
    assert _arguments(frame, "rows") == ([{"a": 1}, {"a": 2}], True)
    assert take_items([10, 11, 12], [0, 2], "items") == [10, 12]
    assert take_items(np.array([10, 11, 12]), [1], "series").tolist() == [11]
    s = take_items(pd.Series([1, 2, 3], index=[7, 8, 9]), [2], "series")
    assert s.tolist() == [3] and list(s.index) == [0]
    names, picked = take_items(cols, [1], "columns")
    assert names == ["a", "b"] and picked[0].tolist() == [2.0] and picked[1] == [None]


def jobfns_describe(value: Any) -> str:
    from . import jobfns

    return jobfns.describe(value)
