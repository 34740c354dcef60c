"""Cron schedules run by the workers themselves: every worker may submit a due job; each slot runs once.

Every taskq worker starts a :class:`Scheduler` (an engine extension). When a schedule's slot is
due, each worker tries to claim it with one atomic compare-and-set on
``taskq:sched:<name>`` (the newest claimed slot, kept 7 days); the winner submits the job with a
deterministic id ``<name>-<slot>`` (e.g. ``monitoring-20260101T120500Z``). Twenty workers thus
produce one job per slot, and the deterministic id makes a repeated submit of the same slot
return the existing job even if the claim key were lost. A slot is tried for a short grace
period after it is due (up to a minute); slots missed while no worker ran are not back-filled.
If the claiming worker dies between claim and submit, that slot is skipped. Schedules are in
UTC, and the workers' clocks are assumed to be synchronised (NTP).

The built-in schedule runs ``scheduled_monitoring_async`` on ``TASKQ_MONITORING_CRON`` (default
``*/5 * * * *``; ``off`` disables it). Add your own in a module the worker imports::

    from taskq_sdk.scheduler import scheduled

    @scheduled("0 3 * * *")               # daily at 03:00 UTC
    @taskq_sdk.job
    async def nightly_report(ctx): ...

Cron syntax: five fields ``minute hour day-of-month month day-of-week`` (``*``, lists ``1,15``,
ranges ``1-5``, steps ``*/10`` or ``0-30/5``, month and day names ``jan``/``mon``; Sunday is 0 or
7; like cron, when both day fields are restricted either may match), or six fields with
*seconds first* (``*/10 * * * * *`` = every ten seconds), or ``@hourly``, ``@daily``,
``@weekly``, ``@monthly``, ``@yearly``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ._aio import stop_tasks
from ._names import check_name
from .cron import CronSchedule
from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._core import ClientCore
    from .config import Settings

__all__ = [
    "MONITORING_SCHEDULE",
    "CronSchedule",
    "Schedule",
    "Scheduler",
    "builtin_schedules",
    "register_schedule",
    "registered_schedules",
    "scheduled",
    "unregister_schedule",
]

logger = logging.getLogger("taskq_sdk.scheduler")

F = TypeVar("F", bound=Callable[..., Any])

MONITORING_SCHEDULE = "monitoring"
#: the workspace scheduled system jobs are submitted to (kept apart from users' workspaces)
SYSTEM_WORKSPACE = "taskq-system"
#: how long after its time a slot may still be submitted (capped by half the schedule's period)
MAX_GRACE_S = 60.0
#: claim keys live this long after their last slot
CLAIM_TTL_MS = 7 * 86_400_000


@dataclass(frozen=True)
class Schedule:
    """A job submitted on a cron schedule: its name, cron expression, function, arguments and options.

    Example::

        Schedule("nightly", "0 3 * * *", "nightly_report", kwargs={"full": True}, timeout=600)
    """

    name: str
    cron: str
    function: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    tenant: str | None = None
    workspace: str | None = None
    timeout: float | None = None
    retries: int | None = 1

    def __post_init__(self) -> None:
        check_name(self.name, "schedule name")
        CronSchedule(self.cron)  # validate early

    def job_id(self, slot: datetime) -> str:
        """The deterministic job id of one slot, e.g. ``monitoring-20260101T120500Z``."""
        return f"{self.name}-{slot.astimezone(UTC):%Y%m%dT%H%M%SZ}"


_SCHEDULES: dict[str, Schedule] = {}
_LOCK = threading.Lock()


def register_schedule(schedule: Schedule, *, replace: bool = False) -> Schedule:
    """Add a schedule that every worker of this process will run (call it from a module the worker imports).

    Example::

        register_schedule(Schedule("hourly-sync", "0 * * * *", "sync_catalog"))
    """
    with _LOCK:
        other = _SCHEDULES.get(schedule.name)
        if other is not None and other != schedule and not replace:
            raise ConfigurationError(f"a different schedule is already registered as {schedule.name!r}")
        _SCHEDULES[schedule.name] = schedule
    return schedule


def unregister_schedule(name: str) -> bool:
    """Remove a registered schedule (workers started afterwards no longer run it); True if it existed.

    Example::

        unregister_schedule("hourly-sync")
    """
    with _LOCK:
        return _SCHEDULES.pop(name, None) is not None


def registered_schedules() -> list[Schedule]:
    """The schedules registered with :func:`register_schedule` / :func:`scheduled` in this process."""
    with _LOCK:
        return list(_SCHEDULES.values())


def scheduled(cron: str, *, name: str | None = None, **options: Any) -> Callable[[F], F]:
    """Run a ``@job`` function on a cron schedule; ``options`` are :class:`Schedule` fields (``kwargs=``, ...).

    Example::

        @scheduled("*/15 * * * *", kwargs={"source": "feed"})
        @taskq_sdk.job
        def refresh(source: str) -> int: ...
    """

    def mark(fn: F) -> F:
        from .registry import spec_for

        spec = spec_for(fn)
        sched_name = name or spec.name.lower().replace("_", "-")
        register_schedule(Schedule(name=sched_name, cron=cron, function=spec.name, **options))
        return fn

    return mark


def builtin_schedules(settings: Settings) -> list[Schedule]:
    """The built-in schedules for ``settings``: monitoring on ``TASKQ_MONITORING_CRON`` unless it is ``off``.

    Example::

        [s.cron for s in builtin_schedules(Settings())]   # ['*/5 * * * *']
    """
    cron = (settings.monitoring_cron or "").strip()
    if cron.lower() in ("", "off", "none", "false", "0", "disabled"):
        return []
    period = CronSchedule(cron).period_s()
    return [
        Schedule(
            name=MONITORING_SCHEDULE,
            cron=cron,
            function="scheduled_monitoring_async",
            workspace=SYSTEM_WORKSPACE,
            timeout=max(10.0, min(120.0, period)),
            retries=1,
        )
    ]


class _Due:
    def __init__(self, schedule: Schedule, now: datetime) -> None:
        self.schedule = schedule
        self.cron = CronSchedule(schedule.cron)
        self.grace = min(MAX_GRACE_S, max(2.0, self.cron.period_s(now) / 2))
        # a worker starting just after a slot still considers it (the claim makes that harmless)
        self.next = self.cron.next_after(now - timedelta(seconds=self.grace))


class Scheduler:
    """The engine extension that submits due scheduled jobs (see the module docstring).

    Example::

        # not run: worker internals, how python -m taskq_sdk.worker assembles its engine
        Engine(specs, settings=s, extensions=[Scheduler(builtin_schedules(s) + registered_schedules())])
    """

    def __init__(self, schedules: list[Schedule] | None = None, *, include_registered: bool = True) -> None:
        self._fixed = list(schedules or [])
        self._include_registered = include_registered
        self._task: asyncio.Task[None] | None = None
        self._core: ClientCore | None = None
        self.submitted: list[str] = []  # job ids this worker created (for tests and logs)
        self._won: dict[str, int] = {}  # the slot (epoch ms) this worker last claimed, per schedule

    def schedules(self) -> list[Schedule]:
        """The schedules this scheduler runs (fixed ones, then those registered in the process)."""
        out = {s.name: s for s in self._fixed}
        if self._include_registered:
            for s in registered_schedules():
                out.setdefault(s.name, s)
        return list(out.values())

    async def start(self, engine: Any) -> None:
        schedules = self.schedules()
        if not schedules:
            return
        from ._core import ClientCore

        # an unbound client core: schedules name their own tenant (default: the default tenant)
        unbound = engine.settings.model_copy(update={"tenant": None, "workspace": None})
        self._core = ClientCore(unbound, tenant=None, workspace=None, queue=None)
        self._worker_id = str(getattr(engine, "worker_id", "?"))
        self._task = asyncio.create_task(self._run(schedules), name="taskq-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        if self._core is not None:
            await self._core.close()
            self._core = None

    async def _run(self, schedules: list[Schedule]) -> None:
        now = datetime.now(tz=UTC)
        due = [_Due(s, now) for s in schedules]
        logger.info("scheduler: %s", ", ".join(f"{d.schedule.name} ({d.schedule.cron})" for d in due))
        while True:
            now = datetime.now(tz=UTC)
            for d in due:
                while d.next <= now:
                    slot = d.next
                    late = (now - slot).total_seconds()
                    if late <= d.grace:
                        try:
                            await self._fire(d.schedule, slot)
                        except asyncio.CancelledError:
                            raise
                        except Exception as exc:
                            if "NOPERM" in str(exc) or type(exc).__name__ in ("NoPermissionError", "PermissionDenied"):
                                logger.error(
                                    "scheduler: this worker's server user may not claim schedules (%s); schedules "
                                    "are off on this worker - run them on an operator's worker (TASKQ_SCHEDULER)",
                                    exc,
                                )
                                return
                            if (datetime.now(tz=UTC) - slot).total_seconds() < d.grace:
                                logger.warning(
                                    "scheduler: submitting %s for %s failed (%s); retrying", d.schedule.name, slot, exc
                                )
                                break  # try this slot again on the next tick
                            logger.error("scheduler: gave up on %s slot %s: %s", d.schedule.name, slot, exc)
                    d.next = d.cron.next_after(slot)
            wake = min(d.next for d in due)
            delay = (wake - datetime.now(tz=UTC)).total_seconds()
            await asyncio.sleep(min(1.0, max(0.05, delay)))

    async def _fire(self, schedule: Schedule, slot: datetime) -> None:
        core = self._core
        assert core is not None
        slot_ms = int(slot.timestamp() * 1000)
        if self._won.get(schedule.name) != slot_ms:  # (a retry after a failed submit keeps its claim)
            won = await core.call(lambda s: s.schedules.claim(schedule.name, slot_ms, ttl_ms=CLAIM_TTL_MS))
            if not won:
                return
            self._won[schedule.name] = slot_ms
        options: dict[str, Any] = {"_job_id": schedule.job_id(slot)}
        if schedule.queue:
            options["_queue"] = schedule.queue
        if schedule.timeout:
            options["_timeout"] = schedule.timeout
        if schedule.retries:
            options["_retries"] = schedule.retries
        period = CronSchedule(schedule.cron).period_s(slot)
        options["_expires"] = max(5.0, period)  # a slot not started before the next one is dropped
        if schedule.tenant:
            options["tenant"] = schedule.tenant
        if schedule.workspace:
            options["workspace"] = schedule.workspace
        started = time.perf_counter()
        row = core.prepare(schedule.function, (), {**schedule.kwargs, **options})
        await core.check_known(row.function, row.queue)
        if await core.write(row):
            self.submitted.append(row.job_id)
            logger.info(
                "scheduler: submitted %s for slot %s as %s (%.1f ms)",
                schedule.name,
                f"{slot:%Y-%m-%dT%H:%M:%SZ}",
                row.job_id,
                (time.perf_counter() - started) * 1000,
            )
