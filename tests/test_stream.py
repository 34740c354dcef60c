"""Jobs that stream: a generator job's items reach job.stream() while it runs (issue 16 part 3).

The same stories through Client and AsyncClient, against a real server and real workers (threads,
and worker processes for the SIGKILL test).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from taskq_sdk import JobCancelled, JobFailed, JobStatus
from taskq_sdk.config import Settings
from taskq_sdk.streaming import NotAStream, StreamRestart

from .cluster_fixtures import real_cluster  # noqa: F401  (fixture)
from .conftest import JOBS, Api, wait_until

STREAMFNS = "tests.streamfns"
MODULES = (JOBS, STREAMFNS)


@pytest.fixture
def stream_worker(start_worker: Any) -> Any:
    return start_worker(modules=MODULES)


def _first(api: Api, reader: Any, n: int) -> tuple[list[Any], Any]:
    """The first ``n`` items of a stream reader (sync iterator or async iterator), and the reader."""
    if hasattr(reader, "__anext__"):
        return [api(reader.__anext__()) for _ in range(n)], reader
    return [next(reader) for _ in range(n)], reader


def _collect_into(api: Api, reader: Any, seen: list[Any]) -> None:
    """Append a stream's items to ``seen`` as they come (what was read stays there if it raises)."""
    if hasattr(reader, "__aiter__"):

        async def run() -> None:
            async for item in reader:
                seen.append(item)

        api(run())
    else:
        seen.extend(reader)


def test_items_arrive_while_the_job_runs_and_result_is_the_list(api: Api, stream_worker: Any, redis_url: str) -> None:
    client = api.client()
    job = api(client.submit("gated", "gate:1", 4, redis_url))
    import redis

    r = redis.Redis.from_url(redis_url)
    try:
        reader = iter(job.stream()) if api.kind == "sync" else job.stream().__aiter__()
        r.rpush("gate:1", 1)
        first, reader = _first(api, reader, 1)
        # the job still runs (it waits for the next gate token) while the reader already has item 0
        assert first == [0] and api(job.status()) is JobStatus.in_progress
        r.rpush("gate:1", 1, 1, 1)
        rest = api.iterate(reader)
    finally:
        r.close()
    assert rest == [1, 2, 3]
    assert api(job.result(timeout=10)) == [0, 1, 2, 3]


def test_async_generators_and_progress_work_too(api: Api, stream_worker: Any) -> None:
    client = api.client()
    job = api(client.submit("count_up_async", 5, 0.01))
    assert api.iterate(job.stream()) == [{"i": i} for i in range(5)]
    sync_job = api(client.submit("count_up", 3))
    assert api.iterate(sync_job.stream()) == [0, 1, 2]
    assert api(sync_job.progress()).fraction == 1.0  # report_progress inside a generator reaches the job


def test_a_late_reader_sees_every_item_in_order(api: Api, stream_worker: Any) -> None:
    client = api.client()
    job = api(client.submit("count_up", 1200))  # more than one read and one write burst
    assert api(job.result(timeout=30)) == list(range(1200))
    assert api.iterate(job.stream()) == list(range(1200))
    assert api.iterate(job.stream()) == list(range(1200))  # and again: reading does not consume


def test_a_reader_that_breaks_early_does_not_stop_the_job(api: Api, stream_worker: Any) -> None:
    client = api.client()
    job = api(client.submit("count_up", 30, 0.02))
    reader = job.stream()
    if api.kind == "sync":
        for item in reader:
            if item == 2:
                break
    else:

        async def two() -> None:
            async for item in reader:
                if item == 2:
                    break

        api(two())
    assert api(job.result(timeout=30)) == list(range(30))


def test_a_failure_after_items_raises_after_them(api: Api, stream_worker: Any) -> None:
    client = api.client()
    job = api(client.submit("fail_after", 3))
    seen: list[Any] = []
    with pytest.raises(JobFailed) as failed:
        _collect_into(api, job.stream(), seen)
    assert seen == [0, 1, 2]
    assert failed.value.remote_type == "ValueError" and "broke after 3 items" in failed.value.remote_message


def test_cancel_mid_stream_ends_the_stream_with_job_cancelled(api: Api, stream_worker: Any) -> None:
    client = api.client()
    job = api(client.submit("endless", 0.01))
    reader = iter(job.stream()) if api.kind == "sync" else job.stream().__aiter__()
    first, reader = _first(api, reader, 3)
    assert first == [0, 1, 2]
    assert api(job.cancel()) is True
    with pytest.raises(JobCancelled):
        api.iterate(reader)
    assert api(job.status()) is JobStatus.cancelled


def test_a_stream_over_its_bound_fails_typed_and_keeps_its_items(
    settings: Settings, start_worker: Any, api: Api
) -> None:
    start_worker(modules=MODULES, stream_max_items=50)
    client = api.client()
    job = api(client.submit("endless", 0))
    with pytest.raises(JobFailed) as failed:
        api.iterate(job.stream())
    assert failed.value.remote_type.endswith("StreamTooLong")
    assert "50" in failed.value.remote_message and "TASKQ_STREAM_MAX_ITEMS" in failed.value.remote_message
    kept: list[Any] = []
    with pytest.raises(JobFailed):  # a late reader: the items before the bound, then the error
        _collect_into(api, job.stream(), kept)
    assert kept == list(range(50))


def test_stream_of_a_plain_job_says_it_does_not_stream(api: Api, stream_worker: Any) -> None:
    client = api.client()
    job = api(client.submit("plain", 1))
    assert api(job.result(timeout=10)) == 2
    with pytest.raises(NotAStream, match="did not stream"):
        api.iterate(job.stream())


def test_a_job_cancelled_before_it_started_ends_its_reader(api: Api, settings: Settings) -> None:
    client = api.client()  # no worker: the job stays queued
    job = api(client.submit("count_up", 3))
    assert api(job.cancel()) is True
    with pytest.raises(JobCancelled):
        api.iterate(job.stream())


def test_a_stale_token_cannot_append(stream_worker: Any, settings: Settings, sync_redis: Any) -> None:
    """A zombie copy (a worker whose claim went to another worker) gets 'claim-lost', writes nothing."""
    import asyncio

    from taskq_sdk import Client
    from taskq_sdk._backend import layout
    from taskq_sdk._backend.connection import make_redis
    from taskq_sdk._backend.stream_io import StreamAppender, stream_key

    with Client(settings=settings) as client:
        job = client.submit("count_up", 2)
        assert job.result(timeout=10) == [0, 1]
        before = sync_redis.xlen(stream_key(layout, job.id))

        async def stale() -> str:
            redis = make_redis(settings)
            try:
                appender = StreamAppender(redis, layout, job.id, lambda: "zombie:1:ab#1", ttl_ms=60_000)
                return await appender.append([b"\x01"], attempt=1, seq=0)
            finally:
                await redis.aclose()

        assert asyncio.run(stale()) == "claim-lost"
        assert sync_redis.xlen(stream_key(layout, job.id)) == before
        assert list(job.stream()) == [0, 1]


@pytest.mark.chaos
def test_a_worker_killed_mid_stream_restarts_the_stream_as_documented(
    settings: Settings, start_worker_process: Any, sync_redis: Any
) -> None:
    """SIGKILL the worker that provably runs the job, mid-stream: the reader gets the first attempt's
    items, one StreamRestart, then every item of the second attempt; result and late readers see only those."""
    from taskq_sdk import Client

    start_worker_process(modules=MODULES)
    n = 20
    with Client(settings=settings) as client:
        job = client.submit("streams_pid", "st:pids", n, 0.05, _timeout=60)
        seen: list[Any] = []
        reader: Iterator[Any] = iter(job.stream())
        for item in reader:
            seen.append(item)
            if item == 4:
                entry = wait_until(lambda: sync_redis.lindex("st:pids", 0), timeout=10, what="the job's pid")
                os.kill(int(entry.decode().split(":")[0]), signal.SIGKILL)
                start_worker_process(modules=MODULES)
                break
        seen.extend(reader)
        marks = [i for i, x in enumerate(seen) if isinstance(x, StreamRestart)]
        assert len(marks) == 1, seen
        k = marks[0]
        restart = seen[k]
        assert restart.attempt == 2 and restart.discarded == k
        assert seen[:k] == list(range(k)) and k >= 5  # the first attempt's items, no gap
        assert seen[k + 1 :] == list(range(n))  # the second attempt's, each once
        assert job.result(timeout=30) == list(range(n))
        assert list(job.stream()) == list(range(n))  # a late reader: the last attempt only
        assert job.info().attempts == 2
    print(f"FIGURE stream_sigkill_items_before_restart={k}")


def test_stream_item_streams_from_a_job_that_returns_its_own_result(api: Api, stream_worker: Any) -> None:
    client = api.client()
    job = api(client.submit("trains", 3))
    assert api.iterate(job.stream()) == [{"epoch": e, "loss": 1.0 / (e + 1)} for e in range(3)]
    assert api(job.result(timeout=10)) == "model after 3 epochs"
    ajob = api(client.submit("trains_async", 4))
    assert api.iterate(ajob.stream()) == [0, 1, 2, 3]
    assert api(ajob.result(timeout=10)) == "done"


def test_stream_item_outside_a_worker_says_where_it_works() -> None:
    from taskq_sdk.streaming import NotStreaming, item_sink, stream_item

    assert item_sink() is None
    with pytest.raises(NotStreaming, match="inside a job that a taskq worker runs"):
        stream_item(1)


def test_the_video_job_streams_thumbnails_and_segment_stats(api: Api, start_worker: Any, tmp_path: Any) -> None:
    from .media import MediaServer, make_video

    make_video(tmp_path / "clip.mp4", seconds=2, fps=10, size=(96, 64), scene_cuts=1)
    start_worker(allow_private_urls=True, artifacts_dir=tmp_path / "artifacts")
    client = api.client()
    with MediaServer(tmp_path) as server:
        job = api(client.submit("process_video_async", server.url("/files/clip.mp4"), thumbnails=4))
        items = api.iterate(job.stream())
        result = api(job.result(timeout=30))  # the final result is as before: the whole analysis
    assert result["scene_changes"] == 1 and len(result["thumbnails"]) == 4
    kinds = [(item["kind"], item["index"]) for item in items]
    # each thumbnail (the middle frame of its quarter) comes before its quarter's stats, in order
    assert kinds == [(k, i) for i in range(4) for k in ("thumbnail", "segment")]
    thumbs = [item for item in items if item["kind"] == "thumbnail"]
    assert [t["path"] for t in thumbs] == result["thumbnails"]
    assert all(t["jpeg"][:2] == b"\xff\xd8" for t in thumbs)  # JPEG bytes, ready to show
    segments = [item for item in items if item["kind"] == "segment"]
    assert sum(s["frames"] for s in segments) == 20
    assert sum(s["scene_changes"] for s in segments) == result["scene_changes"]
    assert all(s["mean_brightness"] is not None for s in segments)


def test_a_cache_hit_streams_the_cached_items_which_live_as_long_as_the_entry(
    api: Api, stream_worker: Any, sync_redis: Any, settings: Settings
) -> None:
    from taskq_sdk._backend import layout
    from taskq_sdk._backend.stream_io import stream_key

    client = api.client()
    first = api(client.submit("count_up", 5, _cache=True))
    assert api(first.result(timeout=10)) == list(range(5))
    hit = api(client.submit("count_up", 5, _cache=True))
    assert hit.cached and api.iterate(hit.stream()) == list(range(5))
    ttl_ms = sync_redis.pttl(stream_key(layout, first.id))
    assert ttl_ms > settings.keep_result * 1000  # raised with the cache entry (TASKQ_CACHE_TTL), like the result


def test_an_upstream_failure_and_a_timeout_end_the_stream_with_their_errors(api: Api, stream_worker: Any) -> None:
    from taskq_sdk import JobTimedOut

    client = api.client()
    upstream = api(client.submit("fail_after", 1))
    dependent = api(client.submit("count_up", upstream))
    with pytest.raises(JobFailed) as failed:
        api.iterate(dependent.stream())
    assert failed.value.remote_type == "UpstreamFailed"
    slow = api(client.submit("endless", 0.01, _timeout=1))
    seen: list[Any] = []
    with pytest.raises(JobTimedOut):
        _collect_into(api, slow.stream(), seen)
    assert seen and seen == list(range(len(seen)))  # the items before the time limit, in order


@pytest.mark.redis_cluster
def test_streaming_on_a_redis_cluster(real_cluster: Any) -> None:  # noqa: F811
    """The hash-tagged cluster layout: appends, the end entry and reads all live in the queue's slot."""
    from taskq_sdk import Client
    from taskq_sdk.local import WorkerThread

    from .conftest import FAST

    s = Settings(redis_url=real_cluster.url, **FAST)  # type: ignore[arg-type]
    w = WorkerThread(s, list(MODULES)).start()
    try:
        wait_until(lambda: w.engine is not None and w.engine.status == "running", 20, what="worker running")
        with Client(settings=s) as client:
            job = client.submit("count_up", 600)
            assert list(job.stream()) == list(range(600))
            assert job.result(timeout=30) == list(range(600))
            seen: list[Any] = []
            with pytest.raises(JobFailed, match="broke after 2 items"):
                seen.extend(client.submit("fail_after", 2).stream())
            assert seen == [0, 1]
    finally:
        w.stop(now=True, timeout=20)


def test_an_isolated_generator_is_refused_with_the_reason(stream_worker: Any, settings: Settings) -> None:
    from taskq_sdk import Client

    with Client(settings=settings) as client, pytest.raises(JobFailed, match="drop isolate=True") as failed:
        client.submit("isolated_stream", 3).result(timeout=30)
    assert failed.value.remote_type.endswith("ConfigurationError")


def test_task_queue_service_streams_a_job_by_id(stream_worker: Any, settings: Settings) -> None:
    import asyncio

    from taskq_sdk.queue_service import TaskQueueService

    async def story() -> tuple[list[Any], Any]:
        async with TaskQueueService(settings=settings) as queue:
            job_id = await queue.enqueue("count_up", 4)
            items = [item async for item in queue.stream(job_id)]
            return items, await queue.wait(job_id, timeout=10)

    items, result = asyncio.run(story())
    assert items == [0, 1, 2, 3] and result == [0, 1, 2, 3]


@pytest.mark.chaos
def test_a_frozen_worker_that_wakes_up_cannot_add_to_the_new_attempts_stream(
    settings: Settings, start_worker_process: Any, sync_redis: Any
) -> None:
    """SIGSTOP the worker mid-stream: its claim lapses, a second worker runs attempt 2; SIGCONT the first:
    its late items are refused (fenced), so after the StreamRestart every item is attempt 2's, each once."""
    from taskq_sdk import Client

    first = start_worker_process(modules=MODULES)
    n = 30
    with Client(settings=settings) as client:
        job = client.submit("streams_tagged", "st:tagged", n, 0.05, _timeout=60)
        reader: Iterator[Any] = iter(job.stream())
        seen = [next(reader) for _ in range(4)]
        entry = wait_until(lambda: sync_redis.lindex("st:tagged", 0), timeout=10, what="the job's pid")
        frozen = int(entry.decode().split(":")[0])
        assert frozen == first.pid
        os.kill(frozen, signal.SIGSTOP)
        try:
            second = start_worker_process(modules=MODULES)
            for item in reader:  # attempt 1's unsent tail (if any), the marker, then attempt 2
                seen.append(item)
                if isinstance(item, dict) and item["attempt"] == 2 and item["i"] == 5:
                    break
        finally:
            os.kill(frozen, signal.SIGCONT)  # wakes up mid-attempt: its next writes are refused
        seen.extend(reader)
        k = next(i for i, x in enumerate(seen) if isinstance(x, StreamRestart))
        assert all(isinstance(x, dict) and x["pid"] == frozen and x["attempt"] == 1 for x in seen[:k])
        assert [x["i"] for x in seen[:k]] == list(range(k))
        after = seen[k + 1 :]
        assert [(x["pid"], x["attempt"], x["i"]) for x in after] == [(second.pid, 2, i) for i in range(n)]
        assert [x["i"] for x in job.result(timeout=30)] == list(range(n))
        assert [x["pid"] for x in job.stream()] == [second.pid] * n  # a late reader: attempt 2 only


@pytest.mark.security
def test_a_tenant_user_streams_its_own_job_and_another_tenant_cannot_read_it(
    redis_url: str, start_worker_process: Any
) -> None:
    import redis

    from taskq_sdk import Client, JobNotFound
    from taskq_sdk.security import create_tenant_user

    from .conftest import FAST

    admin = redis.Redis.from_url(redis_url)
    urls = {t: create_tenant_user(admin, t, password=f"{t}-pw-123", base_url=redis_url) for t in ("acme", "globex")}
    try:
        start_worker_process(env={"REDIS_URL": urls["acme"], "TASKQ_QUEUE": "acme"}, modules=MODULES)
        with (
            Client(urls["acme"], tenant="acme", queue="acme", **FAST) as acme,
            Client(urls["globex"], tenant="globex", queue="globex", **FAST) as globex,
        ):
            job = acme.submit("count_up", 3)
            assert list(job.stream()) == [0, 1, 2]  # XADD/XTRIM in the script, XREAD: within the tenant's ACL
            with pytest.raises(JobNotFound):
                globex.job(job.id)
            raw = redis.Redis.from_url(urls["globex"])
            try:
                with pytest.raises(redis.exceptions.NoPermissionError):
                    raw.xrange(f"taskq:t:acme:st:{job.id}")
            finally:
                raw.close()
    finally:
        for t in urls:
            admin.execute_command("ACL", "DELUSER", t)
        admin.close()


def test_notebook_functions_stream_on_a_local_cluster() -> None:
    """@cluster.job generators (shipped to the cluster's worker subprocess) and stream_item() in a notebook function."""
    import asyncio

    from taskq_sdk import LocalCluster
    from taskq_sdk.streaming import stream_item

    from .conftest import FAST

    with LocalCluster(n_workers=1, settings=Settings(**FAST)) as cluster:  # type: ignore[arg-type]

        @cluster.job
        def cubes(n: int) -> Iterator[int]:
            for i in range(n):
                yield i**3

        @cluster.job
        async def losses(epochs: int) -> str:
            for epoch in range(epochs):
                stream_item({"epoch": epoch})
                await asyncio.sleep(0)
            return "trained"

        client = cluster.client()
        job = client.submit(cubes, 4)
        assert list(job.stream()) == [0, 1, 8, 27] and job.result(timeout=30) == [0, 1, 8, 27]
        trained = client.submit(losses, 2)
        assert list(trained.stream()) == [{"epoch": 0}, {"epoch": 1}] and trained.result(timeout=30) == "trained"
