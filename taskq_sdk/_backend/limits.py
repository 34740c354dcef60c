"""Rate and concurrency limits in the server: a token bucket and a semaphore per limit, in Lua.

Keys, per tenant (a limit spans tenants only where its owner shares it)::

    taskq:t:<tenant>:lim:<name>:def   hash: n, per_ms, burst, conc, desc, share (a declared key, set_limit;
                                      share: ',team-b,team-c,' - the tenants that may use it)
    taskq:t:<tenant>:lim:<name>:tb    hash: tat (ms: the next free rate slot, GCRA)
    taskq:t:<tenant>:lim:<name>:run   sorted set: '<job id>|<claim token>' permits, by start time
    taskq:t:<tenant>:lim:<name>:log   sorted set: admissions in the last per_ms (sliding window)
    taskq:t:<tenant>:lim:<name>:wait  sorted set: jobs waiting for a permit, first come first
    taskq:t:<tenant>:lim:<name>:st    hash: passed, waited (counters)
    taskq:t:<tenant>:lim:names        set: the names declared or used (for client.metrics())

``<name>`` is ``fn:<function>`` for ``@job(rate_limit=, max_concurrency=)`` and ``key:<key>`` for
``_limit_key=``; ``key:<owner>/<key>`` names a key another tenant shares: its keys are the owner's,
and :data:`GATE` refuses the job (``{-2, why}``) unless the owner's ``share`` field lists the job's
tenant (read from the job id, which a client cannot choose across tenants). A worker calls
:data:`GATE` once after it claimed a limited job and before it runs it. A permit is tied to the
job's claim: it counts only while ``arq:in-progress:<id>`` still holds the token it was taken
under, so it ends when the job finishes (the finish deletes the claim), retries, is released, or
when a killed worker's claim expires (``TASKQ_CLAIM_TTL``). Example::

    gate = pool.register_script(GATE)
    due, why = await gate(keys=[], args=["acme:j1", "w1#1", "arq:queue", now_ms, 1, *gate_args("score", limit, None)])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ResponseError

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


#: Lua: where a limit's keys live - its job's tenant's, or for ``key:<owner>/<key>`` (a key another
#: tenant shares) the owner's; nil for a malformed shared name (so no name reaches outside ``lim:``)
LIM_WHERE = """
local function lim_where(name, tenant)
  if not string.find(name, '/', 1, true) then return TNS .. tenant .. ':lim:', name, tenant end
  local owner, key = string.match(name, '^key:([a-z0-9][a-z0-9_-]*)/([A-Za-z0-9][A-Za-z0-9_.-]*)$')
  if not owner or string.len(owner) > 63 or string.len(key) > 100 then return nil end
  return TNS .. owner .. ':lim:', 'key:' .. key, owner
end
"""

GATE_STRIDE = 6
#: what GATE returns for a job naming a limit its tenant may not use
NOT_ALLOWED = -2
#: ARGV: id, claim_token, queue_key, now (used only where the server's TIME may not be run), cost (the
#: calls the job makes: 1, or the items of a map's chunk - each takes a rate slot), then per limit
#: (GATE_STRIDE values): name, count, per_ms, burst, conc, desc (count -1: a declared key, read
#: from its 'def' hash). Returns {wait_ms, why}:
#: {0, '', pace_ms} the job may run (its rate slots taken, a permit held; pace_ms: the step of its
#: slowest rate, '0' for none - a chunk runs its items that far apart); {-1, ''} the claim is not this
#: token's; {-2, why} the job names a limit its tenant may not use (a key not shared with it);
#: {due_ms, why} the job was put back in its queue until due_ms without counting an attempt.
#:
#: The rate is GCRA (a token bucket kept as one time, 'tat'): each start takes the next slot, one
#: every per_ms / count ms, and a job arriving when the line is short may take one of the next burst
#: slots at once. A job over the rate *reserves* its own slot (waiters use no burst: they come back
#: one step apart) and comes back when it is due; it then runs without taking another, if it
#: is at most RESERVATION_SLACK_MS late (a later one takes a fresh slot). Every admission also needs
#: room in a sliding window (a log of the last per_ms's admissions): never more than count + burst in
#: any per_ms, however late waiters come back. Waiting jobs come back in the order they queued.
#: A job of cost k takes k slots: at once if they fit in the burst, else when the line reaches its
#: first slot (a cost above the burst goes when the bucket is full and leaves it in debt: never starved,
#: and the long-run rate holds; the chunk runner spreads the items over their slots).
GATE = (
    layout.PRELUDE
    + LIM_WHERE
    + """
local id, tok, qk = ARGV[1], ARGV[2], ARGV[3]
local cost = math.max(math.floor(tonumber(ARGV[5]) or 1), 1)
-- the server's clock, not the caller's: a check that waited in a busy worker or on the network must
-- not log its admission in the past (the sliding window would then let more in); one clock for all.
-- A server user that may not run TIME (a tenant's ACL user) uses the worker's clock (ARGV[4]).
local now = tonumber(ARGV[4])
local clock = redis.pcall('TIME')
if type(clock) == 'table' and not clock.err then
  now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end
local held = holds(id, tok, qk)
if held == 0 then return {-1, ''} end
local tenant = tenant_of(id)
local base = TNS .. tenant .. ':lim:'
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
for i = 6, #ARGV, 6 do
  local l = {name = ARGV[i], n = tonumber(ARGV[i + 1]), per = tonumber(ARGV[i + 2]),
    burst = tonumber(ARGV[i + 3]), conc = tonumber(ARGV[i + 4]), desc = ARGV[i + 5]}
  local lbase, inner, owner = lim_where(l.name, tenant)
  if not lbase then return {-2, 'its limit key ' .. l.name .. ' is malformed'} end
  local share = nil
  if l.n < 0 then
    local d = redis.pcall('HMGET', lbase .. inner .. ':def', 'n', 'per_ms', 'burst', 'conc', 'desc', 'share')
    if d.err then
      if owner == tenant then return redis.error_reply(d.err) end
      -- a server user confined to its tenant's keys (per-tenant ACL users) cannot use another's limit
      return {-2, 'limit key ' .. owner .. '/' .. string.sub(inner, 5) .. ' is kept in tenant ' .. owner ..
        "'s keys, which this worker's server user may not use (per-tenant ACL users): a limit shared " ..
        "across tenants needs workers whose user may use both tenants' keys"}
    end
    l.n, l.per, l.burst, l.conc = tonumber(d[1]) or 0, tonumber(d[2]) or 0, tonumber(d[3]) or 0, tonumber(d[4]) or 0
    l.desc = d[5] or l.desc
    share = d[6]
  end
  if owner ~= tenant and not (share and string.find(share, ',' .. tenant .. ',', 1, true)) then
    -- the same words whether the key exists or not: nothing learnt about another tenant's keys
    return {-2, 'limit key ' .. owner .. '/' .. string.sub(inner, 5) .. ' is not shared with tenant ' .. tenant}
  end
  l.k = lbase .. inner
  lims[#lims + 1] = l
end
for _, l in ipairs(lims) do redis.call('SADD', base .. 'names', l.name) end
redis.call('PEXPIRE', base .. 'names', ttl)
local has_meta = redis.call('TYPE', mk)['ok'] == 'hash'
local reserved = has_meta and tonumber(redis.call('HGET', mk, 'lim_res') or '0') or 0
-- held == 2: this worker's claim lapsed while it could not reach the server (its check failed and
-- is asked again) and nobody claimed the job since: back to the queue due now, the attempt uncounted
local due, why = held == 2 and now or 0, ''
-- concurrency first: a job that cannot hold a permit takes no rate slot
for _, l in ipairs(lims) do
  if l.conc > 0 and held == 1 then
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
      l.tat = tat + cost * step
      rated = true
      local ahead = math.max(math.max(l.burst, 1) - cost, 0) * step
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
      local cap, used = l.n + math.max(l.burst, 1), redis.call('ZCARD', lk)
      if used > 0 and used + cost > cap then
        -- wait until enough admissions left the window (all of them for a cost above the window's room)
        local gone = cost > cap and used or used + cost - cap
        local oldest = tonumber(redis.call('ZRANGE', lk, gone - 1, gone - 1, 'WITHSCORES')[2]) or now
        local mine = math.ceil(oldest + l.per) + 1
        if mine > due then due, why = mine, 'waiting for rate limit ' .. l.desc end
        rated = true  -- it keeps a slot: it comes back to run at once
      end
    end
  end
end
if due > 0 then
  if why ~= '' then for _, l in ipairs(lims) do stat(l, 'waited') end end
  -- back to the queue for later: not run, not failed, and this claim's attempt does not count
  redis.call('ZADD', qk, due, id)
  redis.call('DEL', INP .. id)
  local try = tonumber(redis.pcall('GET', RTY .. id)) or 1
  if try <= 1 then redis.call('DEL', RTY .. id) else redis.call('SET', RTY .. id, try - 1, 'EX', 88400) end
  if has_meta then
    redis.call('HSET', mk, 'state', why ~= '' and 'deferred' or 'queued', 'attempt', try - 1, 'sched', due,
      'waiting', why,
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
local pace = 0
for _, l in ipairs(lims) do
  if l.n > 0 and l.per > 0 then
    pace = math.max(pace, l.per / l.n)
    for c = 1, math.min(cost, l.n + math.max(l.burst, 1)) do
      redis.call('ZADD', l.k .. ':log', now, id .. '#' .. now .. '#' .. c)
    end
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
return {0, '', tostring(pace)}
"""
)


#: ARGV: id (a job that held permits and ended), now, then the names of its limits. For each limit,
#: the first job still waiting for a permit is made due now and its queue's workers are woken.
WAKE = (
    layout.PRELUDE
    + LIM_WHERE
    + """
local id, now = ARGV[1], ARGV[2]
local tenant = tenant_of(id)
for i = 3, #ARGV do
  local lbase, inner = lim_where(ARGV[i], tenant)
  local wk = (lbase or '') .. (inner or '') .. ':wait'
  while lbase do
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


def limit_def_args(limit: Limit, desc: str, share_with: Sequence[str] = ()) -> dict[str, str]:
    """The fields of a declared limit's 'def' hash."""
    rate = limit.rate
    return {
        "n": f"{rate.count:g}" if rate else "0",
        "per_ms": str(int(rate.per_s * 1000)) if rate else "0",
        "burst": str(limit.burst),
        "conc": str(limit.concurrency),
        "desc": desc,
        "share": f",{','.join(share_with)}," if share_with else "",
    }


async def declare(pool: Any, tenant: str, key: str, limit: Limit, share_with: Sequence[str] = ()) -> None:
    """Store a limit key's numbers (and the tenants it is shared with) in the server (``client.set_limit``);
    it applies from the next job start."""
    k = limit_prefix(tenant, f"key:{key}") + ":def"
    fields = limit_def_args(limit, limit.describe(key), share_with)
    names = names_key(tenant)
    async with pool.pipeline(transaction=True) as pipe:
        pipe.delete(k)
        pipe.hset(k, mapping=fields)
        pipe.pexpire(k, 10 * 365 * 86_400_000)
        pipe.sadd(names, f"key:{key}")
        pipe.pexpire(names, 10 * 365 * 86_400_000)
        await pipe.execute()


async def shared_with(pool: Any, owner: str, key: str, tenant: str) -> bool | None:
    """Whether ``owner``'s limit key ``key`` is shared with ``tenant``; None when this connection may not read it.

    Example::

        await shared_with(pool, "acme", "openai", "team-b")   # True
    """
    try:
        share = await pool.hget(limit_prefix(owner, f"key:{key}") + ":def", "share")
    except ResponseError:  # NOPERM: a tenant's ACL user; the worker checks it anyway
        return None
    return share is not None and f",{tenant},".encode() in (share if isinstance(share, bytes) else share.encode())


async def forget(pool: Any, tenant: str, key: str) -> bool:
    """Drop a declared limit key; True if it existed."""
    await pool.srem(names_key(tenant), f"key:{key}")
    return bool(await pool.delete(limit_prefix(tenant, f"key:{key}") + ":def"))


#: ARGV: tenant. Every limit the tenant declared or used (its 'names' set): a JSON list of
#: {name, limit, running, passed, waited} - the permits held counted as GATE counts them (a permit
#: whose claim is gone does not count). One round trip for the dashboard, however many limits and
#: permits. A shared key's numbers are its owner's; where the caller may not read them (a tenant's ACL
#: user), that limit is left out instead of failing the whole answer.
SNAPSHOT = (
    layout.PRELUDE
    + LIM_WHERE
    + """
local tenant = ARGV[1]
local function try(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then return nil end
  return r
end
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', TNS .. tenant .. ':lim:names')) do
  local lbase, inner = lim_where(name, tenant)
  local k = (lbase or '') .. (inner or '')
  if lbase and (try('EXISTS', k .. ':def') or 0) + (try('EXISTS', k .. ':st') or 0) > 0 then
    local d = try('HGET', k .. ':def', 'desc')
    local st = try('HMGET', k .. ':st', 'desc', 'passed', 'waited') or {}
    local held = 0
    for _, m in ipairs(try('ZRANGE', k .. ':run', 0, -1) or {}) do
      local mid, mtok = string.match(m, '^(.*)|([^|]*)$')
      if mid and try('GET', INP .. mid) == mtok then held = held + 1 end
    end
    out[#out + 1] = {name = name, limit = (d or st[1] or ''), running = held,
      passed = tonumber(st[2]) or 0, waited = tonumber(st[3]) or 0}
  end
end
if #out == 0 then return '[]' end
return cjson.encode(out)
"""
)


async def snapshot(pool: Any, tenant: str) -> dict[str, dict[str, Any]]:
    """Every limit of a tenant that was used or declared: its spec, permits held, counters (one round trip).

    Example::

        await snapshot(pool, "default")
        # {'key:openai': {'limit': 'openai: 50/s', 'running': 2, 'passed': 120, 'waited': 31}}
    """
    from redis.asyncio.cluster import RedisCluster

    if isinstance(pool, RedisCluster):
        return {}  # limits are not offered on a Redis Cluster (store.refuse_on_cluster): none to show
    raw = await pool.register_script(SNAPSHOT)(keys=[], args=[tenant])  # EVALSHA: the script is sent once
    rows = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    return {
        str(r["name"]): {
            "limit": str(r["limit"]),
            "running": int(r["running"]),
            "passed": int(r["passed"]),
            "waited": int(r["waited"]),
        }
        for r in sorted(rows, key=lambda r: str(r["name"]))
    }


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
