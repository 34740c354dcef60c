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
from . import layout as arq_layout
from .keys import KeyLayout

__all__ = ["HOOK_TTL_MS", "HookStore"]

HOOK_TTL_MS = 8 * 86_400_000

#: KEYS: hook, job, result, tenant flag; ARGV: url, ttl_ms. Registers ``url`` unless the job exists
#: (its definition or result is stored: a submit would not create it). Returns {1, url} when
#: registered, else {0, the url that stands ('' for none)}.
_REGISTER_IF_NEW = """
if redis.call('EXISTS', KEYS[2], KEYS[3]) > 0 then
  return {0, redis.call('HGET', KEYS[1], 'url') or ''}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'url', ARGV[1], 'status', 'pending')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[4], 1, 'PX', ARGV[2])
return {1, ARGV[1]}
"""

#: KEYS: hook; ARGV: url. Drops the registration if it still names ``url`` and nothing was delivered.
_UNREGISTER = """
if redis.call('HGET', KEYS[1], 'url') == ARGV[1] and redis.call('HGET', KEYS[1], 'status') == 'pending' then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))


class HookStore:
    """Reads and writes webhook registrations (see the module docstring).

    Example::

        urls = await HookStore(redis).urls(["acme:j1", "acme:j2"])   # ['https://...', None]
    """

    def __init__(self, redis: Redis, layout: KeyLayout = arq_layout) -> None:
        self.redis = redis
        self.layout = layout
        self._register_if_new = redis.register_script(_REGISTER_IF_NEW)
        self._unregister = redis.register_script(_UNREGISTER)

    async def register(self, job_id: str, url: str) -> None:
        """Register ``url`` for ``job_id`` (delivery status ``pending``) and flag its tenant as having hooks."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.layout.hook_key(job_id), mapping={"url": url, "status": "pending"})
            pipe.pexpire(self.layout.hook_key(job_id), HOOK_TTL_MS)
            pipe.set(self.layout.hooks_flag(tenant_of(job_id)), 1, px=HOOK_TTL_MS)
            await pipe.execute()

    async def register_if_new(self, job_id: str, url: str) -> tuple[bool, str | None]:
        """Register ``url`` only if ``job_id`` does not exist yet; ``(registered, the URL that stands)``.

        An existing job keeps its webhook (or its lack of one): a later submit of the same id must
        not re-point where its outcome goes.

        Example::

            registered, url = await hooks.register_if_new("acme:j1", "https://hooks.example.com/done")
        """
        keys = [self.layout.hook_key(job_id), self.layout.job_key(job_id), self.layout.result_key(job_id)]
        keys.append(self.layout.hooks_flag(tenant_of(job_id)))
        done, standing = await self._register_if_new(keys=keys, args=[url, HOOK_TTL_MS])
        return bool(done), _s(standing) or None

    async def unregister(self, job_id: str, url: str) -> bool:
        """Drop ``job_id``'s registration if it is still ``url`` and undelivered (a submit that lost a race)."""
        return bool(await self._unregister(keys=[self.layout.hook_key(job_id)], args=[url]))

    async def outcomes(self, job_ids: Sequence[str]) -> list[dict[str, str]]:
        """Each job's registration and delivery outcome (``{}`` where there is none)."""
        if not job_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.layout.hook_key(job_id))
            rows: list[Any] = await pipe.execute()
        return [{_s(k): _s(v) for k, v in row.items()} for row in rows]

    async def tenants_with_hooks(self, tenants: Sequence[str]) -> set[str]:
        """Which of ``tenants`` registered a webhook recently (their own keys only: works for ACL users)."""
        if not tenants:
            return set()
        async with self.redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.exists(self.layout.hooks_flag(tenant))
            flags = await pipe.execute()
        return {t for t, flag in zip(tenants, flags, strict=True) if flag}

    async def urls(self, job_ids: Sequence[str]) -> list[str | None]:
        """The registered webhook URL of each job, or ``None``."""
        if not job_ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hget(self.layout.hook_key(job_id), "url")
            raw = await pipe.execute()
        return [_s(u) or None for u in raw]

    async def record(self, job_id: str, outcome: Mapping[str, Any]) -> None:
        """Record a delivery outcome (status, code, error, attempts, time)."""
        await self.redis.hset(self.layout.hook_key(job_id), mapping={k: str(v) for k, v in outcome.items()})  # type: ignore[misc]
