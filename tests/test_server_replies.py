"""Error replies and corrupt keys: a worker never exits for what the server answers.

A long script of another client (BUSY), a primary demoted in a failover (READONLY) and one
corrupt key (WRONGTYPE, a counter that is not a number, an enqueue time of 1e19) used to end the
worker process - and a poison job ended one every claim TTL. Here the worker logs, backs off and
goes on; a job whose keys are corrupt ends as failed with a typed error, never in progress forever.
"""

from __future__ import annotations

import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_sdk import BrokerUnavailable, Client, JobFailed
from taskq_sdk._backend import layout
from taskq_sdk.config import Settings
from taskq_sdk.local import WorkerProcess
from taskq_sdk.serialization import codec_for

from .conftest import FAST, FAST_ENV, JOBS, ROOT, figure, wait_until

pytestmark = pytest.mark.chaos


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env.update(FAST_ENV)
    env.update({"REDIS_URL": url, "PYTHONPATH": str(ROOT)})
    return env


@pytest.fixture
def own_server(tmp_path: Path) -> Any:
    """A server this test may turn into a replica and back, or keep busy."""
    from taskq_sdk._server import LocalServer

    srv = LocalServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def worker_on(lifeline: Any, tmp_path: Path) -> Any:
    started: list[WorkerProcess] = []

    def start(url: str) -> WorkerProcess:
        w = WorkerProcess(_env(url), [JOBS], tmp_path / f"w{len(started)}.log", lifeline=lifeline).start()
        started.append(w)
        return w

    yield start
    for w in started:
        w.stop(now=True, timeout=10)


def _busy_script(url: str, seconds: float) -> threading.Thread:
    """Another client's Lua script that keeps the server busy for ``seconds`` (every other call: BUSY)."""
    script = (
        "local t0 = redis.call('TIME') "
        "while true do local t = redis.call('TIME') "
        "if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) >= tonumber(ARGV[1]) then break end end return 1"
    )

    def run() -> None:
        r = redis.Redis.from_url(url, socket_timeout=seconds + 30)
        try:
            r.eval(script, 0, int(seconds * 1_000_000))
        finally:
            r.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_busy_server_does_not_end_the_worker(own_server: Any, worker_on: Any) -> None:
    worker = worker_on(own_server.url)
    admin = redis.Redis.from_url(own_server.url)
    admin.config_set("busy-reply-threshold", 50)  # BUSY replies after 50 ms of a script, not 5 s
    settings = Settings(redis_url=own_server.url, **FAST)  # type: ignore[arg-type]
    with Client(settings=settings) as client:
        wait_until(lambda: len(client.workers()) == 1, timeout=30, what="worker up")
        slow = client.submit("sleeper", 1.0)  # its result is written while the server is busy
        jobs = [client.submit("add", i, 1, _defer_by=0.5) for i in range(20)]
        wait_until(lambda: slow.status().value == "in_progress", what="running")
        busy = _busy_script(own_server.url, 3.0)
        busy.join(timeout=30)
        assert slow.result(timeout=30) == 1.0
        assert [j.result(timeout=30) for j in jobs] == [i + 1 for i in range(20)]
        alive = worker.is_alive()
        figure("busy_reply_dead_workers", int(not alive))
        assert alive, worker.log_tail()
        assert "BUSY" in worker.log_tail(), "the worker says why it paused"
    admin.close()


def test_readonly_server_does_not_end_the_worker(own_server: Any, worker_on: Any) -> None:
    """The primary is demoted (REPLICAOF a host that is down) for 2 s, then promoted again."""
    worker = worker_on(own_server.url)
    admin = redis.Redis.from_url(own_server.url)
    settings = Settings(redis_url=own_server.url, **FAST)  # type: ignore[arg-type]
    with Client(settings=settings) as client:
        wait_until(lambda: len(client.workers()) == 1, timeout=30, what="worker up")
        slow = client.submit("sleeper", 1.0)
        jobs = [client.submit("add", i, 1, _defer_by=0.5) for i in range(20)]
        wait_until(lambda: slow.status().value == "in_progress", what="running")
        admin.execute_command("REPLICAOF", "127.0.0.1", "1")
        try:
            try:
                wait_until(lambda: "READONLY" in worker.log_tail(), timeout=15, what="the worker met READONLY")
            except AssertionError:
                raise AssertionError(worker.log_tail()) from None
        finally:
            admin.execute_command("REPLICAOF", "NO", "ONE")
        assert slow.result(timeout=30) == 1.0
        assert [j.result(timeout=30) for j in jobs] == [i + 1 for i in range(20)]
        alive = worker.is_alive()
        figure("readonly_reply_dead_workers", int(not alive))
        assert alive, worker.log_tail()
    admin.close()


def _corrupt_blob(r: redis.Redis, settings: Settings, job_id: str, et: Any) -> None:
    codec = codec_for(settings)
    key = layout.job_key(job_id)
    d = codec.deserializer(r.get(key))
    d["et"] = et
    r.set(key, codec.serializer(d), px=r.pttl(key))


CORRUPTIONS = {
    "retry counter is a hash": lambda r, s, j: (r.delete(layout.retry_key(j)), r.hset(layout.retry_key(j), "x", 1)),
    "retry counter is text": lambda r, s, j: r.set(layout.retry_key(j), "many"),
    "meta is a string": lambda r, s, j: (r.delete(layout.meta_key(j)), r.set(layout.meta_key(j), "junk")),
    "claim is a list": lambda r, s, j: r.rpush(layout.in_progress_key(j), "junk"),
    "job is a set": lambda r, s, j: (r.delete(layout.job_key(j)), r.sadd(layout.job_key(j), "junk")),
    "max_tries is text": lambda r, s, j: r.hset(layout.meta_key(j), "max_tries", "lots"),
    "timeout is inf": lambda r, s, j: r.hset(layout.meta_key(j), "timeout", "inf"),
    "timeout is nan": lambda r, s, j: r.hset(layout.meta_key(j), "timeout", "nan"),
    "enqueue time is inf": lambda r, s, j: _corrupt_blob(r, s, j, math.inf),
    "enqueue time is 1e19": lambda r, s, j: _corrupt_blob(r, s, j, 10**19),
}


def test_corrupt_keys_fail_their_job_and_nothing_else(
    start_worker_process: Any, sync_redis: redis.Redis, settings: Settings
) -> None:
    """Each corrupt job ends failed with a typed error; the worker lives and runs every other job."""
    worker = start_worker_process()
    t0 = time.monotonic()
    with Client(settings=settings) as client:
        poisoned = {}
        for name, corrupt in CORRUPTIONS.items():
            job = client.submit("add", 1, 1, _defer_by=1.0)
            corrupt(sync_redis, settings, job.id)
            poisoned[name] = job
        healthy = [client.submit("add", i, i, _defer_by=1.0) for i in range(10)]
        assert [j.result(timeout=30) for j in healthy] == [2 * i for i in range(10)]
        outcomes = {}
        for name, job in poisoned.items():
            try:
                outcomes[name] = ("result", job.result(timeout=30))
            except JobFailed as exc:
                outcomes[name] = ("failed", exc.remote_type)
        assert client.submit("add", 2, 2).result(timeout=10) == 4
    alive = worker.is_alive()
    figure("poison_key_dead_workers", int(not alive))
    stuck = [n for n, j in poisoned.items() if outcomes[n][0] != "failed"]
    figure("poison_key_jobs_left_unfailed", len(stuck))
    figure("poison_keys_handled_seconds", round(time.monotonic() - t0, 2))
    assert alive, worker.log_tail()
    assert not stuck, f"corrupt jobs not failed: {[(n, outcomes[n]) for n in stuck]}"
    for name, (_, remote_type) in outcomes.items():
        assert remote_type in ("CorruptJob", "DeserializationError"), (name, remote_type)


def test_a_client_call_on_a_busy_server_gets_a_typed_error_that_says_what_to_do(own_server: Any) -> None:
    """BUSY reaches a client call as BrokerUnavailable naming the cause, not as redis-py's raw ResponseError."""
    admin = redis.Redis.from_url(own_server.url)
    admin.config_set("busy-reply-threshold", 50)
    settings = Settings(redis_url=own_server.url, **FAST)  # type: ignore[arg-type]
    with Client(settings=settings) as client:
        job = client.submit("add", 1, 2, _defer_by=3600)
        busy = _busy_script(own_server.url, 2.0)

        def refused() -> BaseException | None:
            try:
                client.job(job.id).status()
            except Exception as exc:
                return exc
            return None

        error = wait_until(refused, timeout=10, interval=0.02, what="a call refused while the script runs")
        assert isinstance(error, BrokerUnavailable) and error.refused_reply == "BUSY", repr(error)
        assert "busy running another client's script" in str(error) and "SCRIPT KILL" in str(error)
        busy.join(timeout=30)
        assert client.job(job.id).status().value == "deferred", "once the script ends, calls work again"
    admin.close()
