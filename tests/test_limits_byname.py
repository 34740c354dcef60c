"""A limited function named BY NAME in a map still keeps its limit (real workers, real server).

The client cannot see ``@job(rate_limit=...)`` on a function it names by a string, so a map may
chunk it: the worker's gate then takes one rate slot per item of a chunk (a chunk of 10 under
"10/s" holds the next second's slots), and workers publish which functions are limited, so
``chunk_size="auto"`` makes one job per item for them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from bench.limits import max_in_window
from taskq_sdk import Client
from taskq_sdk.config import Settings
from taskq_sdk.local import WorkerProcess

from .conftest import figure, wait_until
from .limit_jobs import SPANS

LIMIT_JOBS = ("tests.limit_jobs",)


def _starts(r: redis.Redis, prefix: str) -> list[float]:
    out = []
    for raw in r.lrange(SPANS, 0, -1):
        start, _end, attempt, tag = raw.decode().split()
        if tag.startswith(prefix):
            assert attempt == "1", f"{tag} ran as attempt {attempt}: waiting for the rate counts no attempt"
            out.append(float(start))
    return out


@pytest.fixture
def two_workers(start_worker_process: Callable[..., WorkerProcess]) -> None:
    """Two worker processes serving tests/limit_jobs.py."""
    for _ in range(2):
        start_worker_process(modules=LIMIT_JOBS)


@pytest.mark.parametrize("chunk_size", [10, 25, "auto"])
def test_a_by_name_map_of_a_rate_limited_function_keeps_the_rate(
    chunk_size: int | str, settings: Settings, sync_redis: redis.Redis, two_workers: None
) -> None:
    """30 items of ``ten_per_second`` (10/s, burst 1) mapped by name: at most 10 + 1 start in any 1 s."""
    tag = f"n{chunk_size}-"
    with Client(settings=settings) as client:
        # the workers publish their functions (and which are limited) when they start
        wait_until(
            lambda: any(sync_redis.hexists(k, "ten_per_second") for k in sync_redis.keys("taskq:signatures:*")),
            what="the workers' published signatures",
        )
        batch = client.map("ten_per_second", [f"{tag}{i}" for i in range(30)], chunk_size=chunk_size)
        if chunk_size == "auto":
            assert set(batch.chunk_sizes) == {1}, f"a limited function gets one item per job: {batch.chunk_sizes}"
        assert len(batch.results(timeout=60)) == 30
    starts = _starts(sync_redis, tag)
    assert len(starts) == 30, "every item ran exactly once"
    peak = max_in_window(starts)
    # rate 10 + burst 1, and one start may cross a window's edge by the gap between the gate and
    # the function's first line (as in tests/test_limits.py)
    assert peak <= 12, f"{peak} starts in one 1 s window under 10/s (chunk_size={chunk_size})"
    figure(f"limits_by_name_chunk_{chunk_size}_max_in_1s", peak)


def test_a_by_name_frame_apply_of_a_rate_limited_function_keeps_the_rate(
    settings: Settings, sync_redis: redis.Redis, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    """``df.taskq.apply("ten_per_second", ...)`` with chunk_size "auto": one row per job, 10 + 1 per second."""
    pd = pytest.importorskip("pandas")
    import taskq_sdk.pandas  # noqa: F401  (the .taskq accessor)

    start_worker_process(modules=LIMIT_JOBS)
    df = pd.DataFrame({"tag": [f"df-{i}" for i in range(20)]})
    with Client(settings=settings) as client:
        wait_until(
            lambda: any(sync_redis.hexists(k, "ten_per_second") for k in sync_redis.keys("taskq:signatures:*")),
            what="the workers' published signatures",
        )
        out = df.taskq.apply("ten_per_second", column="tag", client=client, progress=False, timeout=60)
    assert out.attrs["taskq"]["chunk_size"] == 1, out.attrs["taskq"]
    starts = _starts(sync_redis, "df-")
    assert len(starts) == 20
    assert max_in_window(starts) <= 12


def test_chunks_under_a_limit_key_keep_its_rate(settings: Settings, sync_redis: redis.Redis, two_workers: None) -> None:
    """A map with ``_limit_key`` of a "10/s" key, chunk_size=25: 25 slots taken, the items go one slot apart."""
    with Client(settings=settings) as client:
        client.set_limit("tenq", rate="10/s")
        items = [f"key-{i}" for i in range(30)]
        batch = client.map("limited_call", items, chunk_size=25, _limit_key="tenq", kwargs={"seconds": 0.0})
        assert len(batch.results(timeout=60)) == 30
    starts = _starts(sync_redis, "key-")
    assert len(starts) == 30
    peak = max_in_window(starts)
    assert peak <= 12, f"{peak} starts in one 1 s window under a 10/s key"
    figure("limits_by_key_chunk_25_max_in_1s", peak)
