"""Extension points of the worker engine: what runs beside jobs (results DB, schedules, ...).

An extension is started with the engine and stopped with it; it may add ``finish_listeners``
(called on the worker's loop, quickly, after each job's final write) or background tasks::

    class Printer:
        async def start(self, engine):
            engine.finish_listeners.append(lambda job: print(job.job_id, job.state))
        async def stop(self):
            pass
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .config import Settings
    from .serialization import RemoteError

__all__ = ["EngineExtension", "FinishedJob", "default_extensions"]


@dataclass(frozen=True)
class FinishedJob:
    """A job's final outcome as the worker recorded it (value or error, timing, attempt).

    Example::

        engine.finish_listeners.append(lambda j: print(j.function, j.state, j.duration))
    """

    job_id: str
    tenant: str
    workspace: str
    function: str
    state: str  # complete | failed | cancelled
    attempt: int
    started_ms: int
    finished_ms: int
    duration: float
    value: Any
    error: RemoteError | None
    worker_id: str


class EngineExtension(Protocol):
    """Something a worker engine starts and stops with itself."""

    async def start(self, engine: Any) -> None: ...

    async def stop(self) -> None: ...


def default_extensions(settings: Settings) -> list[EngineExtension]:
    """The extensions every taskq worker runs for ``settings``: results DB, webhooks, schedules.

    * :class:`~taskq_sdk.results_db.ResultsDBWriter` unless ``TASKQ_RESULTS_DB=off``;
    * :class:`~taskq_sdk.pipeline_integration.WebhookSender` (idle until a client registers a webhook);
    * :class:`~taskq_sdk.scheduler.Scheduler` (monitoring on ``TASKQ_MONITORING_CRON``, plus registered
      schedules) unless ``TASKQ_SCHEDULER=false``.

    Example::

        Engine(specs, settings=s, extensions=default_extensions(s))
    """
    from .pipeline_integration import WebhookSender
    from .results_db import ResultsDBWriter, results_url
    from .scheduler import Scheduler, builtin_schedules

    extensions: list[EngineExtension] = []
    if results_url(settings) is not None:
        extensions.append(ResultsDBWriter(settings))
    extensions.append(WebhookSender(settings))
    if settings.scheduler:
        extensions.append(Scheduler(builtin_schedules(settings)))
    return extensions
