"""Concurrent calls coalesce into pipelined writes (auto-pipelining); each caller's order and errors stay its own."""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import pytest
import redis
from redis.exceptions import ResponseError

from taskq_sdk import AsyncClient, Client, JobStatus
from taskq_sdk._backend.autopipe import AutoPipeline, pack
from taskq_sdk._backend.connection import make_redis
from taskq_sdk.config import Settings

from .conftest import figure


def _auto(client: AsyncClient | Client) -> AutoPipeline:
    core = client.core if isinstance(client, AsyncClient) else client._async.core
    auto = core.open().auto
    assert auto is not None, "a plain server URL gets an auto-pipeline"
    return auto


def test_gathered_submits_share_a_few_writes(settings: Settings, sync_redis: redis.Redis) -> None:
    async def main() -> tuple[list[Any], int, int, int]:
        async with AsyncClient(settings=settings) as client:
            await client.ping()
            await client.submit("add", 0, 0)  # warm: the connection and the reply channel
            auto, store = _auto(client), client.core.open()
            writes, calls, rows = auto.writes, store.submit_calls, store.submit_rows
            jobs = await asyncio.gather(*(client.submit("add", i, i) for i in range(100)))
            return jobs, auto.writes - writes, store.submit_calls - calls, store.submit_rows - rows

    jobs, writes, calls, rows = asyncio.run(main())
    assert len({j.id for j in jobs}) == 100 and all(j.created for j in jobs)
    assert rows == 100
    figure("autopipe_writes_for_100_gathered_submits", writes)
    figure("submit_script_calls_for_100_gathered_submits", calls)
    assert writes <= 10, f"100 concurrent submits took {writes} writes: they were not coalesced"
    assert calls <= 10, f"100 concurrent submits took {calls} script calls: they did not share calls"
    assert sync_redis.zcard("arq:queue") == 101


def test_gathered_submits_of_one_id_create_it_once(settings: Settings) -> None:
    async def main() -> list[Any]:
        async with AsyncClient(settings=settings) as client:
            await client.submit("add", 0, 0)
            return await asyncio.gather(*(client.submit("add", i, i, _job_id="same") for i in range(10)))

    jobs = asyncio.run(main())
    assert {j.id for j in jobs} == {"same"}
    assert sum(1 for j in jobs if j.created) == 1, "the id was taken once; the others got the existing job"


def test_threads_sharing_one_client_coalesce(settings: Settings) -> None:
    with Client(settings=settings) as client:
        client.ping()
        auto = _auto(client)
        writes, commands = auto.writes, auto.commands
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            jobs = list(pool.map(lambda i: client.submit("add", i, 1, _job_id=f"t-{i}"), range(200)))
        assert sorted(j.id for j in jobs) == sorted(f"t-{i}" for i in range(200))
        assert auto.commands - commands <= 200
        assert auto.writes - writes < 200, "threads' submits never shared a write"


def test_each_caller_sees_its_own_calls_in_order(settings: Settings) -> None:
    async def one(client: AsyncClient, i: int) -> tuple[bool, JobStatus, JobStatus]:
        job = await client.submit("add", i, i, _job_id=f"order-{i}", _defer_by=3600)
        before = await job.status()
        await job.cancel()
        return bool(job.created), before, await job.status()

    async def main() -> list[tuple[bool, JobStatus, JobStatus]]:
        async with AsyncClient(settings=settings) as client:
            return await asyncio.gather(*(one(client, i) for i in range(50)))

    for created, before, after in asyncio.run(main()):
        assert created and before is JobStatus.deferred and after is JobStatus.cancelled


def test_an_error_reply_fails_only_its_own_call(redis_url: str, sync_redis: redis.Redis) -> None:
    sync_redis.set("k", "v")
    sync_redis.hset("h", "f", "1")

    async def main() -> list[Any]:
        r = make_redis(Settings(redis_url=redis_url))  # type: ignore[call-arg]
        auto = AutoPipeline.for_redis(r)
        assert auto is not None
        try:
            return await asyncio.gather(
                auto.execute("GET", "k"),
                auto.execute("HGET", "k", "f"),  # WRONGTYPE: k is a string
                auto.execute("HGET", "h", "f"),
                return_exceptions=True,
            )
        finally:
            await auto.close()
            await r.aclose()

    first, wrong, third = asyncio.run(main())
    assert first == b"v" and third == b"1"
    assert isinstance(wrong, ResponseError) and str(wrong).startswith("WRONGTYPE")


def test_a_killed_connection_costs_no_call(settings: Settings, sync_redis: redis.Redis) -> None:
    async def main() -> list[bool]:
        async with AsyncClient(settings=settings) as client:
            await client.submit("add", 0, 0)
            auto_ids = [c["id"] for c in sync_redis.client_list() if c.get("cmd") in ("evalsha", "eval")]
            assert auto_ids, "the submit's connection is listed"
            for cid in auto_ids:
                sync_redis.client_kill_filter(_id=cid)
            jobs = await asyncio.gather(*(client.submit("add", i, 1) for i in range(20)))
            return [bool(j.created) for j in jobs]

    assert asyncio.run(main()) == [True] * 20
    assert sync_redis.zcard("arq:queue") == 21


def test_closing_fails_calls_in_flight_and_refuses_new_ones(redis_url: str) -> None:
    async def main() -> None:
        r = make_redis(Settings(redis_url=redis_url))  # type: ignore[call-arg]
        auto = AutoPipeline.for_redis(r)
        assert auto is not None
        assert await auto.execute("PING") == b"PONG"
        await auto.close()
        assert not auto.usable
        with pytest.raises(redis.exceptions.ConnectionError):
            await auto.execute("PING")
        await r.aclose()

    asyncio.run(main())


def test_pack_refuses_what_the_server_cannot_take() -> None:
    assert (
        pack(("SET", "k", b"\x00v", 3, 1.5)) == b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\x00v\r\n$1\r\n3\r\n$3\r\n1.5\r\n"
    )
    with pytest.raises(TypeError, match="cannot send"):
        pack(("SET", "k", None))
    with pytest.raises(TypeError, match="cannot send"):
        pack(("SET", "k", True))


def test_late_replies_after_a_hung_server_never_reach_new_calls() -> None:
    """A call that timed out on a paused server leaves its reply on the old connection: new calls never read it."""
    from taskq_sdk._server import LocalServer
    from taskq_sdk.errors import BrokerUnavailable

    from .conftest import FAST

    srv = LocalServer().start()
    try:
        settings = Settings(redis_url=srv.url, **{**FAST, "socket_timeout": 1.0})  # type: ignore[arg-type]
        with Client(settings=settings) as client:
            first = client.submit("add", 1, 1, _job_id="before", _defer_by=3600)
            srv.pause()
            try:
                with pytest.raises(BrokerUnavailable):
                    client.submit("add", 2, 2, _job_id="during", _defer_by=3600)
            finally:
                srv.resume()
            # the 'during' submit may still run and answer late; every answer below must be its own
            for i in range(20):
                assert first.status() is JobStatus.deferred
                later = client.submit("add", i, 3, _job_id=f"after-{i}", _defer_by=3600)
                assert later.created and later.id == f"after-{i}" and later.status() is JobStatus.deferred
    finally:
        srv.stop()
