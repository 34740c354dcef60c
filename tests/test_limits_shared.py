"""A limit key shared across tenants where its owner allows it, and nowhere else (security).

Tenant ``acme`` declares ``openai`` with ``share_with=["team-b"]``: team-b's jobs name it
``_limit_key="acme/openai"`` and share acme's one budget. Any other tenant - including names that
look like team-b or acme, and hostile spellings - is refused at submit with a typed error, and a job
written past that check (straight through the client core, or with a forged envelope) is refused by
the worker before it takes a permit: it never runs and acme's counters do not move.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
import redis

from bench.limits import max_overlap
from taskq_sdk import Client
from taskq_sdk._backend.envelope import encode_job
from taskq_sdk.config import Settings
from taskq_sdk.errors import ConfigurationError, PermissionDenied
from taskq_sdk.local import WorkerProcess

from .conftest import wait_until
from .limit_jobs import SPANS

pytestmark = pytest.mark.security
LIMIT_JOBS = ("tests.limit_jobs",)


def _tags(r: redis.Redis) -> dict[str, tuple[float, float]]:
    out = {}
    for raw in r.lrange(SPANS, 0, -1):
        start, end, _attempt, tag = raw.decode().split()
        out[tag] = (float(start), float(end))
    return out


def _passed(r: redis.Redis) -> int:
    return int(r.hget("taskq:t:acme:lim:key:openai:st", "passed") or 0)


def test_a_shared_key_is_one_budget_for_its_owner_and_the_tenants_it_names(
    settings: Settings, sync_redis: redis.Redis, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    start_worker_process(env={"ARQ_MAX_JOBS": "10"}, modules=LIMIT_JOBS)
    with Client(settings=settings, tenant="acme") as acme, Client(settings=settings, tenant="team-b") as team_b:
        acme.set_limit("openai", concurrency=1, share_with=["team-b"])
        jobs = [acme.submit("limited_call", f"a{i}", 0.05, _limit_key="openai") for i in range(4)]
        jobs.append(acme.submit("limited_call", "a4", 0.05, _limit_key="acme/openai"))  # its own, spelt in full
        jobs += [team_b.submit("limited_call", f"b{i}", 0.05, _limit_key="acme/openai") for i in range(4)]
        batch = team_b.map("limited_call", ["b4", "b5"], kwargs={"seconds": 0.05}, _limit_key="acme/openai")
        for job in jobs:
            job.result(timeout=60)
        batch.results(timeout=60)
        owner_view = acme.metrics().limits
        shared_view = team_b.metrics().limits
    spans = _tags(sync_redis)
    assert len(spans) == 11
    assert max_overlap(list(spans.values())) == 1, "acme's and team-b's jobs held the one permit in turn"
    assert owner_view["acme/key:openai"]["passed"] >= 11
    assert shared_view["team-b/key:acme/openai"]["limit"] == "openai: 1 at once"


@pytest.mark.parametrize("tenant", ["team-c", "team", "team-bb", "b", "default"])
def test_tenants_it_was_not_shared_with_are_refused_at_submit(
    settings: Settings, sync_redis: redis.Redis, tenant: str
) -> None:
    with Client(settings=settings, tenant="acme") as acme:
        acme.set_limit("openai", rate="5/s", share_with=["team-b"])
    with Client(settings=settings, tenant=tenant) as other:
        with pytest.raises(PermissionDenied, match=f"not shared with tenant {tenant}"):
            other.submit("limited_call", "x", _limit_key="acme/openai")
        with pytest.raises(PermissionDenied, match="share_with"):
            other.map("limited_call", ["x", "y"], _limit_key="acme/openai")
        with pytest.raises(PermissionDenied):  # a key that does not exist reads the same
            other.submit("limited_call", "x", _limit_key="acme/no-such-key")
    assert _passed(sync_redis) == 0


@pytest.mark.parametrize(
    "ref",
    ["ACME/openai", "acme/../openai", "acme:lim/openai", "acme/openai/x", "/openai", "acme/", "a" * 64 + "/openai",
     "acme/open ai", "acme\x00/openai", "acme/openai:def"],
)  # fmt: skip
def test_hostile_spellings_are_typed_errors(settings: Settings, ref: str) -> None:
    with Client(settings=settings, tenant="team-c") as other, pytest.raises(ConfigurationError, match="limit key"):
        other.submit("limited_call", "x", _limit_key=ref)


def test_the_worker_refuses_a_job_written_past_the_submit_check(
    settings: Settings, sync_redis: redis.Redis, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    """team-c writes jobs itself: one naming acme's key, one with a forged envelope whose limit key
    tries to climb out of the limit namespace. Neither runs; acme's counters and permits do not move."""
    start_worker_process(modules=LIMIT_JOBS)
    with Client(settings=settings, tenant="acme") as acme, Client(settings=settings, tenant="team-c") as evil:
        acme.set_limit("openai", concurrency=1, share_with=["team-b"])
        core = evil.async_client.core
        named = core.prepare("limited_call", ("e0",), {"_limit_key": "acme/openai"})
        forged = core.prepare("limited_call", ("e1",), {})
        blob = encode_job(core.codec, "limited_call", ["e1"], {}, enqueued_ms=0, limit_key="acme:lim:key:openai/x")
        forged = dataclasses.replace(forged, job_bytes=blob)
        for row in (named, forged):
            assert evil.portal.call(core.write, row)
        for row, why in ((named, "is not shared with tenant team-c"), (forged, "malformed")):
            job = evil.job(row.job_id)
            wait_until(lambda job=job: job.status().value == "failed", timeout=30, what="the worker refuses it")
            info = job.info()
            assert info.error is not None and info.error.startswith("PermissionDenied"), info.error
            assert why in info.error
        assert acme.submit("limited_call", "a0", 0.0, _limit_key="openai").result(timeout=30) > 0
    assert set(_tags(sync_redis)) == {"a0"}, "the refused jobs never ran"
    assert _passed(sync_redis) == 1
    assert sync_redis.zcard("taskq:t:acme:lim:key:openai:wait") == 0


def test_the_owner_can_take_a_share_back(
    settings: Settings, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    start_worker_process(modules=LIMIT_JOBS)
    with Client(settings=settings, tenant="acme") as acme, Client(settings=settings, tenant="team-b") as team_b:
        acme.set_limit("openai", rate="50/s", share_with=["team-b"])
        assert team_b.submit("limited_call", "b0", 0.0, _limit_key="acme/openai").result(timeout=30) > 0
        acme.set_limit("openai", rate="50/s")
        with pytest.raises(PermissionDenied):
            team_b.submit("limited_call", "b1", 0.0, _limit_key="acme/openai")
        with pytest.raises(ConfigurationError, match="list of tenant names"):
            acme.set_limit("openai", rate="50/s", share_with="team-b")  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="limit key"):
            team_b.set_limit("acme/openai", rate="1000/s")  # nobody declares another tenant's key
        with pytest.raises(Exception, match="not a valid name"):
            acme.set_limit("openai", rate="50/s", share_with=["Team B"])


def test_the_limits_snapshot_is_one_round_trip(settings: Settings, redis_url: str, sync_redis: redis.Redis) -> None:
    """metrics()/the dashboard read every limit, its counters and its held permits in one script call,
    however many limits and permits there are; a permit whose claim is gone does not count."""
    import asyncio

    from redis.asyncio import Redis

    from taskq_sdk._backend.limits import snapshot

    with Client(settings=settings) as client:
        for i in range(5):
            client.set_limit(f"k{i}", concurrency=3)
    for i in range(5):
        sync_redis.zadd(f"taskq:t:default:lim:key:k{i}:run", {f"j{i}|w#1": 1, f"gone{i}|w#1": 1})
        sync_redis.set(f"arq:in-progress:j{i}", "w#1")

    class Counting(Redis):
        """Counts the commands this client sends (a pipeline would be counted per command it holds)."""

        sent = 0

        async def execute_command(self, *args: Any, **options: Any) -> Any:
            Counting.sent += 1
            return await super().execute_command(*args, **options)

        def pipeline(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the snapshot should be one script call, not a pipeline")

    async def read() -> tuple[dict[str, dict[str, Any]], int, int]:
        pool = Counting.from_url(redis_url)
        try:
            await snapshot(pool, "default")  # the server learns the script once
            sync_redis.config_resetstat()
            Counting.sent = 0
            out = await snapshot(pool, "default")
            evalsha = int(sync_redis.info("commandstats")["cmdstat_evalsha"]["calls"])
        finally:
            await pool.aclose()
        return out, Counting.sent, evalsha

    out, sent, evalsha = asyncio.run(read())
    assert sorted(out) == [f"key:k{i}" for i in range(5)]
    assert all(v["running"] == 1 and v["limit"].endswith("3 at once") for v in out.values()), out
    assert (sent, evalsha) == (1, 1), "one command sent: the script call"


def test_with_per_tenant_acl_users_a_shared_key_is_refused_saying_why(
    redis_url: str, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    """Per-tenant ACL users (the security boundary) confine team-b's worker to team-b's keys: a key acme
    shares cannot be used there. The submit is accepted (team-b's user cannot read acme's key to check),
    and the worker refuses the job with PermissionDenied saying why - never CorruptJob, never run. acme's
    own limited jobs run under acme's confined user (which may not run TIME: the check uses the worker's clock)."""
    from taskq_sdk.security import create_tenant_user

    from .conftest import FAST

    admin = redis.Redis.from_url(redis_url)
    urls = {t: create_tenant_user(admin, t, password=f"{t}-pw-123", base_url=redis_url) for t in ("acme", "team-b")}
    try:
        start_worker_process(env={"REDIS_URL": urls["team-b"], "TASKQ_QUEUE": "team-b"}, modules=LIMIT_JOBS)
        start_worker_process(env={"REDIS_URL": urls["acme"], "TASKQ_QUEUE": "acme"}, modules=LIMIT_JOBS)
        with (
            Client(urls["acme"], tenant="acme", queue="acme", **FAST) as acme,  # type: ignore[arg-type]
            Client(urls["team-b"], tenant="team-b", queue="team-b", **FAST) as team_b,  # type: ignore[arg-type]
        ):
            acme.set_limit("openai", concurrency=1, share_with=["team-b"])
            job = team_b.submit("limited_call", "b0", 0.0, _limit_key="acme/openai")
            wait_until(lambda: job.status().value == "failed", timeout=30, what="the worker refuses it")
            error = job.info().error or ""
            assert error.startswith("PermissionDenied") and "may not use" in error, error
            team_b.metrics()  # does not fail on the limit it may not read
            # acme's own jobs under acme's confined user: its limit works (the check runs as that user)
            assert acme.submit("limited_echo", "a0", _limit_key="openai").result(timeout=30) == "a0"
            assert acme.metrics().limits["acme/key:openai"]["passed"] == 1
        assert not admin.lrange(SPANS, 0, -1), "team-b's job never ran"
        assert _passed(admin) == 1
    finally:
        for t in urls:
            admin.execute_command("ACL", "DELUSER", t)
        admin.close()
