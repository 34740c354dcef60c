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

import struct
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
  pcall(materialize, cur, 'arq:queue')  -- the serving job may still be queued: its record holds its state
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

#: KEYS: entry key, marker key.  ARGV: job id.  Drops a claim whose job was never written.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('DEL', KEYS[2])
return 1
"""

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


#: KEYS: entry key, index key.  ARGV: digests (8 bytes per row), ttl_ms, entry, now_ms, header.
#: Returns {row numbers (a big-endian uint32 each), the values' bodies concatenated, count}: the
#: stored values that start with ``header`` (the wire header, stripped), as two strings rather
#: than one reply per row - 100,000 rows are read and decoded in a few calls.
ROWS_GET = """
local key, packed, header = KEYS[1], ARGV[1], ARGV[5]
local skip = string.len(header)
local rows, bodies = {}, {}
local n = 0
local total = string.len(packed) / 8
local fields = {}
for r = 1, total do fields[r] = string.sub(packed, r * 8 - 7, r * 8) end
-- HMGET in slices (unpack's stack limit), far fewer calls than one HGET per row
for first = 1, total, 4000 do
  local last = math.min(first + 3999, total)
  local got = redis.call('HMGET', key, unpack(fields, first, last))
  for k = 1, last - first + 1 do
    local v = got[k]
    if v and string.sub(v, 1, skip) == header then
      n = n + 1
      rows[n] = struct.pack('>I4', first + k - 2)
      bodies[n] = string.sub(v, skip + 1)
    end
  end
end
if n > 0 then
  redis.call('PEXPIRE', key, ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
end
return {table.concat(rows), table.concat(bodies), n}
"""

#: KEYS: entry key, index key.  ARGV: rows (per row: 8-byte digest, big-endian uint32 length,
#: value), ttl_ms, max_rows, entry, now_ms, row count.
ROWS_PUT = """
local key, packed = KEYS[1], ARGV[1]
local ttl = tonumber(ARGV[2])
if redis.call('HLEN', key) + tonumber(ARGV[6]) > tonumber(ARGV[3]) then redis.call('DEL', key) end
local i, size = 1, string.len(packed)
-- HSET with many fields per call (in slices: unpack's stack limit), far fewer calls than one per row
local flat, n = {}, 0
while i <= size do
  local len = struct.unpack('>I4', packed, i + 8)
  flat[n + 1] = string.sub(packed, i, i + 7)
  flat[n + 2] = string.sub(packed, i + 12, i + 11 + len)
  n = n + 2
  i = i + 12 + len
  if n >= 4000 then
    redis.call('HSET', key, unpack(flat, 1, n))
    n = 0
  end
end
if n > 0 then redis.call('HSET', key, unpack(flat, 1, n)) end
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
if redis.call('PTTL', KEYS[2]) < ttl then redis.call('PEXPIRE', KEYS[2], ttl) end
return 1
"""

#: ARGV: job ids.  Returns {id, entry, id, entry, ...} for the ids whose record names the cache entry
#: their result serves (``CACHE_SETTLE`` writes it); a record of the wrong type reads as none.
ENTRIES_OF = (
    layout.PRELUDE
    + """
local out = {}
for i = 1, #ARGV do
  local e = redis.pcall('HGET', meta_key(ARGV[i]), 'cache')
  if type(e) == 'string' and e ~= '' then
    out[#out + 1] = ARGV[i]
    out[#out + 1] = e
  end
end
return out
"""
)

_LENGTH = struct.Struct(">I")


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
        self._release = redis.register_script(RELEASE)
        self._rows_get = redis.register_script(ROWS_GET)
        self._rows_put = redis.register_script(ROWS_PUT)
        self._entries_of = redis.register_script(ENTRIES_OF)

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

    async def release(self, tenant: str, entry: str, job_id: str) -> None:
        """Drop ``entry``'s claim for ``job_id`` if it still holds it (its job could not be written)."""
        keys = [layout.cache_entry_key(tenant, entry), layout.cache_job_key(job_id)]
        await self._release(keys=keys, args=[job_id])

    async def clear(self, tenant: str, function_digest: str = "") -> int:
        """Drop the tenant's cache entries of one function (its digest), or all of them; returns how many."""
        prefix = layout.cache_entry_key(tenant, "")
        dropped = await self._clear(keys=[layout.cache_index_key(tenant)], args=[prefix, function_digest])
        return int(dropped)

    async def entries_of(self, job_ids: list[str]) -> dict[str, str]:
        """The cache entry each of ``job_ids`` serves, for those that serve one (one round trip).

        Example::

            await cache.entries_of(["acme:5e0c…", "acme:77aa…"])   # {'acme:5e0c…': '3f2a…:9c1b…'}
        """
        if not job_ids:
            return {}
        flat = await self._entries_of(keys=[], args=job_ids)
        return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}

    async def entries(self, tenant: str) -> int:
        """How many entries the tenant's cache index holds (expired ones count until trimmed)."""
        return int(await self._redis.zcard(layout.cache_index_key(tenant)))

    # ------------------------------------------------------------------ row entries (DataFrame fan-out)
    async def rows_get(
        self, tenant: str, entry: str, digests: bytes, *, ttl_ms: int, header: bytes
    ) -> tuple[bytes, bytes, int]:
        """The stored rows among ``digests`` (8 bytes per row): their row numbers (big-endian uint32
        each), their values' bodies (``header`` stripped) concatenated, and how many.

        A read keeps the entry alive for ``ttl_ms`` more and marks it recently used.
        """
        if not digests:
            return b"", b"", 0
        keys = [layout.cache_entry_key(tenant, entry), layout.cache_index_key(tenant)]
        rows, bodies, n = await self._rows_get(
            keys=keys, args=[digests, ttl_ms, entry, int(time.time() * 1000), header]
        )
        return bytes(rows), bytes(bodies), int(n)

    async def rows_put(
        self, tenant: str, entry: str, digests: list[bytes], values: list[bytes], *, ttl_ms: int, max_rows: int
    ) -> None:
        """Store row values (one per 8-byte digest) in the entry of one call shape, for ``ttl_ms`` from now.

        An entry that would hold more than ``max_rows`` rows starts over (a bound on memory); the
        entry is listed in the tenant's cache index, so ``cache_clear`` and the size limit cover it.
        """
        if not digests:
            return
        packed = b"".join([d + _LENGTH.pack(len(v)) + v for d, v in zip(digests, values, strict=True)])
        keys = [layout.cache_entry_key(tenant, entry), layout.cache_index_key(tenant)]
        args: list[bytes | int | str] = [packed, ttl_ms, max_rows, entry, int(time.time() * 1000), len(digests)]
        await self._rows_put(keys=keys, args=args)

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
