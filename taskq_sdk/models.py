"""The typed things users look at: job statuses, progress, job info and worker info.

Everything here is taskq's own vocabulary; nothing leaks arq's types::

    info = client.job(job_id).info()
    info.status is JobStatus.complete, info.attempts, info.worker
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "HealthSnapshot",
    "JobCounts",
    "JobInfo",
    "JobStatus",
    "Progress",
    "QueueHealth",
    "StuckJob",
    "WorkerInfo",
    "ms_to_dt",
]


def ms_to_dt(ms: Any) -> datetime | None:
    """Epoch milliseconds (int, float or bytes) as an aware UTC datetime, ``None`` for empty.

    >>> ms_to_dt(0).isoformat()
    '1970-01-01T00:00:00+00:00'
    """
    if ms in (None, b"", ""):
        return None
    return datetime.fromtimestamp(float(ms) / 1000.0, tz=UTC)


class JobStatus(StrEnum):
    """Where a job is in its life.

    Example::

        job.status() is JobStatus.in_progress
        JobStatus.complete.finished   # True
    """

    #: waiting in the queue; its start time has come
    queued = "queued"
    #: waiting in the queue for a start time in the future (``_defer_by`` / ``_defer_until``)
    deferred = "deferred"
    #: waiting for the jobs it takes as arguments to finish (it is queued when they complete)
    waiting = "waiting"
    #: a worker is running it
    in_progress = "in_progress"
    #: an attempt failed with a transient error; the next attempt is scheduled
    retrying = "retrying"
    #: finished successfully; the result is available
    complete = "complete"
    #: finished with an error (see ``job.exception()``)
    failed = "failed"
    #: cancelled before it finished
    cancelled = "cancelled"
    #: it finished, but its result aged out; a small tombstone remains for TASKQ_TOMBSTONE_TTL
    expired = "expired"
    #: it vanished before finishing (e.g. a server restart without persistence)
    lost = "lost"
    #: no such job (or not visible to this client's tenant)
    not_found = "not_found"

    @property
    def finished(self) -> bool:
        """True for states a job never leaves: complete, failed, cancelled, expired, lost."""
        return self in _FINISHED

    def __str__(self) -> str:
        return self.value


_FINISHED = frozenset({JobStatus.complete, JobStatus.failed, JobStatus.cancelled, JobStatus.expired, JobStatus.lost})


class Progress(BaseModel):
    """The latest progress a job reported: a fraction in 0..1, optional counts, a message and when.

    Example::

        p = job.progress()
        print(f"{p.fraction:.0%} {p.message}")
    """

    model_config = ConfigDict(frozen=True)

    fraction: float | None = Field(None, ge=0.0, le=1.0)
    done: float | None = None
    total: float | None = None
    message: str | None = None
    updated_at: datetime | None = None

    def __str__(self) -> str:
        if self.fraction is None:
            return self.message or "no progress reported"
        counts = f" ({self.done:g}/{self.total:g})" if self.total else ""
        msg = f" {self.message}" if self.message else ""
        return f"{self.fraction:.0%}{counts}{msg}"


class JobInfo(BaseModel):
    """Everything known about a job without its result.

    Example::

        info = job.info()
        info.function, info.status, info.attempts, info.worker, info.enqueued_at
    """

    model_config = ConfigDict(frozen=True)

    id: str
    status: JobStatus
    function: str | None = None
    tenant: str = "default"
    workspace: str = "default"
    queue: str = "default"
    attempts: int = 0
    max_tries: int | None = None
    timeout: float | None = None
    enqueued_at: datetime | None = None
    scheduled_for: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    worker: str | None = None
    progress: Progress = Field(default_factory=Progress)
    error: str | None = None
    retry_of: str | None = None
    retried_by: str | None = None
    batch_id: str | None = None
    args_repr: str | None = None
    #: the jobs it takes as arguments (it waited for them; see :mod:`taskq_sdk.upstream`)
    parents: list[str] = Field(default_factory=list)
    #: the jobs that take it as an argument (the first ones, up to about 4,000 characters of ids)
    children: list[str] = Field(default_factory=list)
    #: why a job that a worker claimed went back to wait: "waiting for rate limit openai: 50/s"
    waiting: str | None = None

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish (or until now while running); None before it starts."""
        if self.started_at is None:
            return None
        end = self.finished_at or datetime.now(tz=UTC)
        return max(0.0, (end - self.started_at).total_seconds())


class WorkerInfo(BaseModel):
    """One worker process as it last reported itself (heartbeat every TASKQ_HEARTBEAT_INTERVAL).

    Example::

        for w in client.workers(): print(w.id, w.status, w.ongoing, w.complete)
    """

    model_config = ConfigDict(frozen=True)

    id: str
    host: str
    pid: int
    status: str
    queue: str = "default"
    max_jobs: int = 0
    ongoing: int = 0
    complete: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    started_at: datetime | None = None
    last_seen: datetime | None = None
    functions: list[str] = Field(default_factory=list)

    @property
    def uptime(self) -> float:
        """Seconds since the worker started."""
        if self.started_at is None:
            return 0.0
        end = self.last_seen or datetime.now(tz=UTC)
        return max(0.0, (end - self.started_at).total_seconds())

    def as_stats(self) -> dict[str, Any]:
        """The seed's ``get_worker_stats()`` dict shape."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "status": self.status,
            "queue": self.queue,
            "max_jobs": self.max_jobs,
            "jobs_ongoing": self.ongoing,
            "jobs_complete": self.complete,
            "jobs_failed": self.failed,
            "jobs_retried": self.retried,
            "jobs_cancelled": self.cancelled,
            "uptime": self.uptime,
            "last_seen": self.last_seen,
            "functions": list(self.functions),
        }


# ---------------------------------------------------------------------------- health (monitoring)
class QueueHealth(BaseModel):
    """One queue as monitoring saw it: jobs waiting or running, how many are due, the oldest wait.

    Example::

        [(q.name, q.depth, q.oldest_wait_s) for q in client.health().queues]
    """

    model_config = ConfigDict(frozen=True)

    name: str
    depth: int = 0
    due: int = 0
    deferred: int = 0
    oldest_wait_s: float | None = None
    live_workers: int = 0


class JobCounts(BaseModel):
    """Jobs counted over the monitoring window: enqueued, finished by outcome, retries, failure rate.

    Example::

        counts = client.health().jobs
        counts.complete, counts.failed, counts.failure_rate
    """

    model_config = ConfigDict(frozen=True)

    enqueued: int = 0
    complete: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    failure_rate: float = 0.0
    avg_seconds: float | None = None
    p95_seconds: float | None = None


class StuckJob(BaseModel):
    """A job still claimed by a worker past its own time limit (plus the claim TTL).

    Example::

        for s in client.health().stuck: print(s.id, s.function, s.running_s)
    """

    model_config = ConfigDict(frozen=True)

    id: str
    function: str | None = None
    tenant: str = "default"
    workspace: str = "default"
    worker: str | None = None
    running_s: float
    timeout_s: float


class HealthSnapshot(BaseModel):
    """The system's health at one moment: an overall status (ok / degraded / down), the reasons, and the figures.

    Written by the scheduled monitoring job (``source="scheduled"``) or computed on demand
    (``client.health(refresh=True)``, ``source="client"``).

    Example::

        h = client.health()
        h.status, h.reasons, h.ping_ms, h.live_workers, h.jobs.failure_rate
    """

    model_config = ConfigDict(frozen=True)

    status: Literal["ok", "degraded", "down"]
    reasons: list[str] = Field(default_factory=list)
    taken_at: datetime
    source: Literal["scheduled", "client"] = "client"
    job_id: str | None = None
    window_s: float = 300.0
    ping_ms: float | None = None
    server: dict[str, Any] = Field(default_factory=dict)
    queues: list[QueueHealth] = Field(default_factory=list)
    live_workers: int = 0
    workers: list[WorkerInfo] = Field(default_factory=list)
    jobs: JobCounts = Field(default_factory=JobCounts)
    jobs_by_tenant: dict[str, JobCounts] = Field(default_factory=dict)
    stuck: list[StuckJob] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the status is ``ok``."""
        return self.status == "ok"

    @property
    def age_s(self) -> float:
        """Seconds since the snapshot was taken."""
        return max(0.0, (datetime.now(tz=UTC) - self.taken_at).total_seconds())

    def __str__(self) -> str:
        why = "; ".join(self.reasons)
        return f"{self.status}{': ' + why if why else ''}"
