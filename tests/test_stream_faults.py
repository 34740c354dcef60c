"""Jobs that stream, under faults: a stream key someone else overwrote or deleted, a reply lost to a
reset connection, and a server that is busy, read-only or drops its clients mid-stream.

The claim under test: nothing is lost silently. A reader gets every item once and in order, or
the earlier attempt's items, one ``StreamRestart`` and then the new attempt's; a job whose stream
key is no longer its own fails with :class:`~taskq_sdk.streaming.StreamCorrupted` naming the key,
and the worker goes on serving other jobs. Real server, real worker processes (the lost-reply case
runs an in-process worker whose append call loses its first replies after the server ran them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from taskq_sdk import Client, JobFailed
from taskq_sdk._backend import layout
from taskq_sdk._backend.stream_io import StreamAppender, stream_key
from taskq_sdk.config import Settings
from taskq_sdk.local import WorkerThread
from taskq_sdk.streaming import StreamCorrupted, StreamRestart

from .conftest import FAST, JOBS, figure, wait_until
from .test_limits_faults import ResettingProxy
from .test_server_replies import _busy_script

STREAMFNS = "tests.streamfns"
MODULES = (JOBS, STREAMFNS)

pytestmark = pytest.mark.chaos


def _story(seen: list[Any], n: int) -> tuple[int, int]:
    """(items lost, items out of place) in what a reader saw of a job yielding 0..n-1: the part after
    each StreamRestart starts again at 0; every part must be 0, 1, 2... with no repeat or gap, and the
    last part must be complete."""
    parts: list[list[int]] = [[]]
    for x in seen:
        if isinstance(x, StreamRestart):
            parts.append([])
        else:
            parts[-1].append(x if isinstance(x, int) else x["i"])
    lost = misplaced = 0
    for i, values in enumerate(parts):
        want = list(range(n)) if i == len(parts) - 1 else list(range(len(values)))
        lost += len(set(want) - set(values))
        misplaced += sum(1 for k, v in enumerate(values) if k >= len(want) or v != want[k])
    return lost, misplaced


# ----------------------------------------------------------------------------- 1. a key that is no stream
@pytest.mark.parametrize("how", ["set", "hset"])
def test_a_stream_key_overwritten_mid_run_fails_the_job_typed_and_the_worker_goes_on(
    how: str, settings: Settings, start_worker_process: Any, sync_redis: Any, redis_url: str
) -> None:
    """Someone SETs / HSETs the stream key while the generator runs: the reader raises StreamCorrupted
    naming the key, the job fails with it after one attempt (no retry, no hang), and another streaming
    job on the same worker process streams every item."""
    worker = start_worker_process(modules=MODULES)
    with Client(settings=settings) as client:
        job = client.submit("gated", "sf:gate", 4, redis_url)
        other = client.submit("count_up_async", 40, 0.02)
        reader: Iterator[Any] = iter(job.stream())
        sync_redis.rpush("sf:gate", 1)
        assert next(reader) == 0
        key = stream_key(layout, job.id)
        sync_redis.delete(key)
        if how == "set":
            sync_redis.set(key, "not a stream")
        else:
            sync_redis.hset(key, "k", "v")
        sync_redis.rpush("sf:gate", 1, 1, 1)
        with pytest.raises(StreamCorrupted) as read_err:
            list(reader)
        assert key in str(read_err.value) and "DEL" in str(read_err.value)
        with pytest.raises(JobFailed) as failed:
            job.result(timeout=30)
        assert failed.value.remote_type.endswith("StreamCorrupted"), failed.value
        assert key in failed.value.remote_message
        assert job.info().attempts == 1  # the key stays wrong: a retry would meet it again
        assert list(other.stream()) == [{"i": i} for i in range(40)]
        assert client.submit("count_up", 3).result(timeout=30) == [0, 1, 2]
        assert worker.is_alive(), worker.log_tail()


def test_a_stream_key_taken_before_the_job_starts_or_before_it_is_read(
    settings: Settings, start_worker_process: Any, sync_redis: Any
) -> None:
    """The key holds a string before the job's first item: the job fails typed at once; a finished job's
    stream replaced by a hash before a late reader comes: the reader raises StreamCorrupted, result() holds."""
    start_worker_process(modules=MODULES)
    with Client(settings=settings) as client:
        early = client.submit("count_up", 3, _defer_by=1.0)
        sync_redis.set(stream_key(layout, early.id), "squatter")
        with pytest.raises(StreamCorrupted):
            list(early.stream())  # the reader names the key before the job even runs
        with pytest.raises(JobFailed) as failed:
            early.result(timeout=30)
        assert failed.value.remote_type.endswith("StreamCorrupted") and early.info().attempts == 1
        assert sync_redis.get(stream_key(layout, early.id)) == b"squatter"  # nothing overwritten

        done = client.submit("count_up", 3)
        assert done.result(timeout=30) == [0, 1, 2]
        key = stream_key(layout, done.id)
        sync_redis.delete(key)
        sync_redis.hset(key, "k", "v")
        with pytest.raises(StreamCorrupted, match="holds a hash"):
            list(done.stream())
        assert done.result(timeout=5) == [0, 1, 2]


def test_items_deleted_under_a_running_job_fail_it_instead_of_a_silent_gap(
    settings: Settings, start_worker_process: Any, sync_redis: Any, redis_url: str
) -> None:
    """DEL of the stream key mid-run: the job must not go on writing a stream that lacks its first items
    (a late reader would get a silently truncated list); it fails with StreamCorrupted, and so does a reader."""
    start_worker_process(modules=MODULES)
    with Client(settings=settings) as client:
        job = client.submit("gated", "sf:gate2", 4, redis_url)
        reader: Iterator[Any] = iter(job.stream())
        sync_redis.rpush("sf:gate2", 1)
        assert next(reader) == 0
        key = stream_key(layout, job.id)
        wait_until(lambda: sync_redis.xlen(key) >= 2, what="item 0 stored")
        sync_redis.delete(key)
        sync_redis.rpush("sf:gate2", 1, 1, 1)
        with pytest.raises(JobFailed) as failed:
            job.result(timeout=30)
        assert failed.value.remote_type.endswith("StreamCorrupted"), failed.value
        assert "lost items" in failed.value.remote_message
        with pytest.raises(JobFailed):
            list(reader)


# ----------------------------------------------------------------------------- 2. a lost reply
def test_a_burst_sent_again_after_its_reply_was_lost_is_written_once(
    settings: Settings, start_worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server runs an append, then the connection drops before its reply arrives (as a reset
    between the script and its reply does): the worker sends the same burst again. The stream must
    hold each item once, with no restart marker."""
    real = StreamAppender.append
    calls = {"n": 0, "lost": 0}

    async def reply_lost(self: StreamAppender, blobs: Any, *, attempt: int, seq: int) -> str:
        out = await real(self, blobs, attempt=attempt, seq=seq)
        calls["n"] += 1
        if calls["n"] in (1, 2, 4):  # the begin entry (twice), then a burst of items
            calls["lost"] += 1
            raise redis.exceptions.ConnectionError("Connection reset by peer (the reply was lost)")
        return out

    monkeypatch.setattr(StreamAppender, "append", reply_lost)
    start_worker(modules=MODULES)
    n = 30
    with Client(settings=settings) as client:
        job = client.submit("count_up_async", n, 0.01)
        seen = list(job.stream())
        assert calls["lost"] == 3
        lost, dup = _story(seen, n)
        figure("stream_lost_reply_duplicates_or_misplaced", dup)
        assert (lost, dup) == (0, 0), seen
        assert not any(isinstance(x, StreamRestart) for x in seen), seen
        assert seen == [{"i": i} for i in range(n)]
        assert job.result(timeout=10) == [{"i": i} for i in range(n)]
        assert job.info().attempts == 1


class ReplyLosingProxy(ResettingProxy):
    """Forwards TCP to the server; a request carrying ``marker`` is forwarded, then the connection is
    reset (both ends) when its reply comes: the server ran the command, the caller never hears of it.

    Example::

        with ReplyLosingProxy("127.0.0.1", 6379, b"lbl-0010", cuts=1) as proxy: ...  # proxy.port
    """

    #: the caller-side sockets whose next reply is to be lost
    armed: set[socket.socket]

    def _pump(self, src: socket.socket, dst: socket.socket, requests: bool) -> None:
        caller = src if requests else dst
        armed = self.__dict__.setdefault("armed", set())
        try:
            while data := src.recv(65536):
                if not requests and caller in armed:
                    for sock in (src, dst):  # RST at close: the reply is gone with the connection
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                    dst.shutdown(socket.SHUT_RD)  # wakes the request pump, which closes the caller's end
                    src.close()
                    return
                dst.sendall(data)
                if requests and self._cut_here(data):
                    armed.add(caller)
        except OSError:
            pass
        finally:
            for sock in (src, dst):  # shutdown first: it wakes the other pump, blocked in recv on it
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()


def test_a_reply_lost_on_the_network_after_the_append_ran_writes_nothing_twice(
    settings: Settings, server: Any, start_worker_process: Any
) -> None:
    """A worker process reaches the server through a proxy that lets the append of item 10 (and later of
    item 20) run, then resets the connection before its reply: the worker sends the burst again. The
    reader gets every item once, in order, with no restart; one attempt."""
    with (
        ReplyLosingProxy(server.host, server.port, b"lbl-0010", cuts=1) as first,
        ReplyLosingProxy("127.0.0.1", first.port, b"lbl-0020", cuts=1) as proxy,
    ):
        via_proxy = f"redis://:{server.password}@127.0.0.1:{proxy.port}/0"
        start_worker_process(env={"REDIS_URL": via_proxy}, modules=MODULES)
        n = 30
        with Client(settings=settings) as client:
            job = client.submit("labelled", n, 0.02)
            seen = list(job.stream())
            assert (first.done, proxy.done) == (1, 1), "both replies were lost"
            want = [f"lbl-{i:04d}" for i in range(n)]
            dup = len(seen) - len(set(map(str, seen)))
            figure("stream_reply_lost_duplicates", dup)
            assert seen == want, seen
            assert job.result(timeout=30) == want
            assert job.info().attempts == 1


# ----------------------------------------------------------------------------- 3. server faults mid-stream
@pytest.fixture
def own_server(tmp_path: Path) -> Any:
    """A server this test may keep busy, demote to a replica and back, or cut its clients off."""
    from taskq_sdk._server import LocalServer

    srv = LocalServer().start()
    yield srv
    srv.stop()


def _kill_clients(admin: redis.Redis) -> int:
    return int(admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))


@pytest.mark.parametrize("fault", ["busy", "readonly", "reset", "frozen", "frozen_past_claim"])
def test_a_server_fault_mid_stream_loses_and_repeats_nothing(
    fault: str, own_server: Any, start_worker_process: Any
) -> None:
    """BUSY (another client's 2 s script), READONLY (the server demoted to a replica of a host that is
    down, then promoted), every client connection killed (5 times), or the server process frozen
    (SIGSTOP) for 1.5 s, or for 4.5 s, longer than the job's claim (TASKQ_CLAIM_TTL=3 s here: the job is
    claimed again), while a worker process streams: the reader sees each item once, in order (or a
    StreamRestart and then the next attempt's, complete), and the result is every item."""
    url = own_server.url
    admin = redis.Redis.from_url(url)
    settings = Settings(redis_url=url, **FAST)  # type: ignore[arg-type]
    worker = start_worker_process(modules=MODULES, env={"REDIS_URL": url}, wait=False)
    n = 60
    try:
        with Client(settings=settings) as client:
            wait_until(lambda: len(client.workers()) == 1, timeout=30, what=f"worker up\n{worker.log_tail()}")
            job = client.submit("streams_tagged", "sf:tagged", n, 0.03, _timeout=120)
            seen: list[Any] = []
            faulted = threading.Event()
            side: threading.Thread | None = None
            for item in job.stream():
                seen.append(item)
                count = len(seen)
                if fault == "busy" and count == 5:
                    admin.config_set("busy-reply-threshold", 50)  # BUSY after 50 ms of a script, not 5 s
                    side = _busy_script(url, 2.0)
                    faulted.set()
                elif fault == "readonly" and count == 5:
                    admin.execute_command("REPLICAOF", "127.0.0.1", "1")
                    side = threading.Thread(target=_promote_after_readonly, args=(admin, worker), daemon=True)
                    side.start()
                    faulted.set()
                elif fault == "reset" and count in (5, 10, 15, 20, 25):
                    assert _kill_clients(admin) >= 1
                    faulted.set()
                elif fault.startswith("frozen") and count == 5:
                    pid = own_server.pid
                    os.kill(pid, signal.SIGSTOP)
                    # the freeze's length is the fault itself: a timer ends it, the reader is blocked meanwhile
                    side = threading.Timer(1.5 if fault == "frozen" else 4.5, os.kill, (pid, signal.SIGCONT))
                    side.start()
                    faulted.set()
            if side is not None:
                side.join(timeout=30)
            assert faulted.is_set()
            result = job.result(timeout=60)
            lost, dup = _story(seen, n)
            figure(f"stream_{fault}_items_lost", lost)
            figure(f"stream_{fault}_duplicates_or_misplaced", dup)
            attempts = job.info().attempts
            figure(f"stream_{fault}_attempts", attempts)
            figure(f"stream_{fault}_restarts", sum(isinstance(x, StreamRestart) for x in seen))
            if fault == "frozen_past_claim":
                # the freeze outlived the claim, and the job was claimed again: by this worker, whose running
                # copy goes on under the new claim (no restart), or by a retry that restarts the stream
                assert attempts >= 2, attempts
            assert (lost, dup) == (0, 0), seen
            assert [x["i"] for x in result] == list(range(n))
            assert [x["i"] for x in job.stream()] == list(range(n))  # a late reader: the last attempt, whole
            assert worker.is_alive(), worker.log_tail()
    finally:
        if own_server.pid is not None:
            os.kill(own_server.pid, signal.SIGCONT)  # a failed run must not leave the server frozen
        admin.execute_command("REPLICAOF", "NO", "ONE")
        admin.close()


def _promote_after_readonly(admin: redis.Redis, worker: Any) -> None:
    """Promote the server again once the worker met READONLY (or after 10 s)."""
    try:
        wait_until(lambda: "READONLY" in worker.log_tail(200), timeout=10, what="the worker met READONLY")
    except AssertionError:
        pass  # the stream writer retries quietly; promote anyway
    finally:
        admin.execute_command("REPLICAOF", "NO", "ONE")


def test_a_server_busy_past_the_outage_budget_retries_the_attempt(own_server: Any, start_worker_process: Any) -> None:
    """BUSY (2.5 s) for longer than the worker's outage budget (1 s here): the streaming attempt gives up as for a
    connection outage - it is retried, not failed for good (the job's code did nothing wrong); the
    reader sees attempt 1's items, one StreamRestart, then every item of attempt 2."""
    url = own_server.url
    admin = redis.Redis.from_url(url)
    settings = Settings(redis_url=url, **FAST)  # type: ignore[arg-type]
    # the claim outlives the busy spell (a BUSY longer than TASKQ_CLAIM_TTL also lapses the claim: more attempts)
    env = {"REDIS_URL": url, "TASKQ_OUTAGE_BUDGET": "1", "TASKQ_CLAIM_TTL": "6"}
    worker = start_worker_process(modules=MODULES, env=env, wait=False)
    n = 40
    try:
        with Client(settings=settings) as client:
            wait_until(lambda: len(client.workers()) == 1, timeout=30, what=f"worker up\n{worker.log_tail()}")
            job = client.submit("streams_tagged", "sf:busy", n, 0.03, _timeout=120, _retries=3)
            seen: list[Any] = []
            busy: threading.Thread | None = None
            for item in job.stream():
                seen.append(item)
                if len(seen) == 5:
                    admin.config_set("busy-reply-threshold", 50)
                    busy = _busy_script(url, 2.5)
            assert busy is not None
            busy.join(timeout=30)
            result = job.result(timeout=60)
            lost, dup = _story(seen, n)
            figure("stream_long_busy_items_lost", lost)
            assert (lost, dup) == (0, 0), seen
            assert [x["i"] for x in result] == list(range(n))
            assert job.info().attempts >= 2
            assert any(isinstance(x, StreamRestart) for x in seen)
    finally:
        admin.close()


def test_a_reader_rides_out_a_busy_server(own_server: Any) -> None:
    """The server is busy with another client's script (BUSY to every call) when a reader starts: the
    reader waits it out (TASKQ_OUTAGE_BUDGET) and then reads every item, instead of raising BUSY."""
    url = own_server.url
    admin = redis.Redis.from_url(url)
    settings = Settings(redis_url=url, **FAST)  # type: ignore[arg-type]
    worker = WorkerThread(settings, list(MODULES)).start()
    try:
        with Client(settings=settings) as client:
            job = client.submit("count_up", 5)
            assert job.result(timeout=30) == list(range(5))
            admin.config_set("busy-reply-threshold", 50)
            probe = redis.Redis.from_url(url)
            busy = _busy_script(url, 1.5)

            def refused() -> bool:
                try:
                    probe.ping()
                except redis.exceptions.ResponseError as exc:
                    return str(exc).startswith("BUSY")
                return False

            wait_until(refused, timeout=10, what="the server answers BUSY")
            probe.close()
            assert list(job.stream()) == list(range(5))
            busy.join(timeout=30)
    finally:
        worker.stop(now=True, timeout=20)
        admin.close()
