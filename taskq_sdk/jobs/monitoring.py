"""The built-in monitoring job: a health snapshot of server, queues, workers and jobs, kept as a short history.

Every taskq worker runs a scheduler (:mod:`taskq_sdk.scheduler`) that submits
``scheduled_monitoring_async`` on ``TASKQ_MONITORING_CRON`` (default every five minutes), once per
slot however many workers run. Each run collects:

* server ping latency, memory (``INFO``: used, peak, ``maxmemory`` and policy), version, uptime;
* per queue: depth, due and deferred jobs, the oldest due job's wait, live workers serving it;
* live workers and their counters (from their heartbeats);
* job counts and failure rate over the window (the per-minute counters the Lua scripts keep);
* jobs still claimed past their own time limit plus the claim TTL ("stuck").

It judges an overall status with the reasons, stores the snapshot at the head of the capped list
``taskq:monitoring:history`` (``TASKQ_MONITORING_HISTORY`` entries, kept 7 days) and returns it.
``client.health()`` reads the latest one (re-checking liveness now)::

    h = client.health()
    h.status, h.reasons        # 'degraded', ['failure rate 40% over the last 300 s (12 of 30 jobs)']

Status rules: ``down`` when no live worker is seen (or the server cannot be reached);
``degraded`` for a failure rate over 20 % (at least 5 finished jobs), stuck jobs, a queue with due
jobs and no live worker, a due job waiting over 5 minutes, ping over 250 ms, memory over 90 % of
``maxmemory``, or a snapshot older than two schedule periods; else ``ok``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from .._backend import layout
from .._backend.metrics_io import metric_tenants, queue_names, read_metric_hashes
from .._backend.store import Store
from ..config import Settings
from ..metrics import MetricRow, aggregate
from ..models import HealthSnapshot, JobCounts, QueueHealth, StuckJob, WorkerInfo
from ..registry import job
from ..serialization import Codec

__all__ = [
    "HISTORY_KEY",
    "collect_health",
    "evaluate",
    "read_history",
    "scheduled_monitoring_async",
    "store_snapshot",
    "window_for",
]

HISTORY_KEY = "taskq:monitoring:history"
HISTORY_TTL_MS = 7 * 86_400_000
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


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))


def _num(v: Any) -> float | None:
    try:
        return float(_s(v))
    except ValueError:
        return None


def live_seconds(settings: Settings) -> float:
    """How recent a worker's heartbeat must be for it to count as live."""
    return max(10.0, 3 * settings.heartbeat_interval + 5.0)


def window_for(settings: Settings) -> float:
    """The monitoring window in seconds: the schedule's period (1 minute to 2 hours; 5 minutes if off)."""
    from ..scheduler import CronSchedule

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


async def _ping_ms(redis: Any) -> float:
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        await redis.ping()
        samples.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(samples), 3)


async def _server_info(redis: Any) -> dict[str, Any]:
    info: dict[str, Any] = await redis.info()
    used = int(info.get("used_memory", 0) or 0)
    maxmemory = int(info.get("maxmemory", 0) or 0)
    return {
        "version": str(info.get("valkey_version") or info.get("redis_version") or "?"),
        "uptime_s": int(info.get("uptime_in_seconds", 0) or 0),
        "connected_clients": int(info.get("connected_clients", 0) or 0),
        "used_memory": used,
        "used_memory_peak": int(info.get("used_memory_peak", 0) or 0),
        "maxmemory": maxmemory,
        "maxmemory_policy": str(info.get("maxmemory_policy", "")),
        "memory_fraction": round(used / maxmemory, 4) if maxmemory else None,
    }


async def _queues(redis: Any, live: list[WorkerInfo], now_ms: int) -> list[QueueHealth]:
    names = set(await queue_names(redis)) | {w.queue for w in live}
    out: list[QueueHealth] = []
    for name in sorted(names):
        key = layout.queue_key(name)
        async with redis.pipeline(transaction=False) as pipe:
            pipe.zcard(key)
            pipe.zcount(key, "-inf", now_ms)
            pipe.zrangebyscore(key, "-inf", now_ms, start=0, num=50, withscores=True)
            depth, due, head = await pipe.execute()
        oldest: float | None = None
        if head:
            async with redis.pipeline(transaction=False) as pipe:
                for member, _ in head:
                    pipe.exists(layout.in_progress_key(_s(member)))
                running = await pipe.execute()
            for (_member, score), is_running in zip(head, running, strict=True):
                if not is_running:
                    oldest = round(max(0.0, (now_ms - float(score)) / 1000.0), 3)
                    break
        out.append(
            QueueHealth(
                name=name,
                depth=int(depth),
                due=int(due),
                deferred=max(0, int(depth) - int(due)),
                oldest_wait_s=oldest,
                live_workers=sum(1 for w in live if w.queue == name),
            )
        )
    return out


async def _stuck(redis: Any, settings: Settings, timeout_for: TimeoutFor, now_ms: int) -> list[StuckJob]:
    ids: list[str] = []
    async for key in redis.scan_iter(match=layout.in_progress_key("*"), count=1000):
        ids.append(_s(key)[len(layout.in_progress_key("")) :])
        if len(ids) >= MAX_IN_PROGRESS_SCANNED:
            break
    if not ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(layout.meta_key(job_id), "fn", "tenant", "ws", "started", "timeout", "worker")
        rows = await pipe.execute()
    out: list[StuckJob] = []
    for job_id, (fn, tenant, ws, started, timeout, worker) in zip(ids, rows, strict=True):
        started_ms = _num(started)
        if started_ms is None:
            continue  # no taskq metadata (a plain arq job): its limit is unknown here
        function = _s(fn) or None
        limit = _num(timeout) or (timeout_for(function) if function else None) or settings.job_timeout
        running = (now_ms - started_ms) / 1000.0
        if running > limit + settings.claim_ttl:
            out.append(
                StuckJob(
                    id=job_id,
                    function=function,
                    tenant=_s(tenant) or "default",
                    workspace=_s(ws) or "default",
                    worker=_s(worker) or None,
                    running_s=round(running, 3),
                    timeout_s=float(limit),
                )
            )
    out.sort(key=lambda s: -s.running_s)
    return out


async def _job_counts(redis: Any, window_s: float, now: float) -> tuple[JobCounts, dict[str, JobCounts]]:
    tenants = await metric_tenants(redis)
    minutes = range(int((now - window_s) // 60), int(now // 60) + 1)
    hashes = await read_metric_hashes(redis, tenants, minutes)
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

        status, reasons = evaluate(snapshot)
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
    redis: Any,
    settings: Settings,
    *,
    source: str = "client",
    job_id: str | None = None,
    timeout_for: TimeoutFor | None = None,
) -> HealthSnapshot:
    """Measure everything a snapshot holds, now, and judge it (see :func:`evaluate`).

    Example::

        snap = await collect_health(redis, settings)
        snap.status, snap.queues
    """
    now = time.time()
    now_ms = int(now * 1000)
    window_s = window_for(settings)
    ping = await _ping_ms(redis)
    server = await _server_info(redis)
    store = Store(redis, Codec(), settings)
    workers = await store.workers(include_stopped=False)
    cutoff = now - live_seconds(settings)
    live = [
        w
        for w in workers
        if w.status in LIVE_STATUSES and w.last_seen is not None and w.last_seen.timestamp() >= cutoff
    ]
    queues = await _queues(redis, live, now_ms)
    jobs, by_tenant = await _job_counts(redis, window_s, now)
    stuck = await _stuck(redis, settings, timeout_for or (lambda _fn: None), now_ms)
    snapshot = HealthSnapshot(
        status="ok",
        taken_at=datetime.fromtimestamp(now, tz=UTC),
        source="scheduled" if source == "scheduled" else "client",
        job_id=job_id,
        window_s=window_s,
        ping_ms=ping,
        server=server,
        queues=queues,
        live_workers=len(live),
        workers=sorted(live, key=lambda w: w.id)[:MAX_WORKERS_LISTED],
        jobs=jobs,
        jobs_by_tenant=by_tenant,
        stuck=stuck[:MAX_STUCK_LISTED],
    )
    status, reasons = evaluate(snapshot)
    return snapshot.model_copy(update={"status": status, "reasons": reasons})


async def store_snapshot(redis: Any, snapshot: HealthSnapshot, history: int) -> None:
    """Push ``snapshot`` to the head of the capped history list (kept 7 days)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.lpush(HISTORY_KEY, snapshot.model_dump_json())
        pipe.ltrim(HISTORY_KEY, 0, history - 1)
        pipe.pexpire(HISTORY_KEY, HISTORY_TTL_MS)
        await pipe.execute()


async def read_history(redis: Any, limit: int = 1) -> list[HealthSnapshot]:
    """The newest ``limit`` stored snapshots, newest first (unreadable entries are skipped)."""
    raw: Iterable[Any] = await redis.lrange(HISTORY_KEY, 0, max(0, limit - 1))
    out: list[HealthSnapshot] = []
    for item in raw:
        try:
            out.append(HealthSnapshot.model_validate(json.loads(_s(item))))
        except ValueError:
            continue
    return out


@job(name="scheduled_monitoring_async", timeout=120, retries=1)
async def scheduled_monitoring_async(ctx: dict[str, Any]) -> dict[str, Any]:
    """Collect a health snapshot, store it in the capped history and return it as plain data.

    Submitted by the workers' scheduler on ``TASKQ_MONITORING_CRON``; it can also be submitted by hand.

    Example::

        snap = HealthSnapshot.model_validate(client.submit("scheduled_monitoring_async").result())
        snap.status, snap.reasons
    """
    redis = ctx["redis"]
    raw_settings = ctx.get("settings")
    settings = raw_settings if isinstance(raw_settings, Settings) else Settings()
    resolve = ctx.get("taskq_resolve")

    def timeout_for(function: str) -> float | None:
        spec = resolve(function) if callable(resolve) else None
        return None if spec is None else spec.timeout

    snapshot = await collect_health(
        redis,
        settings,
        source="scheduled",
        job_id=str(ctx.get("job_id") or "") or None,
        timeout_for=timeout_for,
    )
    await store_snapshot(redis, snapshot, settings.monitoring_history)
    return snapshot.model_dump(mode="json")
