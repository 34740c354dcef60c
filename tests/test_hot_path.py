"""The client's hot path: replies parsed where the bytes arrive; reply-channel subscriptions lapse in sweeps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from redis.exceptions import ResponseError

from taskq_sdk import AsyncClient
from taskq_sdk._backend import autopipe
from taskq_sdk._backend.autopipe import AutoPipeline
from taskq_sdk._backend.connection import make_redis
from taskq_sdk._backend.events import EventHub
from taskq_sdk.config import Settings


def _pipe(redis_url: str) -> tuple[Any, AutoPipeline]:
    r = make_redis(Settings(redis_url=redis_url))  # type: ignore[arg-type]
    pipe = AutoPipeline.for_redis(r)
    assert pipe is not None
    return r, pipe


def test_replies_resolve_where_the_bytes_arrive(redis_url: str, sync_redis: redis.Redis) -> None:
    """With hiredis the pipeline owns the transport: no reader task; big and many replies still arrive whole."""
    big = b"x" * (3 * 1024 * 1024 + 7)  # arrives in many reads
    sync_redis.set("big", big)

    async def main() -> tuple[Any, list[Any], Any, bool]:
        r, pipe = _pipe(redis_url)
        try:
            got = await pipe.execute("GET", "big")
            assert pipe._replies is not None and pipe._reader is None, "hiredis is a dependency: no reader task"
            many = await asyncio.gather(*(pipe.execute("INCR", "n") for _ in range(500)))
            with pytest.raises(ResponseError):
                await pipe.execute("INCR", "big")  # an error reply fails its own call only
            after = await pipe.execute("GET", "n")
            return got, many, after, pipe._replies is not None
        finally:
            await pipe.close()
            await r.aclose()

    got, many, after, kept = asyncio.run(main())
    assert got == big
    assert many == list(range(1, 501)), "pipelined replies reach their callers in order"
    assert after == b"500" and kept, "an error reply does not drop the connection"


def test_without_hiredis_the_reader_task_reads(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(autopipe, "_hiredis_reader", lambda parser: None)

    async def main() -> tuple[list[Any], bool]:
        r, pipe = _pipe(redis_url)
        try:
            out = await asyncio.gather(*(pipe.execute("INCR", "m") for _ in range(50)))
            return out, pipe._reader is not None and pipe._replies is None
        finally:
            await pipe.close()
            await r.aclose()

    out, via_task = asyncio.run(main())
    assert out == list(range(1, 51)) and via_task


def test_a_connection_closed_by_the_server_fails_calls_and_reconnects(redis_url: str, sync_redis: redis.Redis) -> None:
    async def main() -> Any:
        r, pipe = _pipe(redis_url)
        try:
            await pipe.execute("CLIENT", "SETNAME", "hot-path-victim")
            killed = 0
            for c in sync_redis.client_list():
                if c.get("name") == "hot-path-victim":
                    sync_redis.client_kill_filter(_id=c["id"])
                    killed += 1
            assert killed == 1
            # the close reaches the transport's connection_lost: the next call gets a fresh connection
            for _ in range(200):
                try:
                    return await pipe.execute("PING")
                except redis.ConnectionError:
                    await asyncio.sleep(0.01)
            raise AssertionError("no call succeeded after the server closed the connection")
        finally:
            await pipe.close()
            await r.aclose()

    assert asyncio.run(main()) in (b"PONG", True, "PONG")


def test_expected_subscriptions_lapse_in_sweeps(settings: Settings) -> None:
    """Unadopted ones lapse after their ttl, adopted ones stay; a shorter ttl after a longer one is not held up."""

    async def main() -> None:
        hub = EventHub(settings)
        try:
            subs = [hub.expect(f"ch{i}", ttl=0.2) for i in range(50)]
            late = hub.expect("late", ttl=30)
            early = hub.expect("early", ttl=0.1)  # behind a longer ttl in the sweep's order
            with hub.local("ch0", prepared=subs[0]) as kept:
                assert kept is subs[0]
                deadline = asyncio.get_running_loop().time() + 10
                while not (early.expired and all(s.expired for s in subs[1:])):
                    assert asyncio.get_running_loop().time() < deadline, "expected subscriptions never lapsed"
                    await asyncio.sleep(0.02)
                assert not kept.expired and "ch0" in hub._local, "an adopted subscription does not lapse"
                assert not late.expired and "late" in hub._local
                assert not any(f"ch{i}" in hub._local for i in range(1, 50)), "lapsed ones keep no events"
            hub.release(late)
            assert late.expired and "late" not in hub._local
        finally:
            await hub.close()

    asyncio.run(main())


def test_a_burst_of_submits_sets_no_timer_each(settings: Settings) -> None:
    """1,000 submits leave one sweep timer, not 1,000 (each would be a heap entry and a callback later)."""

    async def main() -> int:
        async with AsyncClient(settings=settings) as client:
            await client.submit("add", 0, 0)
            loop = asyncio.get_running_loop()
            before = len(loop._scheduled)  # type: ignore[attr-defined]
            await asyncio.gather(*(client.submit("add", i, i) for i in range(500)))
            for i in range(500):
                await client.submit("add", i, i)
            return len(loop._scheduled) - before  # type: ignore[attr-defined]

    assert asyncio.run(main()) <= 5


@pytest.mark.chaos
def test_a_worker_whose_script_connection_is_killed_loses_and_repeats_nothing(
    settings: Settings, sync_redis: redis.Redis, worker: Any
) -> None:
    """The worker's per-job scripts ride their own connection; killing it mid-drain loses no job, runs none twice."""
    engine = worker.engine
    assert engine._auto is not None, "a plain server URL gives the worker an auto-pipeline"

    def auto_client_ids() -> list[int]:
        transport = engine._auto._transport
        if transport is None:
            return []
        host, port = transport.get_extra_info("sockname")[:2]
        return [int(c["id"]) for c in sync_redis.client_list() if c.get("addr") == f"{host}:{port}"]

    async def main() -> list[Any]:
        async with AsyncClient(settings=settings) as client:
            jobs = [await client.submit("mark", i, 0.01) for i in range(300)]
            waits = {asyncio.ensure_future(j.wait(timeout=120)) for j in jobs}
            killed = 0
            while waits:  # kill the worker's script connection every ~20 ms until the queue is drained
                for cid in auto_client_ids():
                    sync_redis.client_kill_filter(_id=cid)
                    killed += 1
                _, waits = await asyncio.wait(waits, timeout=0.02)
            assert killed >= 5, f"the worker's script connection was killed only {killed} times"
            return [await j.result(timeout=60) for j in jobs]

    results = asyncio.run(main())
    assert results == [i * 2 for i in range(300)], "every job completed with its own result"
    runs = {int(k): int(v) for k, v in sync_redis.hgetall("load:runs").items()}
    assert sorted(runs) == list(range(300)) and set(runs.values()) == {1}, "each job ran exactly once"
    assert engine._auto.writes > 0, "the scripts went through the auto-pipeline"


def test_a_subscription_hands_each_event_to_one_getter() -> None:
    """Events wake their getters directly: in order, one getter each, none lost to a timeout or a cancel."""
    from taskq_sdk._backend.events import Subscription

    async def main() -> None:
        sub = Subscription("ch")
        assert await sub.get(timeout=0.01) is None  # nothing came: None at the deadline
        sub.put({"n": 0})
        assert await sub.get(timeout=0) == {"n": 0}  # already there: no wait
        getters = [asyncio.ensure_future(sub.get(timeout=5)) for _ in range(3)]
        await asyncio.sleep(0)  # let the three start waiting
        doomed = getters[0]
        sub.put({"n": 1})
        doomed.cancel()  # woken for event 1, cancelled before it took it: event 1 goes to the next getter
        sub.put({"n": 2})
        got = await asyncio.gather(*getters[1:])
        assert doomed.cancelled() and got == [{"n": 1}, {"n": 2}]
        late = asyncio.ensure_future(sub.get(timeout=0.05))
        assert await late is None and not sub._getters, "a timed-out getter leaves no waiter behind"
        sub.put({"n": 3})
        sub.put({"n": 4})
        assert sub.drain() == [{"n": 3}, {"n": 4}] and sub.drain() == []

    asyncio.run(main())
