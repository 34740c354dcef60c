"""``TaskQueueService``: the seed's high-level API (enqueue, get_status, cancel, retry), verbatim.

It is a thin, unbound view over :class:`~taskq_sdk.AsyncClient` for operators and services::

    from taskq_sdk.queue_service import TaskQueueService

    queue = TaskQueueService()
    await queue.initialize()
    job_id = await queue.enqueue(
        "process_video_async",
        video_url="https://example.com/clip.mp4",
        tenant="my_tenant",
        workspace="my_workspace",
    )
    status = await queue.get_status(job_id)
    print(f"Job {job_id}: {status['status']}")
    success = await queue.cancel(job_id)
    new_job_id = await queue.retry(job_id)   # waits (up to 5 s) for a cancelled running job to stop first

A job can take another job's result as an argument: it waits (status ``waiting``) until that job
completes, and fails with ``UpstreamFailed`` if it does not; identical calls of a cached function
(``@job(cache=True)`` or ``_cache=True``) return the id of the job that computed them::

    queue = TaskQueueService()
    await queue.initialize()
    first_id = await queue.enqueue("double", 21)                       # e.g. loading the data
    then_id = await queue.enqueue("add", await queue.result_of(first_id), 1)   # waits, then runs add(42, 1)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .client import AsyncClient
from .config import Settings
from .errors import ClientClosed, JobNotFound
from .handles import AsyncJob

__all__ = ["TaskQueueService"]


class TaskQueueService:
    """The seed's task-queue service: job ids in, dicts out (see the module docstring).

    Example::

        queue = TaskQueueService("redis://localhost:6379/0")
        await queue.initialize()
        job_id = await queue.enqueue("batch_analysis_async", content_items=["I love it"], tenant="t", workspace="w")
    """

    def __init__(self, redis_url: str | Any | None = None, *, settings: Settings | None = None, **overrides: Any):
        self._client = AsyncClient(redis_url, settings=settings, **overrides)
        self._initialized = False

    @property
    def client(self) -> AsyncClient:
        """The :class:`AsyncClient` underneath (for handles, progress and listings)."""
        return self._client

    async def initialize(self) -> TaskQueueService:
        """Connect to the server (raises :class:`~taskq_sdk.BrokerUnavailable` if it cannot)."""
        await self._client.connect()
        self._initialized = True
        return self

    async def close(self) -> None:
        """Close the connection (jobs are not affected)."""
        await self._client.close()

    async def __aenter__(self) -> TaskQueueService:
        return await self.initialize()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check(self) -> None:
        if not self._initialized and not self._client.is_closed:
            return  # lazily connects on first use, like the client
        if self._client.is_closed:
            raise ClientClosed("this TaskQueueService was closed; create a new one")

    async def enqueue(self, function_name: str, *args: Any, **kwargs: Any) -> str:
        """Enqueue ``function_name(*args, **kwargs)``; returns the job id (SDK options as in ``submit``)."""
        self._check()
        job = await self._client.submit(function_name, *args, **kwargs)
        return job.id

    async def result_of(self, job_id: str) -> AsyncJob:
        """Job ``job_id``'s result as an argument of :meth:`enqueue`: the new job waits for it (unknown: JobNotFound).

        Example::

            queue = TaskQueueService()
            await queue.initialize()
            then_id = await queue.enqueue("add", await queue.result_of(job_id), 1)
        """
        self._check()
        return await self._client.job(job_id)

    async def get_status(self, job_id: str) -> dict[str, Any]:
        """A dict with ``job_id``, ``status``, ``result`` (when complete), ``error``, ``progress`` and ``info``.

        ``status`` is one of queued, deferred, waiting, in_progress, retrying, complete, failed, cancelled,
        expired, lost, not_found; ``info["parents"]`` / ``info["children"]`` name the jobs it waits on and
        those waiting on it.
        """
        self._check()
        try:
            job = await self._client.job(job_id)
        except JobNotFound:
            return {
                "job_id": job_id,
                "status": "not_found",
                "result": None,
                "error": None,
                "progress": None,
                "info": None,
            }
        info = await job.info()
        result: Any = None
        error: str | None = info.error
        if info.status.finished:
            exc = await job.exception(timeout=0)
            if exc is None:
                result = await job.result(timeout=0)
            else:
                error = str(exc)
        return {
            "job_id": job.id,
            "status": info.status.value,
            "result": result,
            "error": error,
            "progress": info.progress.fraction,
            "message": info.progress.message,
            "attempts": info.attempts,
            "info": info.model_dump(mode="json"),
        }

    async def cancel(self, job_id: str) -> bool:
        """Cancel a queued or running job; False if it finished already or does not exist."""
        self._check()
        try:
            job = await self._client.job(job_id)
        except JobNotFound:
            return False
        return await job.cancel()

    async def retry(self, job_id: str) -> str:
        """Submit a finished job again; returns the new job's id (linked to the old one).

        Right after :meth:`cancel` of a running job it waits (a few seconds at most) for the worker
        to stop the job, then retries it; a job still running without a cancel request is an error.
        """
        self._check()
        job = await self._client.job(job_id)
        new = await job.retry()
        return new.id

    async def stream(self, job_id: str) -> AsyncIterator[Any]:
        """The items a streaming job yields, as it yields them; raises the job's error after them
        (see :mod:`taskq_sdk.streaming`). The video job streams its thumbnails and segment stats.

        Example::

            queue = TaskQueueService()
            await queue.initialize()
            job_id = await queue.enqueue("count_up", 3)    # the video job streams dicts with "kind", "index"
            async for item in queue.stream(job_id):
                print(item)
        """
        self._check()
        job = await self._client.job(job_id)
        async for item in job.stream():
            yield item

    async def wait(self, job_id: str, timeout: float | None = None) -> Any:
        """Wait for a job's result (raises its error)."""
        job = await self._client.job(job_id)
        return await job.result(timeout)
