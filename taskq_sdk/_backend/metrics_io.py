"""Reading the metric counters the Lua scripts keep (see ``count`` in :mod:`.layout`).

Example::

    reader = MetricsReader(redis)
    hashes = await reader.hashes(["acme"], minutes=range(now_min - 5, now_min + 1))
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from . import layout as arq_layout
from .keys import KeyLayout

__all__ = ["MetricsReader"]


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class MetricsReader:
    """The per-tenant metric hashes, the tenants that have them, and the queues workers served.

    Example::

        reader = MetricsReader(redis)
        await reader.tenants()          # ['acme', 'default']
    """

    def __init__(self, redis: Redis, layout: KeyLayout = arq_layout) -> None:
        self.redis = redis
        self.layout = layout

    async def tenants(self) -> list[str]:
        """Tenants that have metrics (found by scanning the all-time hashes)."""
        found: set[str] = set()
        pattern = self.layout.metrics_key("*")
        async for key in self.redis.scan_iter(match=pattern, count=500):
            tenant = self.layout.key_tenant(_s(key))
            if tenant is not None and _s(key) == self.layout.metrics_key(tenant):
                found.add(tenant)
        return sorted(found)

    async def queues(self) -> list[str]:
        """Queues any worker ever served (from the registries), always including ``default``."""
        found = {"default"}
        prefix, suffix = self.layout.registry_key("\0").split("\0")
        async for key in self.redis.scan_iter(match=prefix + "*" + suffix, count=500):
            found.add(_s(key)[len(prefix) : len(_s(key)) - len(suffix)])
        return sorted(found)

    async def hashes(self, tenants: Iterable[str], minutes: Iterable[int] | None) -> list[tuple[str, dict[Any, Any]]]:
        """``(tenant, hash)`` pairs: all-time hashes when ``minutes`` is None, else one per minute."""
        keys: list[tuple[str, str]] = []
        for tenant in tenants:
            if minutes is None:
                keys.append((tenant, self.layout.metrics_key(tenant)))
            else:
                keys += [(tenant, self.layout.metrics_key(tenant, m)) for m in minutes]
        if not keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for _, key in keys:
                pipe.hgetall(key)
            rows = await pipe.execute()
        return [(tenant, row) for (tenant, _), row in zip(keys, rows, strict=True) if row]

    async def by_minute(self, tenants: Iterable[str], minutes: Iterable[int]) -> dict[int, list[tuple[str, Any]]]:
        """``(tenant, hash)`` pairs of each minute, all read in one pipelined round trip."""
        keys = [(m, t) for m in minutes for t in tenants]
        out: dict[int, list[tuple[str, Any]]] = {m: [] for m, _ in keys}
        if not keys:
            return out
        async with self.redis.pipeline(transaction=False) as pipe:
            for m, t in keys:
                pipe.hgetall(self.layout.metrics_key(t, m))
            rows = await pipe.execute()
        for (m, t), row in zip(keys, rows, strict=True):
            if row:
                out[m].append((t, row))
        return out
