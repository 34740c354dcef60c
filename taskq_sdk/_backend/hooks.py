"""Webhook registrations and their delivery outcomes, per job, under the job's tenant.

A client registers a URL before it submits the job; the worker that finishes the job looks it
up (skipping tenants that never registered one) and records how delivery went::

    hooks = HookStore(redis)
    await hooks.register("acme:j1", "https://hooks.example.com/done")
    await hooks.record("acme:j1", {"status": "delivered", "code": "200"})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from .._names import tenant_of
from . import layout

__all__ = ["HOOK_TTL_MS", "HookStore"]

HOOK_TTL_MS = 8 * 86_400_000


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))


class HookStore:
    """Reads and writes webhook registrations (see the module docstring).

    Example::

        urls = await HookStore(redis).urls(["acme:j1", "acme:j2"])   # ['https://...', None]
    """

    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def register(self, job_id: str, url: str) -> None:
        """Register ``url`` for ``job_id`` (delivery status ``pending``) and flag its tenant as having hooks."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(layout.hook_key(job_id), mapping={"url": url, "status": "pending"})
            pipe.pexpire(layout.hook_key(job_id), HOOK_TTL_MS)
            pipe.set(layout.hooks_flag(tenant_of(job_id)), 1, px=HOOK_TTL_MS)
            await pipe.execute()

    async def outcomes(self, job_ids: Sequence[str]) -> list[dict[str, str]]:
        """Each job's registration and delivery outcome (``{}`` where there is none)."""
        if not job_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(layout.hook_key(job_id))
            rows: list[Any] = await pipe.execute()
        return [{_s(k): _s(v) for k, v in row.items()} for row in rows]

    async def tenants_with_hooks(self, tenants: Sequence[str]) -> set[str]:
        """Which of ``tenants`` registered a webhook recently (their own keys only: works for ACL users)."""
        if not tenants:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.exists(layout.hooks_flag(tenant))
            flags = await pipe.execute()
        return {t for t, flag in zip(tenants, flags, strict=True) if flag}

    async def urls(self, job_ids: Sequence[str]) -> list[str | None]:
        """The registered webhook URL of each job, or ``None``."""
        if not job_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(layout.hook_key(job_id), "url")
            raw = await pipe.execute()
        return [_s(u) or None for u in raw]

    async def record(self, job_id: str, outcome: Mapping[str, Any]) -> None:
        """Record a delivery outcome (status, code, error, attempts, time)."""
        await self.redis.hset(layout.hook_key(job_id), mapping={k: str(v) for k, v in outcome.items()})  # type: ignore[misc]
