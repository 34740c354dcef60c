"""What a health check reads from the server: ping, ``INFO``, queue heads, claimed jobs, the snapshot history.

The judging lives in :mod:`taskq_sdk.health`; this module only knows where the facts are::

    reader = HealthReader(redis)
    rows = await reader.queue_rows(["default"], now_ms)     # [QueueRow(name='default', depth=3, ...)]
    await reader.push_snapshot(snapshot_json, keep=288)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoPermissionError

from .._names import tenant_of
from . import layout as arq_layout
from .keys import KeyLayout

__all__ = ["ClaimedJob", "HealthReader", "QueueRow"]

HISTORY_TTL_MS = 7 * 86_400_000


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))


def _num(v: Any) -> float | None:
    try:
        return float(_s(v))
    except ValueError:
        return None


@dataclass(frozen=True)
class QueueRow:
    """One queue's depth, due jobs and how long its oldest due, unclaimed job has waited."""

    name: str
    depth: int
    due: int
    oldest_wait_s: float | None


@dataclass(frozen=True)
class ClaimedJob:
    """A job some worker holds a claim on, with the metadata a health check needs (``None`` if unknown)."""

    id: str
    function: str | None
    tenant: str
    workspace: str
    worker: str | None
    started_ms: float | None
    timeout: float | None


class HealthReader:
    """Reads the facts behind a health snapshot (see the module docstring).

    Example::

        reader = HealthReader(redis)
        await reader.ping_ms()          # 0.21
    """

    def __init__(self, redis: Redis, layout: KeyLayout = arq_layout) -> None:
        self.redis = redis
        self.layout = layout

    async def ping_ms(self, samples: int = 3) -> float:
        """The median of ``samples`` round trips, in milliseconds."""
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            await self.redis.ping()
            times.append((time.perf_counter() - start) * 1000)
        return round(statistics.median(times), 3)

    async def server_info(self) -> dict[str, Any]:
        """Version, uptime, clients and memory (used, peak, ``maxmemory`` and its policy)."""
        info: dict[str, Any] = await self.redis.info()
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

    async def queue_rows(self, names: Iterable[str], now_ms: int) -> list[QueueRow]:
        """Each queue's depth, due count and the wait of its oldest due job nobody has claimed."""
        out: list[QueueRow] = []
        for name in sorted(set(names)):
            lay = self.layout.for_queue(name)
            key = lay.queue_key(name)
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(key)
                pipe.zcount(key, "-inf", now_ms)
                pipe.zrangebyscore(key, "-inf", now_ms, start=0, num=50, withscores=True)
                depth, due, head = await pipe.execute()
            oldest: float | None = None
            if head:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for member, _ in head:
                        pipe.exists(lay.in_progress_key(_s(member)))
                    running = await pipe.execute()
                for (_member, score), is_running in zip(head, running, strict=True):
                    if not is_running:
                        oldest = round(max(0.0, (now_ms - float(score)) / 1000.0), 3)
                        break
            out.append(QueueRow(name=name, depth=int(depth), due=int(due), oldest_wait_s=oldest))
        return out

    async def tenant_queue_rows(
        self, names: Iterable[str], tenant: str, now_ms: int, limit: int
    ) -> tuple[list[QueueRow], list[str]]:
        """Like :meth:`queue_rows`, counting ``tenant``'s jobs only; and the ids of its jobs a worker holds.

        Reads no other tenant's keys (works for a per-tenant ACL user: a queue it may not read is
        left out). At most ``limit`` jobs per queue are looked at, oldest first.
        """
        rows: list[QueueRow] = []
        claimed: list[str] = []
        for name in sorted(set(names)):
            lay = self.layout.for_queue(name)
            try:
                head = await self.redis.zrange(lay.queue_key(name), 0, limit - 1, withscores=True)
            except NoPermissionError:
                continue  # another tenant's queue
            mine = [(_s(m), float(score)) for m, score in head if tenant_of(_s(m)) == tenant]
            running: list[Any] = []
            if mine:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for job_id, _ in mine:
                        pipe.exists(lay.in_progress_key(job_id))
                    running = await pipe.execute()
            due = [(job_id, score) for job_id, score in mine if score <= now_ms]
            held = {job_id for (job_id, _), is_running in zip(mine, running, strict=True) if is_running}
            waiting = [score for job_id, score in due if job_id not in held]
            oldest = round(max(0.0, (now_ms - waiting[0]) / 1000.0), 3) if waiting else None
            rows.append(QueueRow(name=name, depth=len(mine), due=len(due), oldest_wait_s=oldest))
            claimed += [job_id for job_id, _ in mine if job_id in held]
        return rows, claimed

    async def claimed_jobs(self, limit: int) -> list[ClaimedJob]:
        """Jobs held by a worker's claim now (at most ``limit`` scanned), with their taskq metadata."""
        prefix = self.layout.in_progress_key("")
        ids: list[str] = []
        async for key in self.redis.scan_iter(match=prefix + "*", count=1000):
            ids.append(_s(key)[len(prefix) :])
            if len(ids) >= limit:
                break
        return await self.claimed_meta(ids)

    async def claimed_meta(self, ids: Sequence[str]) -> list[ClaimedJob]:
        """The taskq metadata a health check needs of the claimed jobs ``ids``."""
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self.layout.meta_key(job_id), ["fn", "tenant", "ws", "started", "timeout", "worker"])
            rows = await pipe.execute()
        return [
            ClaimedJob(
                id=job_id,
                function=_s(fn) or None,
                tenant=_s(tenant) or tenant_of(job_id),  # SUBMIT writes no tenant field: it is the id's
                workspace=_s(ws) or "default",
                worker=_s(worker) or None,
                started_ms=_num(started),
                timeout=_num(timeout),
            )
            for job_id, (fn, tenant, ws, started, timeout, worker) in zip(ids, rows, strict=True)
        ]

    async def push_snapshot(self, snapshot_json: str, *, keep: int) -> None:
        """Put a snapshot at the head of the capped history (kept 7 days)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(arq_layout.HISTORY_KEY, snapshot_json)
            pipe.ltrim(arq_layout.HISTORY_KEY, 0, keep - 1)
            pipe.pexpire(arq_layout.HISTORY_KEY, HISTORY_TTL_MS)
            await pipe.execute()

    async def snapshots(self, limit: int) -> Sequence[str]:
        """The newest ``limit`` stored snapshots (JSON text), newest first (none for a user who may not read them)."""
        try:
            raw: list[Any] = await self.redis.lrange(arq_layout.HISTORY_KEY, 0, max(0, limit - 1))  # type: ignore[misc]
        except NoPermissionError:
            return []  # a per-tenant ACL user: the snapshots are everyone's
        return [_s(x) for x in raw]
