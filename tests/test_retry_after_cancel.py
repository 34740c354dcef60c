"""``retry`` right after ``cancel`` of a RUNNING job works (real server, real worker process).

The cancel is a request: the worker stops the job moments later. ``TaskQueueService.retry`` and
``job.retry()`` wait (on the job's events, a few seconds at most) for that, then retry; a job still
running without a cancel request keeps the clear "still in_progress" error.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from taskq_sdk import Client, Job, JobStatus
from taskq_sdk import _core as core_module
from taskq_sdk.config import Settings
from taskq_sdk.errors import TaskqError
from taskq_sdk.local import WorkerProcess

from .conftest import wait_until


def _running_sleeper(client: Client) -> Job:
    job = client.submit("sleeper", 60.0)
    wait_until(lambda: job.status() is JobStatus.in_progress, timeout=30, what="the job running")
    return job


def test_the_seed_calls_in_order_cancel_then_retry_a_running_job(
    settings: Settings, start_worker_process: Callable[..., WorkerProcess], monkeypatch: Any
) -> None:
    start_worker_process()
    monkeypatch.setenv("REDIS_URL", settings.url())

    async def seed() -> tuple[bool, str, str, dict[str, Any], dict[str, Any]]:
        from taskq_sdk.queue_service import TaskQueueService

        queue = TaskQueueService()
        await queue.initialize()
        try:
            job_id = await queue.enqueue("sleeper", 60.0)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            async with queue.client._core.job_events(job_id) as sub:  # started: the job is running
                while (await queue.get_status(job_id))["status"] != "in_progress" and loop.time() < deadline:
                    await sub.get(timeout=1.0)
            success = await queue.cancel(job_id)
            new_job_id = await queue.retry(job_id)
            old, new = await queue.get_status(job_id), await queue.get_status(new_job_id)
            await queue.cancel(new_job_id)
            return success, job_id, new_job_id, old, new
        finally:
            await queue.close()

    success, job_id, new_job_id, old, new = asyncio.run(seed())
    assert success is True
    assert new_job_id != job_id
    assert old["status"] == "cancelled"
    assert new["info"]["retry_of"] == job_id
    assert new["status"] in ("queued", "in_progress")


def test_job_retry_after_cancel_on_the_sync_client(
    settings: Settings, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    start_worker_process()
    with Client(settings=settings) as client:
        job = _running_sleeper(client)
        assert job.cancel() is True
        again = job.retry()
        assert job.status() is JobStatus.cancelled
        assert again.info().retry_of == job.id
        assert again.cancel() is True


def test_a_running_job_without_a_cancel_request_keeps_the_clear_error(
    settings: Settings, start_worker_process: Callable[..., WorkerProcess]
) -> None:
    start_worker_process()
    with Client(settings=settings) as client:
        job = _running_sleeper(client)
        with pytest.raises(TaskqError, match="is still in_progress; wait for it or cancel it before retrying"):
            job.retry()
        assert job.status() is JobStatus.in_progress, "refusing the retry left the job alone"
        assert job.cancel() is True


def test_a_job_its_worker_cannot_stop_is_not_waited_for_forever(
    settings: Settings, start_worker_process: Callable[..., WorkerProcess], monkeypatch: Any
) -> None:
    """The worker is frozen (SIGSTOP) when the cancel comes: retry waits its bound, then says why."""
    monkeypatch.setattr(core_module, "RETRY_AFTER_CANCEL_WAIT_S", 0.5)
    worker = start_worker_process()
    with Client(settings=settings) as client:
        job = _running_sleeper(client)
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            assert job.cancel() is True
            with pytest.raises(TaskqError, match="its cancel was requested, but its worker has not stopped it"):
                job.retry()
            assert job.status() is JobStatus.in_progress
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        wait_until(lambda: job.status() is JobStatus.cancelled, timeout=30, what="the woken worker stopping the job")
        again = job.retry()
        assert again.info().retry_of == job.id
        assert again.cancel() is True
