"""Never compute twice: the input-hash result cache, through Client and AsyncClient, with real workers.

Each cached job counts its runs in a Redis key, so "served from the cache" is proven by a count
that did not move, not by timing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis

from taskq_sdk import AsyncClient, Client, JobFailed, JobStatus
from taskq_sdk.caching import code_version, inputs_digest
from taskq_sdk.config import Settings
from taskq_sdk.errors import ConfigurationError
from taskq_sdk.local import WorkerThread
from taskq_sdk.registry import job as taskq_job

from . import cachefns
from .conftest import JOBS, Api, wait_until

MODULES = (JOBS, "tests.cachefns")


@pytest.fixture
def cache_worker(start_worker: Callable[..., WorkerThread]) -> WorkerThread:
    return start_worker(modules=MODULES)


def runs(r: redis.Redis, key: str) -> int:
    return int(r.get(key) or 0)


def counter() -> str:
    return f"runs:{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- the story, twice
def test_a_repeated_call_is_served_from_the_first_run(api: Api, cache_worker: Any, sync_redis: redis.Redis) -> None:
    client = api.client()
    key = counter()
    first = api(client.submit(cachefns.cached_double, key, 21))
    assert first.cached is False and first.created is True
    assert api(first.result(timeout=10)) == 42

    again = api(client.submit(cachefns.cached_double, key, 21))
    assert again.cached is True and again.created is False
    assert again.id == first.id
    assert again.last_info is not None and again.last_info.status is JobStatus.complete  # complete at once
    assert api(again.result(timeout=10)) == 42
    assert runs(sync_redis, key) == 1

    other = api(client.submit(cachefns.cached_double, key, 22))  # other inputs: a run of their own
    assert other.cached is False and api(other.result(timeout=10)) == 44
    forced = api(client.submit(cachefns.cached_double, key, 21, _cache=False))  # per call: run anyway
    assert forced.cached is False and api(forced.result(timeout=10)) == 42
    assert runs(sync_redis, key) == 3


def test_a_corrupt_cache_entry_is_computed_again_not_raised(
    api: Api, cache_worker: Any, sync_redis: redis.Redis
) -> None:
    """An entry key of the wrong type (WRONGTYPE for the cache's script) costs a run, never a submit."""
    client = api.client()
    key = counter()
    first = api(client.submit(cachefns.cached_double, key, 5))
    assert api(first.result(timeout=10)) == 10
    entries = sync_redis.keys("taskq:t:*:cache:*")
    assert entries
    for entry in entries:
        sync_redis.delete(entry)
        sync_redis.lpush(entry, "junk")
    again = api(client.submit(cachefns.cached_double, key, 5))
    assert again.cached is False and api(again.result(timeout=10)) == 10
    assert runs(sync_redis, key) == 2


def test_inputs_are_compared_by_content_not_by_order(api: Api, cache_worker: Any, sync_redis: redis.Redis) -> None:
    client = api.client()
    key = counter()
    a = api(client.submit(cachefns.cached_double, key, x={"a": 1, "b": 2}))
    assert api(a.result(timeout=10)) == [("a", 1), ("b", 2)]
    b = api(client.submit(cachefns.cached_double, x={"b": 2, "a": 1}, key=key))
    assert b.cached is True and b.id == a.id
    assert runs(sync_redis, key) == 1


def test_per_call_cache_for_a_function_not_marked_and_for_a_job_name(
    api: Api, cache_worker: Any, sync_redis: redis.Redis
) -> None:
    client = api.client()
    key = counter()
    first = api(client.submit("uncached_count", key, 5, _cache=True))
    assert api(first.result(timeout=10)) == 5
    again = api(client.submit("uncached_count", key, 5, _cache=True))
    assert again.cached is True and again.id == first.id
    plain = api(client.submit(cachefns.uncached_count, key, 5))  # not marked: never cached by default
    assert plain.cached is False and api(plain.result(timeout=10)) == 5
    assert runs(sync_redis, key) == 2


def test_identical_submits_while_it_runs_share_one_run(api: Api, cache_worker: Any, sync_redis: redis.Redis) -> None:
    client = api.client()
    key = counter()
    first = api(client.submit(cachefns.cached_slow, key, 1, 1.0))
    followers = [api(client.submit(cachefns.cached_slow, key, 1, 1.0)) for _ in range(5)]
    assert {f.id for f in followers} == {first.id}
    assert all(f.cached for f in followers)
    assert [api(f.result(timeout=15)) for f in followers] == [2] * 5
    assert runs(sync_redis, key) == 1


def test_concurrent_identical_submits_run_once(settings: Settings, cache_worker: Any, sync_redis: redis.Redis) -> None:
    """Twenty submits at the same instant from two clients: one claims the entry, nineteen share it."""
    key = counter()

    async def main() -> list[Any]:
        async with AsyncClient(settings=settings) as a, AsyncClient(settings=settings) as b:
            jobs = await asyncio.gather(
                *[(a if i % 2 else b).submit(cachefns.cached_slow, key, 7, 0.3) for i in range(20)]
            )
            assert len({j.id for j in jobs}) == 1
            assert sum(1 for j in jobs if not j.cached) == 1
            return list(await asyncio.gather(*[j.result(timeout=15) for j in jobs]))

    assert asyncio.run(main()) == [8] * 20
    assert runs(sync_redis, key) == 1


def test_a_failed_run_is_never_cached(api: Api, cache_worker: Any, sync_redis: redis.Redis) -> None:
    client = api.client()
    key = counter()
    first = api(client.submit(cachefns.cached_fail, key))
    with pytest.raises(JobFailed):
        api(first.result(timeout=10))
    second = api(client.submit(cachefns.cached_fail, key))
    assert second.cached is False and second.id != first.id
    with pytest.raises(JobFailed):
        api(second.result(timeout=10))
    assert runs(sync_redis, key) == 2


def test_a_cancelled_queued_run_is_not_served(api: Api, settings: Settings, sync_redis: redis.Redis) -> None:
    client = api.client()
    key = counter()
    queued = api(client.submit(cachefns.cached_double, key, 3))  # no worker yet: it stays queued
    assert api(queued.cancel()) is True
    again = api(client.submit(cachefns.cached_double, key, 3))
    assert again.cached is False and again.id != queued.id


def test_a_new_client_of_the_tenant_reuses_results_another_tenant_never(
    settings: Settings, cache_worker: Any, sync_redis: redis.Redis
) -> None:
    """A kernel restart is a new client: it re-attaches to the cached result; tenant B never sees A's."""
    key = counter()
    with Client(settings=settings, tenant="acme") as first_kernel:
        job = first_kernel.submit(cachefns.cached_double, key, 10)
        assert job.result(timeout=10) == 20
    with Client(settings=settings, tenant="acme") as restarted:
        again = restarted.submit(cachefns.cached_double, key, 10)
        assert again.cached is True and again.id == job.id and again.result(timeout=10) == 20
    with Client(settings=settings, tenant="other") as other:
        theirs = other.submit(cachefns.cached_double, key, 10)
        assert theirs.cached is False and theirs.id != job.id
        assert theirs.result(timeout=10) == 20
    assert runs(sync_redis, key) == 2


def test_cache_clear_forgets_a_function(api: Api, cache_worker: Any, sync_redis: redis.Redis) -> None:
    client = api.client()
    key = counter()
    api(api(client.submit(cachefns.cached_double, key, 1)).result(timeout=10))
    api(api(client.submit(cachefns.cached_slow, key, 1, 0.0)).result(timeout=10))
    assert api(client.cache_clear(cachefns.cached_double)) == 1
    assert api(client.submit(cachefns.cached_double, key, 1)).cached is False
    assert api(client.submit(cachefns.cached_slow, key, 1, 0.0)).cached is True  # another function: kept
    assert api(client.cache_clear()) == 2


def test_hits_and_misses_are_counted(api: Api, cache_worker: Any) -> None:
    client = api.client()
    key = counter()
    api(api(client.submit(cachefns.cached_double, key, 4)).result(timeout=10))
    for _ in range(3):
        api(client.submit(cachefns.cached_double, key, 4))
    row = api(client.metrics(function="cached_double")).totals
    assert (row.cache_misses, row.cache_hits, row.enqueued) == (1, 3, 1)


def test_the_cache_keeps_at_most_its_size_limit(
    settings: Settings, start_worker: Callable[..., WorkerThread], sync_redis: redis.Redis
) -> None:
    start_worker(modules=MODULES)
    key = counter()
    with Client(settings=settings, cache_max_entries=2) as client:
        for x in (1, 2, 3):  # the third entry pushes out the least recently used one (x=1)
            client.submit(cachefns.cached_double, key, x).result(timeout=10)
        assert client.submit(cachefns.cached_double, key, 3).cached is True
        assert client.submit(cachefns.cached_double, key, 1).cached is False
    assert sync_redis.zcard("taskq:t:default:cache-index") == 2


def test_a_cached_result_outlives_the_result_ttl(
    settings: Settings, start_worker: Callable[..., WorkerThread], sync_redis: redis.Redis
) -> None:
    """keep_result is 60 s in tests; a cached run's result is kept for the entry's TTL instead."""
    start_worker(modules=MODULES)
    key = counter()
    with Client(settings=settings) as client:
        job = client.submit(cachefns.cached_double, key, 6, _cache=3600)
        assert job.result(timeout=10) == 12
        assert sync_redis.pttl(f"arq:result:{job.id}") > 600_000
        assert sync_redis.pttl(f"taskq:t:default:job:{job.id}") > 600_000


def test_dataframes_and_arrays_are_hashed_by_content(api: Api, cache_worker: Any, sync_redis: redis.Redis) -> None:
    pd = pytest.importorskip("pandas")
    client = api.client()
    key = counter()
    frame = pd.DataFrame({"v": [1.0, 2.0, 3.0]})
    assert api(api(client.submit(cachefns.cached_column_sum, key, frame)).result(timeout=10)) == 6.0
    assert api(client.submit(cachefns.cached_column_sum, key, frame.copy())).cached is True
    changed = frame.copy()
    changed.loc[2, "v"] = 4.0
    rerun = api(client.submit(cachefns.cached_column_sum, key, changed))
    assert rerun.cached is False and api(rerun.result(timeout=10)) == 7.0
    assert runs(sync_redis, key) == 2


def test_bad_cache_options_are_refused(api: Api, cache_worker: Any) -> None:
    client = api.client()
    with pytest.raises(ConfigurationError, match="_cache takes True, False, a timedelta"):
        api(client.submit(cachefns.cached_double, "k", 1, _cache=-5))
    with pytest.raises(ConfigurationError, match="cache= takes"):
        taskq_job(cache="forever")


# ----------------------------------------------------------------------------- digests (no server)
def test_digests_ignore_order_and_see_content() -> None:
    np = pytest.importorskip("numpy")
    assert inputs_digest({"a": 1, "b": [1, 2]}) == inputs_digest({"b": [1, 2], "a": 1})
    assert inputs_digest([1, 2]) != inputs_digest((1, 2)) != inputs_digest([1.0, 2.0])
    a = np.arange(6, dtype="int64").reshape(2, 3)
    assert inputs_digest(a) == inputs_digest(a.copy()) == inputs_digest(np.asfortranarray(a))
    assert inputs_digest(a) != inputs_digest(a.astype("int32")) != inputs_digest(a.reshape(3, 2))


def test_code_version_follows_the_code_not_its_place() -> None:
    def make(body: str, filename: str, lead: int) -> Any:
        scope: dict[str, Any] = {"__name__": "nb"}
        exec(compile("\n" * lead + f"def f(x):\n    return {body}\n", filename, "exec"), scope)
        return scope["f"]

    same = code_version(make("x * 2", "/tmp/ipykernel_1/1.py", 0))
    assert code_version(make("x * 2", "/tmp/ipykernel_2/9.py", 5)) == same  # a kernel restart, a moved cell
    assert code_version(make("x * 3", "/tmp/ipykernel_1/1.py", 0)) != same  # an edit


def test_code_version_sees_helpers_and_constants_it_uses() -> None:
    def build(factor: int, helper_body: str) -> Any:
        scope: dict[str, Any] = {"__name__": "nb"}
        src = f"FACTOR = {factor}\ndef helper(x):\n    return {helper_body}\ndef f(x):\n    return helper(x) * FACTOR\n"
        exec(compile(src, "<cell>", "exec"), scope)
        return scope["f"]

    base = code_version(build(2, "x + 1"))
    assert code_version(build(2, "x + 1")) == base
    assert code_version(build(3, "x + 1")) != base
    assert code_version(build(2, "x + 2")) != base


@pytest.mark.chaos
def test_a_worker_killed_mid_run_still_gives_one_shared_cached_result(
    settings: Settings, start_worker_process: Any, sync_redis: redis.Redis
) -> None:
    """SIGKILL the worker running a cached job: the retry completes it, the submit that shared it gets that
    result, and the entry then serves hits; nothing runs a third time."""
    import os
    import signal

    key = counter()
    start_worker_process(modules=MODULES)
    with Client(settings=settings) as client:
        first = client.submit(cachefns.cached_record_pid, key, 1.5, _timeout=30)
        entry = wait_until(lambda: sync_redis.lindex(key, 0), timeout=30, what="the first attempt started")
        shared = client.submit(cachefns.cached_record_pid, key, 1.5, _timeout=30)
        assert shared.cached is True and shared.id == first.id
        os.kill(int(entry.decode().split(":")[0]), signal.SIGKILL)
        start_worker_process(modules=MODULES)
        assert shared.result(timeout=60) == 2  # the second attempt's result
        assert first.result(timeout=10) == 2
        hit = client.submit(cachefns.cached_record_pid, key, 1.5, _timeout=30)
        assert hit.cached is True and hit.id == first.id and hit.result(timeout=10) == 2
    assert sync_redis.llen(key) == 2


def test_a_claim_whose_job_was_never_written_is_given_up(settings: Settings) -> None:
    """A submit that claimed an entry and then could not write its job releases the entry for the next one."""
    from taskq_sdk._backend.store import SubmitRow
    from taskq_sdk.caching import CachePlan, claim_or_share, release_claim

    def row(job_id: str) -> SubmitRow:
        return SubmitRow(job_id, "f", b"", "default", "default", 0, 60_000, None, None, "queued", "f()")

    async def main() -> None:
        async with AsyncClient(settings=settings) as client:
            plan = CachePlan(entry="0123456789abcdef:" + "0" * 40, ttl_ms=60_000)
            assert await claim_or_share(client.core, plan, row("never-written")) is None
            await release_claim(client.core, plan, row("never-written"))
            assert await claim_or_share(client.core, plan, row("second")) is None  # claimed afresh, not shared

    asyncio.run(main())
