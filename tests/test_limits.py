"""Rate and concurrency limits across real worker processes (issue 15 part 2).

A ``max_concurrency`` key never has one job too many running, a rate holds in every 1 s window
across two workers, nothing is lost or failed, and a SIGKILLed worker's permit comes back once its
claim lapses (``TASKQ_CLAIM_TTL``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis

from bench.limits import max_in_window, max_overlap
from taskq_sdk import Client
from taskq_sdk.config import Settings
from taskq_sdk.errors import ConfigurationError
from taskq_sdk.limits import Limit, default_burst, parse_rate
from taskq_sdk.local import WorkerProcess

from .conftest import figure, wait_until
from .limit_jobs import RUNNING, SPANS

LIMIT_JOBS = ("tests.limit_jobs",)


def _spans(r: redis.Redis, prefix: str) -> list[tuple[float, float, int]]:
    out = []
    for raw in r.lrange(SPANS, 0, -1):
        start, end, attempt, tag = raw.decode().split()
        if tag.startswith(prefix):
            out.append((float(start), float(end), int(attempt)))
    return out


@pytest.mark.parametrize(
    "spec",
    ["50/x", "0/s", "-3/s", "50", "/s", "fast", "1e9999/s", 50],
)
def test_bad_rate_specs_are_typed_errors(spec: Any) -> None:
    with pytest.raises(ConfigurationError, match="rate"):
        parse_rate(spec)


def test_rates_and_bursts_parse() -> None:
    assert parse_rate("3000/min").per_second == 50
    assert parse_rate("5/10s").per_second == 0.5
    assert str(parse_rate("50/s")) == "50/s"
    assert default_burst(parse_rate("100/s")) == 10
    assert default_burst(parse_rate("10/h")) == 1
    assert Limit.of(rate="50/s", concurrency=3).describe("openai") == "openai: 50/s, 3 at once"
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigurationError, match="max_concurrency"):
            Limit.of(concurrency=bad)
    with pytest.raises(ConfigurationError, match="needs a rate"):
        Limit.of()


def test_bad_limit_options_are_refused_before_anything_is_written(settings: Settings) -> None:
    import taskq_sdk

    with pytest.raises(ConfigurationError, match="rate limit"):
        taskq_sdk.job(rate_limit="50/x", name="f")(lambda: None)
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        taskq_sdk.job(max_concurrency=0, name="f")(lambda: None)
    with Client(settings=settings) as client:
        with pytest.raises(ConfigurationError, match="limit key"):
            client.submit("add", 1, 2, _limit_key="no spaces please")
        with pytest.raises(ConfigurationError, match="concurrency"):
            client.set_limit("api", concurrency=-1)
        with pytest.raises(ConfigurationError, match="needs a rate"):
            client.set_limit("api")
        assert client.remove_limit("api") is False


def test_a_concurrency_key_never_has_one_job_too_many_running(
    settings: Settings,
    redis_url: str,
    sync_redis: redis.Redis,
    start_worker_process: Callable[..., WorkerProcess],
) -> None:
    """Two workers with 10 slots each, 30 jobs sharing a key of 3: never 4 running (sampled every 10 ms)."""
    start_worker_process(env={"ARQ_MAX_JOBS": "10"}, modules=LIMIT_JOBS)
    start_worker_process(env={"ARQ_MAX_JOBS": "10"}, modules=LIMIT_JOBS)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        r = redis.Redis.from_url(redis_url)
        while not stop.wait(0.01):
            samples.append(int(r.get(RUNNING) or 0))
        r.close()

    sampler = threading.Thread(target=sample, daemon=True)
    with Client(settings=settings) as client:
        client.set_limit("api", concurrency=3)
        sampler.start()
        try:
            jobs = [client.submit("limited_call", f"c{i}", 0.1, _limit_key="api") for i in range(30)]
            results = [job.result(timeout=60) for job in jobs]
        finally:
            stop.set()
            sampler.join(5)
        assert len(results) == 30
        assert all(job.status().value == "complete" for job in jobs)
        m = client.metrics()
    spans = _spans(sync_redis, "c")
    assert len(spans) == 30, "every job ran exactly once"
    assert all(attempt == 1 for _, _, attempt in spans), "waiting for a permit counts no attempt"
    assert samples, "the sampler took no sample"
    assert max(samples) == 3, f"sampled running counts: max {max(samples)} (limit 3)"
    assert max_overlap([(s, e) for s, e, _ in spans]) == 3
    assert m.limits["key:api"]["limit"] == "api: 3 at once"
    assert m.limits["key:api"]["passed"] == 30
    assert m.limits["key:api"]["waited"] > 0
    figure("limits_concurrency_max_sampled", max(samples))


def test_a_rate_limit_holds_in_every_second_across_two_workers(
    settings: Settings, sync_redis: redis.Redis, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    """40 jobs of a ``rate_limit="10/s"`` function (burst 1) on two workers: at most 11 start in any 1 s."""
    start_worker_process(modules=LIMIT_JOBS)
    start_worker_process(modules=LIMIT_JOBS)
    with Client(settings=settings) as client:
        batch = client.map("ten_per_second", [f"r{i}" for i in range(40)], chunk_size=1)
        assert len(batch.results(timeout=60)) == 40
    spans = _spans(sync_redis, "r")
    assert len(spans) == 40
    assert all(attempt == 1 for _, _, attempt in spans)
    starts = [s for s, _, _ in spans]
    peak = max_in_window(starts)
    # rate 10 + burst 1; one start may cross a window edge by the gap between the gate and the
    # function's first line (a few ms), hence + 1
    assert peak <= 12, f"{peak} starts in one 1 s window under 10/s"
    figure("limits_rate_10ps_max_in_1s", peak)


def test_a_waiting_job_says_why(settings: Settings, start_worker_process: Callable[..., WorkerProcess]) -> None:
    start_worker_process(modules=LIMIT_JOBS)
    with Client(settings=settings) as client:
        client.set_limit("slow", rate="1/min")
        first = client.submit("limited_call", "w0", 0.0, _limit_key="slow")
        second = client.submit("limited_call", "w1", 0.0, _limit_key="slow")
        first.result(timeout=30)
        info = wait_until(lambda: second.info() if second.info().waiting else None, what="second job waits")
        assert info.waiting == "waiting for rate limit slow: 1/min"
        assert info.status.value == "deferred"
        assert info.attempts == 0
        pytest.importorskip("ipywidgets")
        from taskq_sdk.views.widgets import JobWidget

        view = JobWidget(second)
        wait_until(lambda: "waiting for rate limit slow" in view.message.value, what="the widget says why")
        assert second.cancel()


def test_a_corrupt_limit_key_fails_its_job_once_saying_why(
    settings: Settings, sync_redis: redis.Redis, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    """A limit's key of the wrong type (WRONGTYPE on every check) fails the job at its first attempt with
    CorruptJob naming the limit, instead of putting it back until its attempts run out."""
    start_worker_process(modules=LIMIT_JOBS)
    with Client(settings=settings) as client:
        client.set_limit("api", rate="5/s")
        sync_redis.delete("taskq:t:default:lim:key:api:tb")
        sync_redis.lpush("taskq:t:default:lim:key:api:tb", "junk")
        job = client.submit("limited_call", "c0", 0.0, _limit_key="api")
        wait_until(lambda: job.status().value == "failed", timeout=30, what="the job fails")
        info = job.info()
        assert info.error is not None and info.error.startswith("CorruptJob"), info.error
        assert "key:api" in info.error and "WRONGTYPE" in info.error, info.error
        assert info.attempts == 1
        assert client.submit("limited_call", "c1", 0.0).result(timeout=30) is not None, "the worker goes on"


def test_a_killed_workers_permit_comes_back_after_its_claim_lapses(
    settings: Settings, sync_redis: redis.Redis, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    """A worker SIGKILLed while its job holds the only permit: the permit is free once the claim
    (TASKQ_CLAIM_TTL=3 s here) lapses; the job runs again elsewhere, the next one after it."""
    doomed = start_worker_process(modules=LIMIT_JOBS)
    with Client(settings=settings) as client:
        hung = client.submit("one_at_a_time", "k0", first_try_hangs=True)
        wait_until(lambda: int(sync_redis.get(RUNNING) or 0) == 1, what="the first job runs")
        doomed.kill()
        start_worker_process(modules=LIMIT_JOBS)
        nxt = client.submit("one_at_a_time", "k1")
        assert hung.result(timeout=60) > 0
        assert nxt.result(timeout=60) > 0
        assert hung.info().attempts == 2
    spans = _spans(sync_redis, "k")
    assert sorted(tag_attempt for _, _, tag_attempt in spans) == [1, 2]
    assert max_overlap([(s, e) for s, e, _ in spans]) == 1


def test_async_client_declares_and_uses_a_limit_key(
    settings: Settings, sync_redis: redis.Redis, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    """The same through AsyncClient: set_limit, submit and map with _limit_key, metrics, remove_limit."""
    import asyncio

    from taskq_sdk import AsyncClient

    start_worker_process(env={"ARQ_MAX_JOBS": "8"}, modules=LIMIT_JOBS)

    async def main() -> dict[str, Any]:
        async with AsyncClient(settings=settings) as client:
            await client.set_limit("pair", concurrency=2)
            one = await client.submit("limited_call", "a0", 0.1, _limit_key="pair")
            batch = await client.map("limited_call", [f"a{i}" for i in range(1, 9)], kwargs={"seconds": 0.1},
                                     _limit_key="pair", chunk_size=1)  # fmt: skip
            await one.result(timeout=60)
            assert len(await batch.results(timeout=60)) == 8
            m = await client.metrics()
            assert await client.remove_limit("pair") is True
            return m.limits

    limits = asyncio.run(main())
    spans = _spans(sync_redis, "a")
    assert len(spans) == 9
    assert max_overlap([(s, e) for s, e, _ in spans]) == 2
    assert limits["key:pair"]["passed"] == 9


def test_the_dashboard_line_names_each_limit_in_use() -> None:
    from taskq_sdk.views.dashboard import limits_html

    assert limits_html({}) == ""
    line = limits_html({"key:openai": {"limit": "openai: 50/s", "running": 2, "passed": 9, "waited": 4}})
    assert "openai: 50/s" in line and "running 2" in line and "waited 4" in line
