"""The input-hash result cache in Redis: claim an entry for a new job, or find the job already serving it.

One atomic script decides, per cache entry (a function's identity and version plus its inputs'
digest, see :mod:`taskq_sdk.caching`), whether a submit runs: the first caller claims the entry
for its new job id, every later caller gets that job's id for as long as the job is queued,
running or complete with its result kept. A failed, cancelled, expired or vanished job no longer
serves its entry: the next caller claims it again. The worker's finish script (``CACHE_SETTLE`` in
:mod:`.layout`) keeps a completed entry's result for the entry's TTL::

    cache = CacheStore(redis)
    claim = await cache.claim(tenant="acme", entry="3f2a…:9c1b…", job_id="acme:5e0c…",
                              ttl_ms=604_800_000, max_entries=100_000, workspace="default", function="score")
    claim.job_id, claim.status   # (None, 'claimed'): write the job;  ('acme:77aa…', 'complete'): a hit
    await cache.clear("acme", function_digest="3f2a…")   # entries dropped
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from . import layout

__all__ = ["CacheClaim", "CacheStore"]

#: how long a claimed entry whose job is not written yet counts as "being written" (its claimer
#: writes right after claiming; one that died in between frees the entry after this)
PENDING_GRACE_MS = 30_000

#: KEYS: entry key, index key, marker key of the new job.  ARGV: new job id, entry, ttl_ms,
#: max_entries, now_ms, workspace, function, marker_ttl_ms, pending_grace_ms.
#: Returns {job_id, status}: job_id false and status 'claimed' when the new job now serves the
#: entry; else the serving job's id and its state ('complete', 'queued', 'in_progress', ...,
#: 'pending': claimed a moment ago, its job is being written).
CLAIM = (
    layout.PRELUDE
    + """
local pk, ik, mkr = KEYS[1], KEYS[2], KEYS[3]
local new, entry, ttl, maxn, now = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local ws, fn = ARGV[6], ARGV[7]
local t = tenant_of(new)
local cur = redis.pcall('GET', pk)
if type(cur) == 'string' then
  local state = redis.pcall('HGET', meta_key(cur), 'state')
  local status = false
  if type(state) == 'string' then
    if state == 'complete' then
      if redis.call('EXISTS', RES .. cur) == 1 then status = state end
    elseif state ~= 'failed' and state ~= 'cancelled' then
      if redis.call('EXISTS', JOB .. cur) == 1 then status = state end
    end
  elseif not state then
    local mark = redis.call('GET', TNS .. t .. ':cj:' .. cur)
    local claimed = mark and tonumber(string.match(mark, '|(%d+)$'))
    if claimed and now - claimed < tonumber(ARGV[9]) then status = 'pending' end
  end
  if status then
    redis.call('ZADD', ik, now, entry)
    pcall(count, t, ws, fn, now, 'cache_hit', nil)
    return {cur, status}
  end
end
redis.call('DEL', pk)
redis.call('SET', pk, new, 'PX', ttl)
redis.call('SET', mkr, entry .. '|' .. ttl .. '|' .. now, 'PX', ARGV[8])
redis.call('ZADD', ik, now, entry)
if redis.call('PTTL', ik) < ttl then redis.call('PEXPIRE', ik, ttl) end
local n = redis.call('ZCARD', ik)
if n > maxn then
  -- over the size limit: the least recently used entries go
  local old = redis.call('ZPOPMIN', ik, n - maxn)
  for j = 1, #old, 2 do redis.call('DEL', TNS .. t .. ':cache:' .. old[j]) end
end
pcall(count, t, ws, fn, now, 'cache_miss', nil)
return {false, 'claimed'}
"""
)

#: KEYS: index key.  ARGV: entry key prefix, function digest ('' for every entry).
#: Returns the number of entries dropped (their jobs and results stay until they expire).
CLEAR = """
local entries = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
local want = ARGV[2]
for _, e in ipairs(entries) do
  if want == '' or string.sub(e, 1, string.len(want) + 1) == want .. ':' then
    n = n + redis.call('DEL', ARGV[1] .. e)
    redis.call('ZREM', KEYS[1], e)
  end
end
return n
"""


@dataclass(frozen=True)
class CacheClaim:
    """What the claim found: ``job_id`` None (this submit's job serves the entry) or the serving job."""

    job_id: str | None
    status: str


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class CacheStore:
    """Claims and clears cache entries (see the module docstring).

    Example::

        claim = await CacheStore(redis).claim(tenant="acme", entry=e, job_id=i, ttl_ms=60_000,
                                              max_entries=1000, workspace="default", function="f")
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._claim = redis.register_script(CLAIM)
        self._clear = redis.register_script(CLEAR)

    async def claim(
        self,
        *,
        tenant: str,
        entry: str,
        job_id: str,
        ttl_ms: int,
        max_entries: int,
        workspace: str,
        function: str,
        job_ttl_ms: int,
        now_ms: int,
    ) -> CacheClaim:
        """Claim ``entry`` for ``job_id`` (not written yet), or return the job already serving it."""
        keys = [layout.cache_entry_key(tenant, entry), layout.cache_index_key(tenant), layout.cache_job_key(job_id)]
        # the marker lives as long as the job may wait and run, and the entry after it
        marker_ttl = max(ttl_ms, job_ttl_ms) + 86_400_000
        args: list[str | int] = [
            job_id,
            entry,
            ttl_ms,
            max_entries,
            now_ms,
            workspace,
            function,
            marker_ttl,
            PENDING_GRACE_MS,
        ]
        found, status = await self._claim(keys=keys, args=args)
        return CacheClaim(None if not found else _text(found), _text(status))

    async def clear(self, tenant: str, function_digest: str = "") -> int:
        """Drop the tenant's cache entries of one function (its digest), or all of them; returns how many."""
        prefix = layout.cache_entry_key(tenant, "")
        dropped = await self._clear(keys=[layout.cache_index_key(tenant)], args=[prefix, function_digest])
        return int(dropped)

    async def entries(self, tenant: str) -> int:
        """How many entries the tenant's cache index holds (expired ones count until trimmed)."""
        return int(await self._redis.zcard(layout.cache_index_key(tenant)))

    # ------------------------------------------------------------------ row entries (DataFrame fan-out)
    async def rows_get(self, tenant: str, entry: str, fields: list[str]) -> list[bytes | None]:
        """The stored results of ``fields`` (row digests) in the entry of one call shape; None for a miss."""
        if not fields:
            return []
        values: list[bytes | None] = await self._redis.hmget(layout.cache_entry_key(tenant, entry), fields)  # type: ignore[misc]
        return values

    async def rows_put(
        self, tenant: str, entry: str, rows: dict[str, bytes], *, ttl_ms: int, max_rows: int, now_ms: int | None = None
    ) -> None:
        """Store row results in the entry of one call shape; it lives ``ttl_ms`` from this write.

        An entry holding more than ``max_rows`` rows starts over (a bound on memory); the entry is
        listed in the tenant's cache index, so ``cache_clear`` and the size limit cover it.
        """
        if not rows:
            return
        key = layout.cache_entry_key(tenant, entry)
        index = layout.cache_index_key(tenant)
        if int(await self._redis.hlen(key)) + len(rows) > max_rows:  # type: ignore[misc]
            await self._redis.delete(key)
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=rows)
            pipe.pexpire(key, ttl_ms)
            pipe.zadd(index, {entry: now})
            pipe.pexpire(index, ttl_ms, nx=True)  # a new index gets a TTL; a longer-lived one keeps its own
            pipe.pexpire(index, ttl_ms, gt=True)
            await pipe.execute()

    async def count_rows(self, tenant: str, workspace: str, function: str, hits: int, rows: int) -> None:
        """Count a fan-out's row hits and misses in the tenant's metrics (as submits count theirs)."""
        now = int(time.time() * 1000)
        prefix = f"{workspace}|{function}|"
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, ttl in (
                (layout.metrics_key(tenant), 2_592_000_000),
                (layout.metrics_key(tenant, now // 60_000), 7_200_000),
            ):
                if hits:
                    pipe.hincrby(key, prefix + "cache_hit", hits)
                if rows - hits:
                    pipe.hincrby(key, prefix + "cache_miss", rows - hits)
                pipe.pexpire(key, ttl)
            await pipe.execute()
