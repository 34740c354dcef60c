"""taskq_sdk: a Jupyter-first job-queue SDK on top of arq and a Redis-compatible server.

Start a local server and workers, submit a job, follow it, get its result::

    from taskq_sdk import LocalCluster
    with LocalCluster(n_workers=1) as cluster:
        client = cluster.client()
        job = client.submit_video("https://example.com/clip.mp4")
        print(job.wait(progress=True))

Names are imported on first use, so ``import taskq_sdk`` stays fast and never imports pandas,
ipywidgets or video libraries.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .batch import AsyncBatch, Batch, BatchCounts
    from .client import AsyncClient, Client
    from .config import Settings
    from .errors import (
        BlockedDestination,
        BrokerUnavailable,
        ClientClosed,
        ConfigurationError,
        DeserializationError,
        DownloadFailed,
        DownloadTimeout,
        DownloadTooLarge,
        InvalidName,
        InvalidURL,
        JobCancelled,
        JobFailed,
        JobLost,
        JobNotFound,
        JobTimedOut,
        JobTimeout,
        NotAVideo,
        PayloadTooLarge,
        PermissionDenied,
        ResultExpired,
        SerializationError,
        ServerError,
        SubmitError,
        TaskqError,
        UnknownJob,
        UnsupportedScheme,
        VideoError,
        WaitTimeout,
    )
    from .execution import Retry, StopJob, current_job, report_progress
    from .handles import AsyncJob, Job
    from .local import LocalCluster
    from .models import JobInfo, JobStatus, Progress, WorkerInfo
    from .queue_service import TaskQueueService
    from .registry import job

_LAZY: dict[str, str] = {
    "AsyncBatch": "batch",
    "Batch": "batch",
    "BatchCounts": "batch",
    "AsyncClient": "client",
    "Client": "client",
    "Settings": "config",
    "Retry": "execution",
    "StopJob": "execution",
    "current_job": "execution",
    "report_progress": "execution",
    "AsyncJob": "handles",
    "Job": "handles",
    "LocalCluster": "local",
    "JobInfo": "models",
    "JobStatus": "models",
    "Progress": "models",
    "WorkerInfo": "models",
    "TaskQueueService": "queue_service",
    "job": "registry",
}
_ERRORS = (
    "BlockedDestination",
    "BrokerUnavailable",
    "ClientClosed",
    "ConfigurationError",
    "DeserializationError",
    "DownloadFailed",
    "DownloadTimeout",
    "DownloadTooLarge",
    "InvalidName",
    "InvalidURL",
    "JobCancelled",
    "JobFailed",
    "JobLost",
    "JobNotFound",
    "JobTimedOut",
    "JobTimeout",
    "NotAVideo",
    "PayloadTooLarge",
    "PermissionDenied",
    "ResultExpired",
    "SerializationError",
    "ServerError",
    "SubmitError",
    "TaskqError",
    "UnknownJob",
    "UnsupportedScheme",
    "VideoError",
    "WaitTimeout",
)
for _name in _ERRORS:
    _LAZY[_name] = "errors"

__all__ = [
    "AsyncBatch",
    "AsyncClient",
    "AsyncJob",
    "Batch",
    "BatchCounts",
    "BlockedDestination",
    "BrokerUnavailable",
    "Client",
    "ClientClosed",
    "ConfigurationError",
    "DeserializationError",
    "DownloadFailed",
    "DownloadTimeout",
    "DownloadTooLarge",
    "InvalidName",
    "InvalidURL",
    "Job",
    "JobCancelled",
    "JobFailed",
    "JobInfo",
    "JobLost",
    "JobNotFound",
    "JobStatus",
    "JobTimedOut",
    "JobTimeout",
    "LocalCluster",
    "NotAVideo",
    "PayloadTooLarge",
    "PermissionDenied",
    "Progress",
    "ResultExpired",
    "Retry",
    "SerializationError",
    "ServerError",
    "Settings",
    "StopJob",
    "SubmitError",
    "TaskQueueService",
    "TaskqError",
    "UnknownJob",
    "UnsupportedScheme",
    "VideoError",
    "WaitTimeout",
    "WorkerInfo",
    "__version__",
    "current_job",
    "job",
    "report_progress",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taskq_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
