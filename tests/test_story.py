"""The user's story, told twice: through the blocking Client and through the AsyncClient.

``call(x)`` returns ``x`` for the Client and runs ``x`` on the test's event loop for the
AsyncClient, so each scenario is written once and exercised through both APIs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from taskq_sdk import (
    AsyncClient,
    Client,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobStatus,
    JobTimedOut,
    WaitTimeout,
)
from taskq_sdk.config import Settings

from .conftest import Api, figure, wait_until


def test_submit_wait_result_and_status(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("add", 2, 3))
    assert api(job.result(timeout=10)) == 5
    assert api(job.status()) is JobStatus.complete
    assert api(job.done()) is True
    info = api(job.info())
    assert info.function == "add"
    assert info.attempts == 1
    assert info.worker and info.started_at and info.finished_at and info.enqueued_at
    assert info.tenant == "default" and info.workspace == "default"
    assert info.args_repr == "add(2, 3)"
    assert api(job.exception()) is None


def test_progress_is_seen_while_running(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("slow", 20, step=0.05))
    seen: list[float] = []

    def progressed() -> bool:
        p = api(job.progress())
        if p.fraction is not None:
            seen.append(p.fraction)
        return p.fraction is not None and 0 < p.fraction < 1

    wait_until(progressed, timeout=10, what="partial progress")
    assert api(job.wait(timeout=10)) == 20
    final = api(job.progress())
    assert final.fraction == 1.0 and final.message == "step 20" and final.done == 20 and final.total == 20
    assert seen == sorted(seen), "progress never goes backwards"


def test_sync_function_progress_from_thread(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("sync_slow", 5, step=0.02))
    assert api(job.result(timeout=10)) == 5
    assert api(job.progress()).fraction == 1.0


def test_failure_carries_remote_type_message_traceback(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("boom", 17))
    with pytest.raises(JobFailed) as info:
        api(job.result(timeout=10))
    exc = info.value
    assert exc.remote_type == "ValueError"
    assert exc.remote_message == "bad row 17"
    assert 'raise ValueError(f"bad row {x}")' in exc.remote_traceback
    assert "jobfns.py" in exc.remote_traceback
    assert exc.job_id == job.id
    assert exc.attempts == 1, "a ValueError is not transient: no retry"
    assert "job.retry()" in str(exc)
    assert api(job.status()) is JobStatus.failed
    assert isinstance(api(job.exception()), JobFailed)
    logs = api(job.logs())
    assert "about to fail on 17" in logs
    assert any("failing on 17" in line for line in logs)


def test_transient_errors_are_retried_with_attempts_visible(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("flaky", 3))
    assert api(job.result(timeout=20)) == 3
    assert api(job.info()).attempts == 3


def test_retries_are_bounded_by_max_tries(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("always_transient", _retries=2))
    with pytest.raises(JobFailed) as info:
        api(job.result(timeout=20))
    assert info.value.remote_type == "TimeoutError"
    assert api(job.info()).attempts == 2


def test_cancel_queued_and_running(api: Api, worker: Any) -> None:
    client = api.client()
    deferred = api(client.submit("add", 1, 1, _defer_by=60))
    assert api(deferred.status()) is JobStatus.deferred
    assert api(deferred.cancel()) is True
    assert api(deferred.status()) is JobStatus.cancelled
    with pytest.raises(JobCancelled):
        api(deferred.result(timeout=5))

    running = api(client.submit("slow", 200, step=0.05))
    wait_until(lambda: api(running.status()) is JobStatus.in_progress, what="running")
    t0 = time.perf_counter()
    assert api(running.cancel()) is True
    with pytest.raises(JobCancelled):
        api(running.result(timeout=5))
    figure("cancel_running_job_seconds", round(time.perf_counter() - t0, 3))
    assert api(running.status()) is JobStatus.cancelled
    assert api(running.cancel()) is False, "a finished job cannot be cancelled again"


def test_retry_creates_linked_job(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("boom", 1))
    with pytest.raises(JobFailed):
        api(job.result(timeout=10))
    again = api(job.retry())
    assert again.id != job.id
    with pytest.raises(JobFailed):
        api(again.result(timeout=10))
    assert api(again.info()).retry_of == job.id
    assert api(job.info()).retried_by == again.id


def test_reattach_by_id_from_a_new_client(api: Api, worker: Any) -> None:
    first = api.client()
    job = api(first.submit("add", 20, 22))
    api(job.result(timeout=10))
    second = api.client()
    again = api(second.job(job.id))
    assert api(again.result(timeout=5)) == 42
    with pytest.raises(JobNotFound):
        api(second.job("never-existed"))


def test_wait_timeout_leaves_the_job_running(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("slow", 10, step=0.1))
    with pytest.raises(WaitTimeout) as info:
        api(job.result(timeout=0.2))
    assert info.value.status in ("queued", "in_progress")
    assert isinstance(info.value, TimeoutError)
    assert api(job.result(timeout=10)) == 10


def test_job_time_limit(api: Api, worker: Any) -> None:
    client = api.client()
    job = api(client.submit("sleeper", 30, _timeout=0.3))
    with pytest.raises(JobTimedOut) as info:
        api(job.result(timeout=10))
    assert "0.3s" in str(info.value)
    assert api(job.info()).attempts == 1, "a job over its own limit is not retried"
    decorated = api(client.submit("limited"))
    with pytest.raises(JobTimedOut):
        api(decorated.result(timeout=10))


def test_list_jobs_by_workspace_and_status(api: Api, worker: Any) -> None:
    client = api.client(workspace="exp1")
    other = api.client(workspace="exp2")
    ok = api(client.submit("add", 1, 2))
    bad = api(client.submit("boom", 3))
    elsewhere = api(other.submit("add", 5, 5))
    for j in (ok, bad, elsewhere):
        api(j.exception(timeout=10))
    ids = {j.id for j in api(client.jobs())}
    assert ids == {ok.id, bad.id}
    assert [j.id for j in api(client.jobs(status="failed"))] == [bad.id]
    assert {j.id for j in api(client.jobs(workspace="exp2"))} == {elsewhere.id}


def test_await_async_job_and_done_callback(settings: Settings, worker: Any) -> None:
    async def main() -> None:
        async with AsyncClient(settings=settings) as client:
            job = await client.submit("aadd", 4, 5)
            assert await job == 9
            done = asyncio.Event()
            seen: list[str] = []

            def cb(j: Any) -> None:
                seen.append(j.id)
                done.set()

            job2 = await client.submit("add", 1, 1)
            job2.add_done_callback(cb)
            await asyncio.wait_for(done.wait(), 10)
            assert seen == [job2.id]

    asyncio.run(main())


def test_sync_done_callback_may_block_on_the_job(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        results: list[int] = []
        done = threading.Event()

        def cb(job: Any) -> None:
            results.append(job.result())  # blocking inside the callback is allowed
            done.set()

        client.submit("add", 3, 4).add_done_callback(cb)
        assert done.wait(10)
        assert results == [7]


def test_closed_client_refuses_politely(settings: Settings) -> None:
    client = Client(settings=settings)
    client.close()
    client.close()  # idempotent
    from taskq_sdk import ClientClosed

    with pytest.raises(ClientClosed):
        client.submit("add", 1, 2)


def test_sync_client_inside_a_running_event_loop(settings: Settings, worker: Any) -> None:
    """A Jupyter cell runs inside a loop: the blocking client must work there, without nest_asyncio."""

    async def cell() -> int:
        with Client(settings=settings) as client:
            return int(client.submit("add", 40, 2).result(timeout=10))

    assert asyncio.run(cell()) == 42


def test_sync_client_from_many_threads(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        out: list[int] = []
        lock = threading.Lock()

        def work(i: int) -> None:
            value = client.submit("add", i, i).result(timeout=20)
            with lock:
                out.append(value)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(out) == [2 * i for i in range(16)]


def test_ctrl_c_cancels_the_wait_not_the_job(settings: Settings, worker: Any) -> None:
    import _thread
    import signal

    # as in a terminal, whatever this process inherited: started from a shell's background job
    # (`... &`), SIGINT begins ignored and Python turns it into no KeyboardInterrupt at all
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with Client(settings=settings) as client:
            job = client.submit("slow", 20, step=0.05)
            timer = threading.Timer(0.3, _thread.interrupt_main)
            timer.start()
            with pytest.raises(KeyboardInterrupt):
                job.result()
            assert job.status() in (JobStatus.in_progress, JobStatus.queued, JobStatus.complete)
            assert job.result(timeout=10) == 20, "the client stays usable and the job ran on"
    finally:
        signal.signal(signal.SIGINT, previous)


def test_latency_of_a_trivial_job(settings: Settings, worker: Any) -> None:
    with Client(settings=settings) as client:
        client.submit("add", 0, 0).result(timeout=10)
        samples = []
        for i in range(30):
            t0 = time.perf_counter()
            client.submit("add", i, 1).result(timeout=10)
            samples.append(time.perf_counter() - t0)
        samples.sort()
        figure("submit_to_result_p50_ms_inprocess_worker", round(samples[len(samples) // 2] * 1000, 2))
