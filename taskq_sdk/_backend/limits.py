"""Rate and concurrency limits in the server: a token bucket and a semaphore per limit, in Lua.

Keys, per tenant (a limit never spans tenants)::

    taskq:t:<tenant>:lim:<name>:def   hash: n, per_ms, burst, conc, desc (a declared key, set_limit)
    taskq:t:<tenant>:lim:<name>:tb    hash: tat (ms: the next free rate slot, GCRA)
    taskq:t:<tenant>:lim:<name>:run   sorted set: '<job id>|<claim token>' permits, by start time
    taskq:t:<tenant>:lim:<name>:log   sorted set: admissions in the last per_ms (sliding window)
    taskq:t:<tenant>:lim:<name>:wait  sorted set: jobs waiting for a permit, first come first
    taskq:t:<tenant>:lim:<name>:st    hash: passed, waited (counters)
    taskq:t:<tenant>:lim:names        set: the names declared or used (for client.metrics())

``<name>`` is ``fn:<function>`` for ``@job(rate_limit=, max_concurrency=)`` and ``key:<key>`` for
``_limit_key=``. A worker calls :data:`GATE` once after it claimed a limited job and before it runs
it. A permit is tied to the job's claim: it counts only while ``arq:in-progress:<id>`` still holds
the token it was taken under, so it ends when the job finishes (the finish deletes the claim),
retries, is released, or when a killed worker's claim expires (``TASKQ_CLAIM_TTL``). Example::

    gate = pool.register_script(GATE)
    due, why = await gate(keys=[], args=["acme:j1", "w1#1", "arq:queue", now_ms, *gate_args("score", limit, None)])
"""

from __future__ import annotations

from typing import Any

from ..limits import Limit
from . import layout

#: a job waiting for a concurrency permit is woken when a permit is given back (:data:`WAKE`), and
#: looks again after this long in any case (a wake-up lost with a killed worker)
CONCURRENCY_POLL_MS = 1000
#: how late a job that reserved a rate slot may come back and still use it (ms)
RESERVATION_SLACK_MS = 100
#: how long the keys of an unused limit stay (ms)
LIMIT_KEY_TTL_MS = 7 * 86_400_000


def limit_prefix(tenant: str, name: str) -> str:
    """The common prefix of a limit's keys.

    Example::

        limit_prefix("acme", "key:openai")   # 'taskq:t:acme:lim:key:openai'
    """
    return f"{layout.TENANT_NS}{tenant}:lim:{name}"


def names_key(tenant: str) -> str:
    """The set of a tenant's limit names that were declared or used (what metrics() lists)."""
    return f"{layout.TENANT_NS}{tenant}:lim:names"


def fn_limit(function: str, limit: Limit) -> list[Any]:
    """The GATE arguments of a per-function limit (``@job(rate_limit=..., max_concurrency=...)``)."""
    rate = limit.rate
    return [
        f"fn:{function}",
        rate.count if rate else 0,
        int(rate.per_s * 1000) if rate else 0,
        limit.burst,
        limit.concurrency,
        limit.describe(function),
    ]


def key_limit(key: str) -> list[Any]:
    """The GATE arguments of a declared limit key: its numbers are read in the server."""
    return [f"key:{key}", -1, 0, 0, 0, key]


GATE_STRIDE = 6
#: ARGV: id, claim_token, queue_key, now, then per limit (GATE_STRIDE values): name, count, per_ms,
#: burst, conc, desc (count -1: a declared key, read from its 'def' hash). Returns {wait_ms, why}:
#: {0, ''} the job may run (its rate slot taken, a permit held); {-1, ''} the claim is not this
#: token's; {due_ms, why} the job was put back in its queue until due_ms without counting an attempt.
#:
#: The rate is GCRA (a token bucket kept as one time, 'tat'): each start takes the next slot, one
#: every per_ms / count ms, and a job arriving when the line is short may take one of the next burst
#: slots at once. A job over the rate *reserves* its own slot (waiters use no burst: they come back
#: one step apart) and comes back when it is due; it then runs without taking another, if it
#: is at most RESERVATION_SLACK_MS late (a later one takes a fresh slot). Every admission also needs
#: room in a sliding window (a log of the last per_ms's admissions): never more than count + burst in
#: any per_ms, however late waiters come back. Waiting jobs come back in the order they queued.
GATE = (
    layout.PRELUDE
    + """
local id, tok, qk, now = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if holds(id, tok, qk) == 0 then return {-1, ''} end
local base = TNS .. tenant_of(id) .. ':lim:'
local mk = meta_key(id)
local ttl = 604800000
local slack = """
    + str(RESERVATION_SLACK_MS)
    + """
-- a limit's counters (passed / waited) and its description, for client.metrics()
local function stat(l, field)
  redis.call('HINCRBY', l.k .. ':st', field, 1)
  redis.call('HSET', l.k .. ':st', 'desc', l.desc)
  redis.call('PEXPIRE', l.k .. ':st', ttl)
end
local lims = {}
for i = 5, #ARGV, 6 do
  local l = {name = ARGV[i], n = tonumber(ARGV[i + 1]), per = tonumber(ARGV[i + 2]),
    burst = tonumber(ARGV[i + 3]), conc = tonumber(ARGV[i + 4]), desc = ARGV[i + 5]}
  if l.n < 0 then
    local d = redis.call('HMGET', base .. l.name .. ':def', 'n', 'per_ms', 'burst', 'conc', 'desc')
    l.n, l.per, l.burst, l.conc = tonumber(d[1]) or 0, tonumber(d[2]) or 0, tonumber(d[3]) or 0, tonumber(d[4]) or 0
    l.desc = d[5] or l.desc
  end
  l.k = base .. l.name
  lims[#lims + 1] = l
  redis.call('SADD', base .. 'names', l.name)
end
redis.call('PEXPIRE', base .. 'names', ttl)
local has_meta = redis.call('TYPE', mk)['ok'] == 'hash'
local reserved = has_meta and tonumber(redis.call('HGET', mk, 'lim_res') or '0') or 0
local due, why = 0, ''
-- concurrency first: a job that cannot hold a permit takes no rate slot
for _, l in ipairs(lims) do
  if l.conc > 0 then
    local rk = l.k .. ':run'
    for _, m in ipairs(redis.call('ZRANGE', rk, 0, -1)) do
      local mid, mtok = string.match(m, '^(.*)|([^|]*)$')
      if not mid or redis.pcall('GET', INP .. mid) ~= mtok then redis.call('ZREM', rk, m) end
    end
    if redis.call('ZCARD', rk) >= l.conc then
      redis.call('ZADD', l.k .. ':wait', 'NX', now, id)
      redis.call('PEXPIRE', l.k .. ':wait', ttl)
      due = math.max(due, now + """
    + str(CONCURRENCY_POLL_MS)
    + """)
      why = 'waiting for concurrency limit ' .. l.desc
    end
  end
end
local rated = false
if due == 0 and not (reserved > 0 and now <= reserved + slack) then
  for _, l in ipairs(lims) do
    if l.n > 0 and l.per > 0 then
      local step = l.per / l.n
      local tat = math.max(tonumber(redis.call('HGET', l.k .. ':tb', 'tat') or '0') or 0, now)
      l.tat = tat + step
      rated = true
      local ahead = (math.max(l.burst, 1) - 1) * step
      if tat - now > ahead then
        local mine = math.ceil(tat)  -- its own slot: waiters use no burst, they come back one step apart
        if mine > due then due, why = mine, 'waiting for rate limit ' .. l.desc end
      end
    end
  end
  -- the slot is this job's either way: now, or when it comes back
  for _, l in ipairs(lims) do
    if l.tat then
      redis.call('HSET', l.k .. ':tb', 'tat', tostring(l.tat))
      redis.call('PEXPIRE', l.k .. ':tb', ttl)
    end
  end
end
-- a job admitted by its slot (now, or reserved and back a little late) also needs room in the
-- sliding window: at most count + burst admissions in any per_ms, however late waiters came back
if due == 0 then
  for _, l in ipairs(lims) do
    if l.n > 0 and l.per > 0 then
      local lk = l.k .. ':log'
      redis.call('ZREMRANGEBYSCORE', lk, '-inf', now - l.per)
      if redis.call('ZCARD', lk) >= l.n + math.max(l.burst, 1) then
        local oldest = tonumber(redis.call('ZRANGE', lk, 0, 0, 'WITHSCORES')[2]) or now
        local mine = math.ceil(oldest + l.per) + 1
        if mine > due then due, why = mine, 'waiting for rate limit ' .. l.desc end
        rated = true  -- it keeps a slot: it comes back to run at once
      end
    end
  end
end
if due > 0 then
  for _, l in ipairs(lims) do stat(l, 'waited') end
  -- back to the queue for later: not run, not failed, and this claim's attempt does not count
  redis.call('ZADD', qk, due, id)
  redis.call('DEL', INP .. id)
  local try = tonumber(redis.pcall('GET', RTY .. id)) or 1
  if try <= 1 then redis.call('DEL', RTY .. id) else redis.call('SET', RTY .. id, try - 1, 'EX', 88400) end
  if has_meta then
    redis.call('HSET', mk, 'state', 'deferred', 'attempt', try - 1, 'sched', due, 'waiting', why,
      'lim_res', rated and due or 0)
    redis.call('HDEL', mk, 'started', 'worker')
    if try <= 1 then
      local batch = redis.call('HGET', mk, 'batch')
      if batch and batch ~= '' then
        redis.call('HINCRBY', TNS .. tenant_of(id) .. ':batch:' .. batch .. ':n', 'started', -1)
      end
    end
    notify(id, mk, cjson.encode({e = 'released', why = why, n = due}))
  end
  return {due, why}
end
for _, l in ipairs(lims) do
  if l.n > 0 and l.per > 0 then
    redis.call('ZADD', l.k .. ':log', now, id .. '#' .. now)
    redis.call('PEXPIRE', l.k .. ':log', l.per + 1000)
  end
  if l.conc > 0 then
    redis.call('ZADD', l.k .. ':run', now, id .. '|' .. tok)
    redis.call('PEXPIRE', l.k .. ':run', ttl)
    redis.call('ZREM', l.k .. ':wait', id)
  end
  stat(l, 'passed')
end
if has_meta then redis.call('HDEL', mk, 'waiting', 'lim_res') end
return {0, ''}
"""
)


#: ARGV: id (a job that held permits and ended), now, then the names of its limits. For each limit,
#: the first job still waiting for a permit is made due now and its queue's workers are woken.
WAKE = (
    layout.PRELUDE
    + """
local id, now = ARGV[1], ARGV[2]
local base = TNS .. tenant_of(id) .. ':lim:'
for i = 3, #ARGV do
  local wk = base .. ARGV[i] .. ':wait'
  while true do
    local first = redis.call('ZRANGE', wk, 0, 0)[1]
    if not first then break end
    redis.call('ZREM', wk, first)
    local qk = redis.pcall('HGET', meta_key(first), 'queue')
    if type(qk) == 'string' and redis.call('EXISTS', INP .. first) == 0
        and redis.call('ZADD', qk, 'XX', 'CH', now, first) == 1 then
      redis.call('PUBLISH', 'taskq:wake:' .. queue_of(qk), '{"e":"wake"}')
      break
    end
  end
end
return 1
"""
)


def limit_def_args(limit: Limit, desc: str) -> dict[str, str]:
    """The fields of a declared limit's 'def' hash."""
    rate = limit.rate
    return {
        "n": f"{rate.count:g}" if rate else "0",
        "per_ms": str(int(rate.per_s * 1000)) if rate else "0",
        "burst": str(limit.burst),
        "conc": str(limit.concurrency),
        "desc": desc,
    }


async def declare(pool: Any, tenant: str, key: str, limit: Limit) -> None:
    """Store a limit key's numbers in the server (``client.set_limit``); it applies from the next job start."""
    k = limit_prefix(tenant, f"key:{key}") + ":def"
    fields = limit_def_args(limit, limit.describe(key))
    names = names_key(tenant)
    async with pool.pipeline(transaction=True) as pipe:
        pipe.delete(k)
        pipe.hset(k, mapping=fields)
        pipe.pexpire(k, 10 * 365 * 86_400_000)
        pipe.sadd(names, f"key:{key}")
        pipe.pexpire(names, 10 * 365 * 86_400_000)
        await pipe.execute()


async def forget(pool: Any, tenant: str, key: str) -> bool:
    """Drop a declared limit key; True if it existed."""
    await pool.srem(names_key(tenant), f"key:{key}")
    return bool(await pool.delete(limit_prefix(tenant, f"key:{key}") + ":def"))


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


async def snapshot(pool: Any, tenant: str) -> dict[str, dict[str, Any]]:
    """Every limit of a tenant that was used or declared: its spec, permits held, counters.

    Example::

        await snapshot(pool, "default")
        # {'key:openai': {'limit': 'openai: 50/s', 'running': 2, 'passed': 120, 'waited': 31}}
    """
    prefix = limit_prefix(tenant, "")
    names = {_s(n) for n in await pool.smembers(names_key(tenant))}
    out: dict[str, dict[str, Any]] = {}
    for name in sorted(names):
        base = prefix + name
        async with pool.pipeline(transaction=False) as pipe:
            pipe.hgetall(base + ":def")
            pipe.hgetall(base + ":st")
            pipe.zrange(base + ":run", 0, -1)
            d, st, run = await pipe.execute()
        d = {_s(k): _s(v) for k, v in (d or {}).items()}
        st = {_s(k): _s(v) for k, v in (st or {}).items()}
        if not d and not st:
            continue
        held = 0
        for m in run or []:
            mid, _, mtok = _s(m).rpartition("|")
            if mid and _s(await pool.get(layout.in_progress_key(mid)) or b"") == mtok:
                held += 1
        out[name] = {
            "limit": d.get("desc") or st.get("desc", ""),
            "running": held,
            "passed": int(st.get("passed", 0)),
            "waited": int(st.get("waited", 0)),
        }
    return out


def gate_args(function: str, limit: Limit | None, limit_key: str | None) -> list[Any]:
    """The GATE arguments of a job's limits (its function's, its ``_limit_key``'s); [] for none.

    Example::

        gate_args("score", None, "openai")   # ['key:openai', -1, 0, 0, 0, 'openai']
    """
    args: list[Any] = []
    if limit is not None:
        args += fn_limit(function, limit)
    if limit_key:
        args += key_limit(limit_key)
    return args


def permit_names(function: str, limit: Limit | None, limit_key: str | None) -> list[str]:
    """The limits of a job that may hold concurrency permits (a declared key may): whose waiters
    to wake when the job ends.

    Example::

        permit_names("score", Limit.of(rate="5/s"), "openai")   # ['key:openai']
    """
    names = [f"fn:{function}"] if limit is not None and limit.concurrency else []
    return names + ([f"key:{limit_key}"] if limit_key else [])
