"""Jobs that wait on jobs, when the keys that link them are corrupt or their results outlive their TTL.

Every case ends one of two ways: the dependent runs correctly, once (its runs are counted in Redis),
or it fails at once with ``UpstreamFailed`` naming the key at fault. None waits forever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from taskq_sdk import Client, JobFailed, JobStatus
from taskq_sdk._backend import layout
from taskq_sdk.config import Settings
from taskq_sdk.local import WorkerThread

from . import cachefns
from .conftest import JOBS, wait_until

pytestmark = pytest.mark.chaos  # corrupt keys and long outages: counted by bench.reliability_figures

MODULES = (JOBS, "tests.cachefns")


@pytest.fixture
def client(settings: Settings, start_worker: Callable[..., WorkerThread]) -> Any:
    start_worker(modules=MODULES)
    with Client(settings=settings) as c:
        yield c


@pytest.fixture
def short_lived(settings: Settings, start_worker: Callable[..., WorkerThread]) -> Any:
    """A client whose worker keeps results 1 s (TASKQ_KEEP_RESULT=1)."""
    start_worker(modules=MODULES, keep_result=1)
    with Client(settings=settings) as c:
        yield c


def runs(r: redis.Redis, key: str) -> int:
    return int(r.get(key) or 0)


def upstream_failure(job: Any) -> str:
    with pytest.raises(JobFailed) as failed:
        job.result(timeout=30)
    assert failed.value.remote_type == "UpstreamFailed"
    return failed.value.remote_message


def test_an_upstream_record_of_the_wrong_type_fails_the_dependent_naming_it(
    client: Client, sync_redis: redis.Redis
) -> None:
    upstream = client.submit("add", 1, 2, _defer_by=60)
    sync_redis.delete(layout.meta_key(upstream.id))
    sync_redis.set(layout.meta_key(upstream.id), "not a hash")
    dependent = client.submit(cachefns.uncached_count, "faults:wrongtype", upstream)
    message = upstream_failure(dependent)
    assert upstream.id in message and layout.meta_key(upstream.id) in message and "corrupt" in message
    assert runs(sync_redis, "faults:wrongtype") == 0
    upstream.cancel()


@pytest.mark.parametrize("count", ["garbage", "999", "0"])
def test_a_corrupt_count_of_upstream_jobs_neither_releases_early_nor_hangs(
    client: Client, sync_redis: redis.Redis, count: str
) -> None:
    """``deps_left`` overwritten (not a number, too high, too low): checked against the upstream states."""
    first = client.submit("slow", 3, step=0.1)
    second = client.submit("slow", 20, step=0.1)
    dependent = client.submit(cachefns.uncached_count, f"faults:{count}", [first, second])
    assert dependent.status() is JobStatus.waiting
    sync_redis.hset(layout.meta_key(dependent.id), "deps_left", count)
    assert first.result(timeout=30) == 3
    if second.status() is not JobStatus.complete:  # the usual case: the second still runs
        assert dependent.status() is JobStatus.waiting, "released before its second upstream job finished"
    assert dependent.result(timeout=30) == [3, 20]
    assert runs(sync_redis, f"faults:{count}") == 1


@pytest.mark.parametrize("when", ["before the finish", "between two links"])
def test_a_kids_key_of_the_wrong_type_still_releases_every_dependent_once(
    client: Client, sync_redis: redis.Redis, when: str
) -> None:
    """The upstream's set of waiting jobs overwritten by a string: its record's ``children`` stand in."""
    upstream = client.submit("slow", 5, step=0.1)
    kids = layout.upstream_kids_key(upstream.id)
    one = client.submit(cachefns.uncached_count, "faults:kids", upstream)
    if when == "between two links":
        sync_redis.delete(kids)
        sync_redis.set(kids, "garbage")
    two = client.submit(cachefns.uncached_count, "faults:kids", upstream)
    if when == "before the finish":
        sync_redis.delete(kids)
        sync_redis.set(kids, "garbage")
    assert one.result(timeout=30) == 5 and two.result(timeout=30) == 5
    assert runs(sync_redis, "faults:kids") == 2
    assert not sync_redis.exists(kids)


def test_a_missing_upstream_result_fails_the_dependent_naming_the_key(client: Client, sync_redis: redis.Redis) -> None:
    done = client.submit("add", 1, 2)
    assert done.result(timeout=10) == 3
    sync_redis.delete(layout.result_key(done.id))  # gone before the dependent was submitted
    at_submit = client.submit(cachefns.uncached_count, "faults:missing", done)
    assert layout.result_key(done.id) in upstream_failure(at_submit)

    first = client.submit("add", 2, 2)
    later = client.submit("slow", 5, step=0.1)
    dependent = client.submit(cachefns.uncached_count, "faults:missing", [first, later])
    assert first.result(timeout=10) == 4
    sync_redis.delete(layout.result_key(first.id))  # gone while the dependent waits on the other one
    message = upstream_failure(dependent)
    assert first.id in message and layout.result_key(first.id) in message and "gone" in message
    assert runs(sync_redis, "faults:missing") == 0


def test_an_upstream_result_outlives_its_ttl_while_a_dependent_waits(
    short_lived: Client, sync_redis: redis.Redis
) -> None:
    """TASKQ_KEEP_RESULT of 1 s, a dependent that can run only 3 s later: the result it needs is kept."""
    client = short_lived
    done_before = client.submit("add", 1, 1)
    assert done_before.result(timeout=10) == 2
    first = client.submit("add", 2, 2)
    later = client.submit("add", 3, 3, _defer_by=3)
    dependent = client.submit(cachefns.uncached_count, "faults:ttl", [done_before, first, later])
    assert first.result(timeout=10) == 4
    # both complete upstream results now live as long as the dependent's definition (7 days while waiting)
    for upstream in (done_before, first):
        wait_until(lambda u=upstream: sync_redis.pttl(layout.result_key(u.id)) > 86_400_000, timeout=10)
    assert dependent.result(timeout=30) == [2, 4, 6]
    assert runs(sync_redis, "faults:ttl") == 1
    # its dependent ran: the results expire as results do again (TASKQ_KEEP_RESULT, here 1 s; -2: gone)
    for upstream in (done_before, first, later):
        assert sync_redis.pttl(layout.result_key(upstream.id)) <= 1000


def test_an_upstream_result_is_kept_until_its_last_dependent_ends(
    short_lived: Client, sync_redis: redis.Redis, settings: Settings
) -> None:
    client = short_lived
    upstream = client.submit("add", 1, 1)
    assert upstream.result(timeout=10) == 2
    first = client.submit(cachefns.uncached_count, "faults:last", upstream)
    blocker = client.submit("add", 0, 0, _defer_by=60)
    second = client.submit(cachefns.uncached_count, "faults:last", [upstream, blocker])
    assert first.result(timeout=10) == 2
    # one dependent ended, the other still waits: the result stays
    assert sync_redis.pttl(layout.result_key(upstream.id)) > 86_400_000
    assert second.cancel() and second.status() is JobStatus.cancelled
    # the last one ended (cancelled by this client: its TASKQ_KEEP_RESULT counts from now)
    assert sync_redis.pttl(layout.result_key(upstream.id)) <= settings.keep_result * 1000
    blocker.cancel()


def test_where_results_are_not_kept_a_dependent_fails_at_once_naming_the_missing_result(
    settings: Settings, start_worker: Callable[..., WorkerThread], sync_redis: redis.Redis
) -> None:
    """TASKQ_KEEP_RESULT=0 stores no result, so there is none to pass on: said at once, never a hang."""
    start_worker(modules=MODULES, keep_result=0)
    with Client(settings=settings) as client:
        upstream = client.submit("slow", 4, step=0.1)
        dependent = client.submit(cachefns.uncached_count, "faults:nokeep", upstream)
        wait_until(lambda: dependent.status() is not JobStatus.waiting, timeout=30, what="the dependent released")
        wait_until(lambda: dependent.status().finished, timeout=30, what="the dependent finished")
        err = sync_redis.hget(layout.meta_key(dependent.id), "err").decode()
        assert err.startswith("UpstreamFailed:") and layout.result_key(upstream.id) in err
        assert runs(sync_redis, "faults:nokeep") == 0


def test_a_submit_whose_link_fails_takes_its_waiting_job_back(
    client: Client, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job is written waiting, then linked: a link that fails must not leave a job nothing will release."""
    from taskq_sdk._backend.upstream_io import UpstreamStore
    from taskq_sdk.errors import TaskqError

    async def refused(self: Any, child: str, parents: list[str], *, now_ms: int) -> int:
        raise redis.ResponseError("ERR the link script was refused (injected)")

    upstream = client.submit("add", 1, 2, _defer_by=60)
    monkeypatch.setattr(UpstreamStore, "link", refused)
    with pytest.raises((TaskqError, redis.RedisError)):
        client.submit(cachefns.uncached_count, "faults:link", upstream, _job_id="unlinked")
    monkeypatch.undo()
    assert client.job("unlinked").status() is JobStatus.cancelled
    upstream.cancel()
