"""Extension points of the worker engine: what runs beside jobs (results DB, webhooks, schedules, ...).

An extension is started with the engine and stopped with it; it may add ``finish_listeners``
(called on the worker's loop, quickly, after each job's final write) or background tasks. The
engine's ``store`` reaches the server. :func:`taskq_sdk.worker.default_extensions` lists the ones
every worker runs::

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
    from .serialization import RemoteError

__all__ = ["EngineExtension", "FinishedJob"]


@dataclass(frozen=True)
class FinishedJob:
    """A job's final outcome as the worker recorded it (value or error, timing, attempt).

    Example::

        # not run: inside an extension's start(engine)
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
