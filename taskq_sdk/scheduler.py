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
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from ._aio import stop_tasks
from ._names import check_name
from .errors import ConfigurationError

if TYPE_CHECKING:
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

# the newest claimed slot of a schedule; a worker claims slot ARGV[1] only if it is newer
_CLAIM_LUA = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > last then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELD_RE = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")


def _parse_field(text: str, lo: int, hi: int, names: dict[str, int], what: str, expr: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        m = _FIELD_RE.match(part)
        if not m:
            raise ConfigurationError(f"cron expression {expr!r}: cannot read the {what} field {text!r}")
        base, step_text = m.group(1), m.group(2)
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ConfigurationError(f"cron expression {expr!r}: the step in {part!r} must be at least 1")

        def value(token: str) -> int:
            if token in names:
                return names[token]
            if not token.isdigit():
                raise ConfigurationError(f"cron expression {expr!r}: {token!r} is not a valid {what}")
            return int(token)

        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = value(a), value(b)
        else:
            start = value(base)
            end = hi if step_text else start
        if what == "day of week" and end == 7:
            end = 7  # 7 is Sunday too; folded below
        top = 7 if what == "day of week" else hi
        if not (lo <= start <= top and lo <= end <= top and start <= end):
            raise ConfigurationError(f"cron expression {expr!r}: {part!r} is out of range for the {what} ({lo}-{hi})")
        values.update(range(start, end + 1, step))
    if what == "day of week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


class CronSchedule:
    """A parsed cron expression (UTC) that can say when it fires next.

    Example::

        cron = CronSchedule("*/5 * * * *")
        cron.next_after(datetime(2026, 1, 1, 12, 3, tzinfo=UTC))   # 12:05:00 UTC
    """

    def __init__(self, expr: str) -> None:
        if not isinstance(expr, str) or not expr.strip():
            raise ConfigurationError("a cron expression is a non-empty string like '*/5 * * * *'")
        self.expr = expr.strip()
        text = _MACROS.get(self.expr.lower(), self.expr)
        fields = text.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        elif len(fields) != 6:
            raise ConfigurationError(
                f"cron expression {expr!r} has {len(fields)} fields: use five (minute hour day month weekday) "
                "or six with seconds first, e.g. '*/5 * * * *' or '*/10 * * * * *'"
            )
        sec, minute, hour, dom, month, dow = fields
        self.seconds = _parse_field(sec, 0, 59, {}, "second", expr)
        self.minutes = _parse_field(minute, 0, 59, {}, "minute", expr)
        self.hours = _parse_field(hour, 0, 23, {}, "hour", expr)
        self.days = _parse_field(dom, 1, 31, {}, "day of month", expr)
        self.months = _parse_field(month, 1, 12, _MONTHS, "month", expr)
        self.weekdays = _parse_field(dow, 0, 6, _DAYS, "day of week", expr)
        self._dom_any = dom == "*"
        self._dow_any = dow == "*"
        self.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # raises if it never fires

    def __repr__(self) -> str:
        return f"CronSchedule({self.expr!r})"

    def _day_matches(self, t: datetime) -> bool:
        dom_ok = t.day in self.days
        dow_ok = (t.isoweekday() % 7) in self.weekdays
        if self._dom_any or self._dow_any:
            return dom_ok and dow_ok
        return dom_ok or dow_ok  # cron: either restricted day field may match

    def next_after(self, t: datetime) -> datetime:
        """The first firing time strictly after ``t`` (an aware datetime; naive ones are taken as UTC)."""
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        t = t.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
                continue
            if not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            if t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0)
                continue
            if t.minute not in self.minutes:
                t = (t + timedelta(minutes=1)).replace(second=0)
                continue
            if t.second not in self.seconds:
                t = t + timedelta(seconds=1)
                continue
            return t
        raise ConfigurationError(f"cron expression {self.expr!r} never fires (check the day and month fields)")

    def period_s(self, at: datetime | None = None) -> float:
        """Seconds between the next two firings after ``at`` (now by default): the typical interval."""
        first = self.next_after(at or datetime.now(tz=UTC))
        return (self.next_after(first) - first).total_seconds()


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

        Engine(specs, settings=s, extensions=[Scheduler(builtin_schedules(s) + registered_schedules())])
    """

    def __init__(self, schedules: list[Schedule] | None = None, *, include_registered: bool = True) -> None:
        self._fixed = list(schedules or [])
        self._include_registered = include_registered
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._claim: Any = None
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
        from .client import AsyncClient

        # an unbound client: schedules name their own tenant (default: the default tenant)
        self._client = AsyncClient(settings=engine.settings.model_copy(update={"tenant": None, "workspace": None}))
        self._worker_id = str(getattr(engine, "worker_id", "?"))
        self._task = asyncio.create_task(self._run(schedules), name="taskq-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
        if self._client is not None:
            await self._client.close()
            self._client = None

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
        client = self._client
        assert client is not None
        slot_ms = int(slot.timestamp() * 1000)
        redis = client._open().redis
        if self._claim is None:
            self._claim = redis.register_script(_CLAIM_LUA)
        if self._won.get(schedule.name) != slot_ms:  # (a retry after a failed submit keeps its claim)
            won = await self._claim(keys=[f"taskq:sched:{schedule.name}"], args=[slot_ms, CLAIM_TTL_MS])
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
        handle = await client.submit(schedule.function, **schedule.kwargs, **options)
        if handle.created:
            self.submitted.append(handle.id)
            logger.info(
                "scheduler: submitted %s for slot %s as %s (%.1f ms)",
                schedule.name,
                f"{slot:%Y-%m-%dT%H:%M:%SZ}",
                handle.id,
                (time.perf_counter() - started) * 1000,
            )
