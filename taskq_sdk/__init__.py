"""taskq_sdk: a Jupyter-first job-queue SDK on top of arq and a Redis-compatible server.

Start a local server and workers, submit a job, follow it, get its result::

    from taskq_sdk import LocalCluster
    with LocalCluster(n_workers=1) as cluster:
        client = cluster.client()
        job = client.submit_video("https://example.com/clip.mp4")
        print(job.wait(progress=True))

Names are imported on first use, so ``import taskq_sdk`` stays fast and never imports arq, redis,
pandas, ipywidgets or video libraries; ``df.taskq`` appears once pandas is imported (see
``taskq_sdk._pandas_hook``). The package's layers, bottom up (``tests/test_quality.py``
keeps them so):

* foundations: ``errors``, ``models``, ``config``, ``serialization``, ``registry`` and small helpers;
* ``_backend``: the only code that knows arq's envelopes and spells Redis keys and Lua scripts;
* the client: ``_core`` (what handles, batches and views need from a client), ``handles``,
  ``batch/``, ``client`` (``AsyncClient``, then its blocking facade ``Client``), ``pandas``,
  ``health``, ``metrics`` and ``views/`` (HTML, progress bars, widgets, dashboard);
* the worker: ``runtime`` (what a running job reaches), ``execution`` (the job wrapper),
  ``_backend.engine``, ``worker`` (assembles an engine with its extensions: results DB, webhooks,
  schedules) and the built-in ``jobs/``;
* local mode: ``local`` (``LocalCluster``), ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._error_names import ERROR_NAMES
from ._pandas_hook import install as _install_pandas_accessor
from ._version import __version__

_install_pandas_accessor()  # df.taskq works once pandas is imported, without importing it here

if TYPE_CHECKING:
    from .batch import AsyncBatch, Batch, BatchCounts
    from .client import AsyncClient, Client
    from .config import Settings
    from .errors import *  # noqa: F403  (every public error: errors.__all__)
    from .handles import AsyncJob, Job
    from .local import LocalCluster
    from .models import JobInfo, JobStatus, Progress, WorkerInfo
    from .queue_service import TaskQueueService
    from .registry import job
    from .runtime import Retry, StopJob, current_job, report_progress

_LAZY: dict[str, str] = {
    "AsyncBatch": "batch",
    "Batch": "batch",
    "BatchCounts": "batch",
    "AsyncClient": "client",
    "Client": "client",
    "Settings": "config",
    "Retry": "runtime",
    "StopJob": "runtime",
    "current_job": "runtime",
    "report_progress": "runtime",
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

__all__ = [
    "AsyncBatch",
    "AsyncClient",
    "AsyncJob",
    "Batch",
    "BatchCounts",
    "Client",
    "Job",
    "JobInfo",
    "JobStatus",
    "LocalCluster",
    "Progress",
    "Retry",
    "Settings",
    "StopJob",
    "TaskQueueService",
    "WorkerInfo",
    "__version__",
    "current_job",
    "job",
    "report_progress",
]
__all__ += ERROR_NAMES  # every public error, listed once: in taskq_sdk._error_names


def __getattr__(name: str) -> Any:
    module = "errors" if name in ERROR_NAMES else _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taskq_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
