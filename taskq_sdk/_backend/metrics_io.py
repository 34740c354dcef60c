"""Reading the metric counters the Lua scripts keep (see ``count`` in :mod:`.layout`).

Example::

    hashes = await read_metric_hashes(redis, ["acme"], minutes=range(now_min - 5, now_min + 1))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from arq.connections import ArqRedis

from . import layout

__all__ = ["metric_tenants", "queue_names", "read_metric_hashes"]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def metric_tenants(redis: ArqRedis) -> list[str]:
    """Tenants that have metrics (found by scanning ``taskq:*:m:all``)."""
    found: set[str] = set()
    async for key in redis.scan_iter(match="taskq:*:m:all", count=500):
        parts = _s(key).split(":")
        if len(parts) == 4:
            found.add(parts[1])
    return sorted(found)


async def queue_names(redis: ArqRedis) -> list[str]:
    """Queues any worker ever served (from the registries), always including ``default``."""
    found = {"default"}
    async for key in redis.scan_iter(match="taskq:registry:*", count=500):
        found.add(_s(key).split(":", 2)[2])
    return sorted(found)


async def read_metric_hashes(
    redis: ArqRedis, tenants: Iterable[str], minutes: Iterable[int] | None
) -> list[tuple[str, dict[Any, Any]]]:
    """``(tenant, hash)`` pairs: all-time hashes when ``minutes`` is None, else one per minute."""
    keys: list[tuple[str, str]] = []
    for tenant in tenants:
        if minutes is None:
            keys.append((tenant, layout.metrics_key(tenant)))
        else:
            keys += [(tenant, layout.metrics_key(tenant, m)) for m in minutes]
    if not keys:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for _, key in keys:
            pipe.hgetall(key)
        rows = await pipe.execute()
    return [(tenant, row) for (tenant, _), row in zip(keys, rows, strict=True) if row]
