"""System health: measure a snapshot of server, queues, workers and jobs, judge it, keep a short history.

The built-in monitoring job (:mod:`taskq_sdk.jobs.monitoring`, on ``TASKQ_MONITORING_CRON``) calls
:func:`collect_health` and :func:`store_snapshot`; ``client.health()`` (:func:`client_health`) reads
the latest snapshot and re-checks liveness now. A snapshot holds:

* server ping latency, memory (``INFO``: used, peak, ``maxmemory`` and policy), version, uptime;
* per queue: depth, due and deferred jobs, the oldest due job's wait, live workers serving it;
* live workers and their counters (from their heartbeats);
* job counts and failure rate over the window (the per-minute counters the Lua scripts keep);
* jobs still claimed past their own time limit plus the claim TTL ("stuck").

A client bound to a tenant gets that tenant's view, measured on its own keys only (so a per-tenant
ACL user can ask too): its own jobs in the queues, its own counts and stuck jobs, the shared
workers and server; the reasons never name another tenant's jobs or failures. An unbound client
sees everything.

Status rules: ``down`` when no live worker is seen (or the server cannot be reached);
``degraded`` for a failure rate over 20 % (at least 5 finished jobs), stuck jobs, a queue with due
jobs and no live worker, a due job waiting over 5 minutes, ping over 250 ms, memory over 90 % of
``maxmemory``, or a snapshot older than two schedule periods; else ``ok``::

    h = client.health()
    h.status, h.reasons        # 'degraded', ['failure rate 40% over the last 300 s (12 of 30 jobs)']
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .config import Settings
from .cron import CronSchedule
from .errors import BrokerUnavailable, ConfigurationError
from .metrics import MetricRow, aggregate
from .models import HealthSnapshot, JobCounts, QueueHealth, StuckJob, WorkerInfo

if TYPE_CHECKING:
    from ._backend.health_io import ClaimedJob, QueueRow
    from ._backend.store import Store
    from ._core import ClientCore

__all__ = [
    "client_health",
    "collect_health",
    "evaluate",
    "for_tenant",
    "health_history",
    "live_seconds",
    "read_history",
    "store_snapshot",
    "window_for",
]

FAILURE_RATE_DEGRADED = 0.2
FAILURE_RATE_MIN_JOBS = 5
PING_DEGRADED_MS = 250.0
MEMORY_DEGRADED = 0.9
QUEUE_WAIT_DEGRADED_S = 300.0
MAX_WORKERS_LISTED = 100
MAX_STUCK_LISTED = 50
MAX_IN_PROGRESS_SCANNED = 10_000
LIVE_STATUSES = ("running", "draining")

TimeoutFor = Callable[[str], float | None]


def live_seconds(settings: Settings) -> float:
    """How recent a worker's heartbeat must be for it to count as live."""
    return max(10.0, 3 * settings.heartbeat_interval + 5.0)


def window_for(settings: Settings) -> float:
    """The monitoring window in seconds: the schedule's period (1 minute to 2 hours; 5 minutes if off)."""
    cron = (settings.monitoring_cron or "").strip()
    try:
        period = CronSchedule(cron).period_s()
    except Exception:
        period = 300.0
    return max(60.0, min(7200.0, period))


def _counts(row: MetricRow) -> JobCounts:
    return JobCounts(
        enqueued=row.enqueued,
        complete=row.complete,
        failed=row.failed,
        cancelled=row.cancelled,
        retried=row.retried,
        failure_rate=round(row.failure_rate, 4),
        avg_seconds=row.avg_seconds,
        p95_seconds=row.p95_seconds,
    )


def _queue_health(rows: list[QueueRow], live: list[WorkerInfo]) -> list[QueueHealth]:
    return [
        QueueHealth(
            name=row.name,
            depth=row.depth,
            due=row.due,
            deferred=max(0, row.depth - row.due),
            oldest_wait_s=row.oldest_wait_s,
            live_workers=sum(1 for w in live if w.queue == row.name),
        )
        for row in rows
    ]


async def _queues(store: Store, live: list[WorkerInfo], now_ms: int) -> list[QueueHealth]:
    names = set(await store.metrics.queues()) | {w.queue for w in live}
    return _queue_health(await store.health.queue_rows(names, now_ms), live)


def _stuck(claimed: list[ClaimedJob], settings: Settings, timeout_for: TimeoutFor, now_ms: int) -> list[StuckJob]:
    out: list[StuckJob] = []
    for job in claimed:
        if job.started_ms is None:
            continue  # no taskq metadata (a plain arq job): its limit is unknown here
        limit = job.timeout or (timeout_for(job.function) if job.function else None) or settings.job_timeout
        running = (now_ms - job.started_ms) / 1000.0
        if running > limit + settings.claim_ttl:
            out.append(
                StuckJob(
                    id=job.id,
                    function=job.function,
                    tenant=job.tenant,
                    workspace=job.workspace,
                    worker=job.worker,
                    running_s=round(running, 3),
                    timeout_s=float(limit),
                )
            )
    out.sort(key=lambda s: -s.running_s)
    return out


async def _tenant_queues(
    store: Store, tenant: str, names: set[str], live: list[WorkerInfo], now_ms: int
) -> tuple[list[QueueHealth], list[ClaimedJob]]:
    rows, claimed = await store.health.tenant_queue_rows(names, tenant, now_ms, MAX_IN_PROGRESS_SCANNED)
    return _queue_health(rows, live), await store.health.claimed_meta(claimed)


async def _job_counts(
    store: Store, window_s: float, now: float, tenant: str | None = None
) -> tuple[JobCounts, dict[str, JobCounts]]:
    tenants = [tenant] if tenant is not None else await store.metrics.tenants()
    minutes = range(int((now - window_s) // 60), int(now // 60) + 1)
    hashes = await store.metrics.hashes(tenants, minutes)
    _rows, total = aggregate(hashes)
    by_tenant: dict[str, JobCounts] = {}
    for tenant in tenants:
        mine = [(t, h) for t, h in hashes if t == tenant]
        if mine:
            by_tenant[tenant] = _counts(aggregate(mine)[1])
    return _counts(total), by_tenant


def evaluate(snapshot: HealthSnapshot, *, period_s: float | None = None) -> tuple[str, list[str]]:
    """Judge a snapshot: ``('ok' | 'degraded' | 'down', reasons)`` by the rules in the module docstring.

    ``period_s`` (the schedule's period) also checks that the snapshot is fresh.

    Example::

        status, reasons = evaluate(client.health())
    """
    down: list[str] = []
    degraded: list[str] = []
    if snapshot.live_workers == 0:
        waiting = sum(q.due for q in snapshot.queues)
        down.append(
            "no live worker (no heartbeat recently)"
            + (f"; {waiting} due job(s) are waiting" if waiting else "")
            + ": start one with `python -m taskq_sdk.worker` or LocalCluster()"
        )
    else:
        for q in snapshot.queues:
            if q.due and not q.live_workers:
                degraded.append(f"queue {q.name!r} has {q.due} due job(s) and no live worker serves it")
    for q in snapshot.queues:
        if q.oldest_wait_s is not None and q.oldest_wait_s > QUEUE_WAIT_DEGRADED_S and q.live_workers:
            degraded.append(f"queue {q.name!r}: the oldest due job has waited {q.oldest_wait_s:.0f} s")
    jobs = snapshot.jobs
    finished = jobs.complete + jobs.failed
    if finished >= FAILURE_RATE_MIN_JOBS and jobs.failure_rate > FAILURE_RATE_DEGRADED:
        degraded.append(
            f"failure rate {jobs.failure_rate:.0%} over the last {snapshot.window_s:.0f} s "
            f"({jobs.failed} of {finished} jobs)"
        )
    if snapshot.stuck:
        first = snapshot.stuck[0]
        degraded.append(
            f"{len(snapshot.stuck)} job(s) running past their time limit, e.g. {first.id} "
            f"({first.function}, {first.running_s:.0f} s, limit {first.timeout_s:g} s)"
        )
    if snapshot.ping_ms is not None and snapshot.ping_ms > PING_DEGRADED_MS:
        degraded.append(f"server ping {snapshot.ping_ms:.0f} ms (over {PING_DEGRADED_MS:.0f} ms)")
    fraction = snapshot.server.get("memory_fraction")
    if isinstance(fraction, int | float) and fraction > MEMORY_DEGRADED:
        degraded.append(f"server memory at {fraction:.0%} of maxmemory")
    if period_s is not None and snapshot.source == "scheduled":
        limit = 2 * period_s + 30
        if snapshot.age_s > limit:
            degraded.append(
                f"the last monitoring snapshot is {snapshot.age_s:.0f} s old (expected every {period_s:.0f} s): "
                "is any worker's scheduler running? (TASKQ_SCHEDULER, TASKQ_MONITORING_CRON)"
            )
    if down:
        return "down", down + degraded
    if degraded:
        return "degraded", degraded
    return "ok", []


async def collect_health(
    store: Store,
    settings: Settings,
    *,
    source: str = "client",
    job_id: str | None = None,
    timeout_for: TimeoutFor | None = None,
    tenant: str | None = None,
    queues: Iterable[str] = (),
) -> HealthSnapshot:
    """Measure everything a snapshot holds, now, and judge it (see :func:`evaluate`).

    ``tenant`` measures one tenant's view: its own jobs in ``queues`` and the queues live workers
    serve, its own counts and stuck jobs, reading no other tenant's keys (so a per-tenant ACL user
    can call it); without it, everything.

    Example::

        # not run: internal, a step of client.health() and the monitoring job
        snap = await collect_health(store, settings)
        snap.status, snap.queues
    """
    now = time.time()
    now_ms = int(now * 1000)
    window_s = window_for(settings)
    ping = await store.health.ping_ms()
    server = await store.health.server_info()
    workers = await store.workers(include_stopped=False)
    cutoff = now - live_seconds(settings)
    live = [
        w
        for w in workers
        if w.status in LIVE_STATUSES and w.last_seen is not None and w.last_seen.timestamp() >= cutoff
    ]
    if tenant is None:
        queue_health = await _queues(store, live, now_ms)
        claimed = await store.health.claimed_jobs(MAX_IN_PROGRESS_SCANNED)
    else:
        names = set(queues) | {w.queue for w in live}
        queue_health, claimed = await _tenant_queues(store, tenant, names, live, now_ms)
    jobs, by_tenant = await _job_counts(store, window_s, now, tenant)
    stuck = _stuck(claimed, settings, timeout_for or (lambda _fn: None), now_ms)
    snapshot = HealthSnapshot(
        status="ok",
        taken_at=datetime.fromtimestamp(now, tz=UTC),
        source="scheduled" if source == "scheduled" else "client",
        job_id=job_id,
        window_s=window_s,
        ping_ms=ping,
        server=server,
        queues=queue_health,
        live_workers=len(live),
        workers=sorted(live, key=lambda w: w.id)[:MAX_WORKERS_LISTED],
        jobs=jobs,
        jobs_by_tenant=by_tenant,
        stuck=stuck[:MAX_STUCK_LISTED],
    )
    status, reasons = evaluate(snapshot)
    return snapshot.model_copy(update={"status": status, "reasons": reasons})


async def store_snapshot(store: Store, snapshot: HealthSnapshot, history: int) -> None:
    """Push ``snapshot`` to the head of the capped history (``history`` entries, kept 7 days)."""
    await store.health.push_snapshot(snapshot.model_dump_json(), keep=history)


async def read_history(store: Store, limit: int = 1) -> list[HealthSnapshot]:
    """The newest ``limit`` stored snapshots, newest first (unreadable entries are skipped)."""
    out: list[HealthSnapshot] = []
    for item in await store.health.snapshots(limit):
        try:
            out.append(HealthSnapshot.model_validate(json.loads(item)))
        except ValueError:
            continue
    return out


# ---------------------------------------------------------------------------- what a client sees
def for_tenant(snapshot: HealthSnapshot, tenant: str | None, *, period_s: float | None = None) -> HealthSnapshot:
    """What a tenant-bound client may see of a snapshot: its own job counts and stuck jobs, judged again.

    The queue rows of a stored snapshot count every tenant's jobs, so a tenant's copy has none
    (``client.health()`` measures the tenant's own); the status and reasons are worked out again
    from what is left, so they never name another tenant's jobs or failures.

    Example::

        mine = for_tenant(client.health(), "acme")
        mine.reasons        # about acme's jobs and the shared workers and server only
    """
    if tenant is None:
        return snapshot
    mine = snapshot.model_copy(
        update={
            "jobs": snapshot.jobs_by_tenant.get(tenant, JobCounts()),
            "jobs_by_tenant": {k: v for k, v in snapshot.jobs_by_tenant.items() if k == tenant},
            "stuck": [s for s in snapshot.stuck if s.tenant == tenant],
            "queues": [],
        }
    )
    status, reasons = evaluate(mine, period_s=period_s)
    return mine.model_copy(update={"status": status, "reasons": reasons})


def _builtin_timeouts() -> dict[str, float | None]:
    from .registry import collect_jobs

    return {name: spec.timeout for name, spec in collect_jobs([]).items()}


async def client_health(core: ClientCore, *, refresh: bool = False) -> HealthSnapshot:
    """What ``client.health()`` returns: the latest snapshot with liveness re-checked now (see the client).

    Example::

        h = await client_health(core)
        h.status, h.reasons
    """
    settings = core.settings
    now = datetime.now(tz=UTC)
    try:
        ping_s = await core.ping()
    except BrokerUnavailable as exc:
        return HealthSnapshot(
            status="down",
            reasons=[f"the server {settings.safe_url()} cannot be reached: {exc}"],
            taken_at=now,
            source="client",
            window_s=window_for(settings),
        )
    latest: HealthSnapshot | None = None
    if not refresh:
        found = await core.call(lambda s: read_history(s, 1))
        latest = found[0] if found else None
    if core.tenant is not None:
        return await _tenant_health(core, latest)
    if latest is None:
        timeouts = _builtin_timeouts()
        return await core.call(lambda s: collect_health(s, settings, source="client", timeout_for=timeouts.get))
    workers = await core.workers()
    cutoff = now.timestamp() - live_seconds(settings)
    live = [
        w
        for w in workers
        if w.status in LIVE_STATUSES and w.last_seen is not None and w.last_seen.timestamp() >= cutoff
    ]
    queues = [q.model_copy(update={"live_workers": sum(1 for w in live if w.queue == q.name)}) for q in latest.queues]
    current = latest.model_copy(
        update={
            "ping_ms": round(ping_s * 1000, 3),
            "live_workers": len(live),
            "workers": sorted(live, key=lambda w: w.id),
            "queues": queues,
        }
    )
    status, reasons = evaluate(current, period_s=window_for(settings))
    return current.model_copy(update={"status": status, "reasons": reasons})


async def _tenant_health(core: ClientCore, latest: HealthSnapshot | None) -> HealthSnapshot:
    """A bound client's health: measured now on its own tenant's keys; the scheduled snapshot adds its stuck jobs.

    The monitoring job knows every function's time limit, so the tenant's stuck jobs it found are
    kept (and the snapshot's age judged); everything else is the tenant's own, measured now.
    """
    settings = core.settings
    tenant = core.tenant
    timeouts = _builtin_timeouts()
    measured = await core.call(
        lambda s: collect_health(
            s, settings, source="client", timeout_for=timeouts.get, tenant=tenant, queues=[core.queue]
        )
    )
    if latest is None:
        return measured
    known = {s.id for s in measured.stuck}
    scheduled = [s for s in for_tenant(latest, tenant).stuck if s.id not in known]
    current = measured.model_copy(
        update={
            "taken_at": latest.taken_at,
            "source": latest.source,
            "job_id": latest.job_id,
            "stuck": sorted(measured.stuck + scheduled, key=lambda s: -s.running_s)[:MAX_STUCK_LISTED],
        }
    )
    status, reasons = evaluate(current, period_s=window_for(settings))
    return current.model_copy(update={"status": status, "reasons": reasons})


async def health_history(core: ClientCore, limit: int = 100) -> list[HealthSnapshot]:
    """What ``client.health_history()`` returns: the newest ``limit`` snapshots, as this client may see them.

    Example::

        [(h.taken_at, h.status) for h in await health_history(core, 12)]
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigurationError(f"limit must be a positive integer, got {limit!r}")
    found = await core.call(lambda s: read_history(s, limit))
    return [for_tenant(h, core.tenant) for h in found]
