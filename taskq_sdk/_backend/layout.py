"""The key layout in Redis and the Lua scripts that change it atomically.

arq's own keys are kept as arq writes them, so that plain arq clients and the stock ``arq``
worker interoperate: ``arq:job:<id>`` (the job), ``arq:queue[:<name>]`` (a sorted set scored by
start time), ``arq:in-progress:<id>`` (the claim), ``arq:retry:<id>`` (the attempt counter),
``arq:result:<id>`` and ``arq:abort``. taskq adds, per tenant, under a namespace of their own
(``taskq:t:``) that no shared key uses, so that no tenant name - ``wake``, ``control``, ``ready``,
``registry`` - can make a tenant's keys or ACL patterns cover the keys every tenant shares::

    taskq:t:<tenant>:job:<id>      hash: function, workspace, state, attempt, worker, progress, ...
                                   (a queued job's record rides in its arq:job key instead, until a
                                   claim, a cancel or a dependent needs the hash: see record_lua)
    taskq:t:<tenant>:ev:<id>       pub/sub channel: started / progress / retrying / done events
    taskq:t:<tenant>:logs:<id>     list: captured log lines and prints (capped)
    taskq:t:<tenant>:idx:<ws>      sorted set of job ids by enqueue time (listings)
    taskq:t:<tenant>:wss           set of the workspaces with such an index

and, per queue: ``taskq:wake:<queue>`` (worker wake-up channel), ``taskq:wake:<queue>:<worker>``
(jobs handed straight to an idle worker), ``taskq:ready:<queue>`` (idle workers that take such
jobs), ``taskq:control:<queue>`` (cancel requests), ``taskq:workers`` / ``taskq:worker:<id>``
(liveness), ``taskq:registry:<queue>`` (function names served). Every key gets a TTL. The Python
builders and the Lua prelude below are the one place this layout is written down::

    meta_key("acme:r1")   # 'taskq:t:acme:job:acme:r1'
"""

from __future__ import annotations

import sys
from types import ModuleType

from .._names import DEFAULT_QUEUE, tenant_of
from .record_lua import RECORD_LUA
from .submit_lua import SUBMIT_BODY

# arq's own key names (``arq.constants``), spelled here so that clients never import arq: importing
# any arq module loads ``arq.worker``. ``tests/test_arq_compat.py`` checks they still match arq's.
job_key_prefix = "arq:job:"
result_key_prefix = "arq:result:"
in_progress_key_prefix = "arq:in-progress:"
retry_key_prefix = "arq:retry:"
default_queue_name = "arq:queue"
abort_jobs_ss = "arq:abort"

ABORT_SET = abort_jobs_ss
#: every per-tenant key and channel starts with ``TENANT_NS + tenant + ":"``; shared ones never do
TENANT_NS = "taskq:t:"
WORKERS_ZSET = "taskq:workers"
#: the capped list of monitoring snapshots, newest first (see :mod:`taskq_sdk.health`)
HISTORY_KEY = "taskq:monitoring:history"


def key_tenant(key: str) -> str | None:
    """The tenant a per-tenant key or channel belongs to, or None for a shared one.

    Example::

        key_tenant("taskq:t:acme:rc:c1")   # 'acme'
    """
    if not key.startswith(TENANT_NS):
        return None
    tenant, sep, _ = key[len(TENANT_NS) :].partition(":")
    return tenant if sep else None


def queue_key(queue: str) -> str:
    """The arq sorted set behind a taskq queue name (``default`` is arq's ``arq:queue``)."""
    return default_queue_name if queue == DEFAULT_QUEUE else f"{default_queue_name}:{queue}"


def queue_name(key: str) -> str:
    """The taskq queue name of an arq queue key (inverse of :func:`queue_key`)."""
    if key == default_queue_name:
        return DEFAULT_QUEUE
    prefix = default_queue_name + ":"
    return key[len(prefix) :] if key.startswith(prefix) else key


def job_key(job_id: str) -> str:
    return job_key_prefix + job_id


def result_key(job_id: str) -> str:
    return result_key_prefix + job_id


def in_progress_key(job_id: str) -> str:
    return in_progress_key_prefix + job_id


def retry_key(job_id: str) -> str:
    return retry_key_prefix + job_id


def meta_key(job_id: str) -> str:
    return f"{TENANT_NS}{tenant_of(job_id)}:job:{job_id}"


def job_channel(job_id: str) -> str:
    return f"{TENANT_NS}{tenant_of(job_id)}:ev:{job_id}"


def logs_key(job_id: str) -> str:
    return f"{TENANT_NS}{tenant_of(job_id)}:logs:{job_id}"


def batch_counts_key(tenant: str, batch_id: str) -> str:
    """Hash of a batch's job counts (started, complete, failed, cancelled, retried), kept 7 days."""
    return f"{TENANT_NS}{tenant}:batch:{batch_id}:n"


def item_seconds_key(tenant: str) -> str:
    """Hash: function -> ``"<seconds per item>:<ms written>:<items>"`` of its last chunk (read by chunk_size="auto")."""
    return f"{TENANT_NS}{tenant}:itemsec"


def batch_channel(tenant: str, batch_id: str) -> str:
    """Channel where each job of a batch announces started / complete / failed / cancelled / retried."""
    return f"{TENANT_NS}{tenant}:bev:{batch_id}"


def index_key(tenant: str, workspace: str | None = None) -> str:
    """A workspace's listing index; ``workspace=None`` names the tenant-wide index that earlier versions
    also wrote (no longer written; a tenant-wide listing still reads it until it expires)."""
    return f"{TENANT_NS}{tenant}:idx" if workspace is None else f"{TENANT_NS}{tenant}:idx:{workspace}"


def workspaces_key(tenant: str) -> str:
    """Set of the workspaces with a listing index (a tenant-wide listing merges their indexes)."""
    return f"{TENANT_NS}{tenant}:wss"


def wake_channel(queue: str) -> str:
    return f"taskq:wake:{queue}"


def push_channel(queue: str, worker_id: str) -> str:
    """Where a submit hands a job straight to one idle worker of ``queue`` (no claim round trip)."""
    return f"taskq:wake:{queue}:{worker_id}"


def ready_key(queue: str) -> str:
    """Sorted set of the idle workers of ``queue`` that take handed-over jobs: member
    ``<claim_ttl_ms>|<generation>|<worker_id>``, scored by the time the entry lapses (ms)."""
    return f"taskq:ready:{queue}"


#: first bytes of a job handed to a worker on its push channel (then a msgpack claim row)
PUSH_MAGIC = b"\xc1TP"


def reply_channel(tenant: str, client_id: str) -> str:
    """A client's own channel: the state events of the jobs it submitted, so it needs no
    subscription per job (each message is ``REPLY_MAGIC + job_id + b"\\0" + event``)."""
    return f"{TENANT_NS}{tenant}:rc:{client_id}"


REPLY_MAGIC = b"\xc1TR"


def control_channel(queue: str) -> str:
    """Where cancel requests for a queue's running jobs are announced to its workers."""
    return f"taskq:control:{queue}"


def abort_key(queue: str) -> str:
    """The set of cancel requests of a queue (arq's own ``arq:abort`` for the default queue)."""
    key = queue_key(queue)
    return abort_jobs_ss if key == default_queue_name else f"{key}:abort"


def worker_key(worker_id: str) -> str:
    return f"taskq:worker:{worker_id}"


def registry_key(queue: str) -> str:
    return f"taskq:registry:{queue}"


#: a queue's registry of served names lives this long after the last worker or cluster announced one
REGISTRY_TTL_MS = 30 * 86_400_000


def signatures_key(queue: str) -> str:
    """A queue's published job signatures: function name -> its keyword parameters (:func:`encode_params`)."""
    return f"taskq:signatures:{queue}"


#: in a queue's signatures hash, ``LIMITED + <function>`` marks a function with ``@job(rate_limit=,
#: max_concurrency=)``: a map by name then makes one job per item (no function name starts with '!')
LIMITED = "!limited:"

#: the published parameters of a function that takes ``**kwargs`` (any keyword goes)
ANY_KEYWORD = "**"


def encode_params(params: frozenset[str] | None) -> str:
    """A function's keyword parameter names as published (``None``: it takes ``**kwargs``)."""
    return ANY_KEYWORD if params is None else ",".join(sorted(params))


def decode_params(text: str) -> frozenset[str] | None:
    """The inverse of :func:`encode_params`."""
    if text == ANY_KEYWORD:
        return None
    return frozenset(p for p in text.split(",") if p)


def hooks_flag(tenant: str) -> str:
    """Set while a tenant has registered webhooks; workers skip the lookups for tenants without one."""
    return f"{TENANT_NS}{tenant}:hooks"


def hook_key(job_id: str) -> str:
    """The hash holding a job's webhook URL and delivery outcome."""
    return f"{TENANT_NS}{tenant_of(job_id)}:hook:{job_id}"


def schedule_key(name: str) -> str:
    """The newest claimed slot (epoch ms) of a cron schedule (see :mod:`taskq_sdk.scheduler`)."""
    return f"taskq:sched:{name}"


def tenant_acl_patterns(tenant: str, queue: str) -> tuple[list[str], list[str]]:
    """The key and channel patterns a per-tenant server user may touch: its own, its queue's, liveness.

    Example::

        keys, channels = tenant_acl_patterns("acme", "acme")
    """
    keys = [
        queue_key(queue),
        abort_key(queue),
        f"{job_key_prefix}{tenant}:*",
        f"{result_key_prefix}{tenant}:*",
        f"{in_progress_key_prefix}{tenant}:*",
        f"{retry_key_prefix}{tenant}:*",
        f"{TENANT_NS}{tenant}:*",
        registry_key(queue),
        signatures_key(queue),
        ready_key(queue),
        WORKERS_ZSET,
        worker_key("*"),
    ]
    channels = [f"{TENANT_NS}{tenant}:*", wake_channel(queue), push_channel(queue, "*"), control_channel(queue)]
    return keys, channels


# ----------------------------------------------------------------------------- Lua
PRELUDE = f"""
local JOB, RES, INP, RTY, ABORT = '{job_key_prefix}', '{result_key_prefix}', '{in_progress_key_prefix}', \
'{retry_key_prefix}', '{abort_jobs_ss}'
local TNS = '{TENANT_NS}'
local PUSH_MAGIC = '\\193TP'
local REPLY_MAGIC = '\\193TR'
local function tenant_of(id)
  if not string.find(id, ':', 1, true) then return 'default' end
  local t = string.match(id, '^([a-z0-9][a-z0-9_-]*):')
  if t and string.len(t) <= 63 then return t end
  return 'default'
end
local function meta_key(id) return TNS .. tenant_of(id) .. ':job:' .. id end
-- cancel requests are per queue (arq's own 'arq:abort' for the default queue), so that a tenant
-- with its own queue and ACL user never shares a writable set with another tenant
local function abort_key(qk) if qk == 'arq:queue' then return ABORT end return qk .. ':abort' end
local function queue_of(qk) if qk == 'arq:queue' then return 'default' end return string.sub(qk, 11) end
local function chan(id) return TNS .. tenant_of(id) .. ':ev:' .. id end
-- a state event: on the job's channel, and on the reply channel of the client that submitted it
local function notify(id, mk, payload)
  redis.call('PUBLISH', chan(id), payload)
  local rc = redis.call('HGET', mk, 'rc')
  if rc and rc ~= '' then
    redis.call('PUBLISH', TNS .. tenant_of(id) .. ':rc:' .. rc, REPLY_MAGIC .. id .. '\\0' .. payload)
  end
end
local function logs_key(id) return TNS .. tenant_of(id) .. ':logs:' .. id end
{RECORD_LUA}-- whether claim token '<worker>#<attempt>' holds job id: 1 if the claim is this token, or another
-- claim of the same worker (it claimed the job again while its copy ran on: that copy is the only
-- one); 2 if this worker's claim lapsed and nobody claimed the job since (its attempt counter is
-- the token's, the job's meta names this worker) and the job is unfinished (still in queue qk,
-- when given); else 0 (another worker has it)
local function holds(id, tok, qk)
  local holder = redis.pcall('GET', INP .. id)
  if holder == tok then return 1 end
  local w, try = string.match(tok, '^(.*)#(%d+)$')
  if type(holder) == 'string' then
    if w and string.sub(holder, 1, string.len(w) + 1) == w .. '#' then return 1 end
    return 0
  end
  if holder or not try or try == '0' or redis.pcall('GET', RTY .. id) ~= try then return 0 end
  -- and the lapsed claim was this worker's (a token naming another worker proves nothing)
  if redis.pcall('HGET', meta_key(id), 'worker') ~= w then return 0 end
  if redis.call('EXISTS', RES .. id) == 1 or redis.call('EXISTS', JOB .. id) == 0 then return 0 end
  if qk and redis.call('ZSCORE', qk, id) == false then return 0 end
  return 2
end
-- whether a job's meta key is a hash; a key of another type (corrupt) is dropped
local function meta_hash(mk)
  local t = redis.call('TYPE', mk)['ok']
  if t == 'hash' then return true end
  if t ~= 'none' then redis.call('DEL', mk) end
  return false
end
-- per-batch counters and event channel, for jobs submitted as part of a batch
local function batch_count(id, batch, field, now)
  if not batch or batch == '' then return end
  local t = tenant_of(id)
  local k = TNS .. t .. ':batch:' .. batch .. ':n'
  redis.call('HINCRBY', k, field, 1)
  if redis.call('PTTL', k) < 0 then redis.call('PEXPIRE', k, 604800000) end
  redis.call('PUBLISH', TNS .. t .. ':bev:' .. batch, cjson.encode({{e = field, id = id, t = now}}))
end
-- job metrics: all-time and per-minute hashes per tenant, fields '<ws>|<fn>|<counter>';
-- durations also land in log2 buckets (8 per doubling) for percentiles
local function count(tenant, ws, fn, now, field, dur, n)
  n = n or 1
  local prefix = TNS .. tenant .. ':m:'
  local all, minute = prefix .. 'all', prefix .. math.floor(now / 60000)
  local f = ws .. '|' .. fn .. '|'
  redis.call('HINCRBY', all, f .. field, n)
  local first = redis.call('HINCRBY', minute, f .. field, n) == n
  if dur then
    local h = f .. 'h' .. math.floor(math.log(dur + 1) / math.log(2) * 8)
    redis.call('HINCRBY', all, f .. 'dur', dur)
    redis.call('HINCRBY', all, h, 1)
    redis.call('HINCRBY', minute, f .. 'dur', dur)
    redis.call('HINCRBY', minute, h, 1)
  end
  -- lifetimes set when a counter first appears in a minute's hash (a new key always starts so):
  -- the all-time hash's 30 days then slide once a minute of activity, not on every count
  if first then
    redis.call('PEXPIRE', all, 2592000000)
    redis.call('PEXPIRE', minute, 7200000)
  end
end
"""


#: metrics hashes: all-time, and one per minute (kept two hours) - fields ``<ws>|<fn>|<counter>``
def metrics_key(tenant: str, minute: int | None = None) -> str:
    return f"{TENANT_NS}{tenant}:m:all" if minute is None else f"{TENANT_NS}{tenant}:m:{minute}"


#: buckets per doubling of the duration histogram (bucket b holds durations ~2**(b/8) - 1 ms)
HISTOGRAM_BUCKETS_PER_DOUBLING = 8

SUBMIT_STRIDE = 14
SUBMIT_HEADER = 6
#: ARGV: now, wake_channel, ready_key, push_channel_prefix, push_queue_key ('' for these three:
#: never hand over), reply_to (the submitting client's id, '' for none), then per job
#: (SUBMIT_STRIDE values): id, job_bytes, score, job_ttl_ms, meta_ttl_ms, queue_key, workspace,
#: function, timeout, max_tries, state, retry_of, batch, args_repr.  Returns 1 (created) or 0 (id
#: taken) per job. The job's state events also go to reply_to's reply channel (see ``notify``).
#:
#: A created job that is due now, on the push queue, is handed straight to an idle worker from the
#: ready set when there is one: claimed here for it (as CLAIM would) and published on its push
#: channel, in the order of the rows; the wake-up is published only for jobs left in the queue.
SUBMIT = PRELUDE + SUBMIT_BODY

#: ARGV: queue_key, now, limit, claim_ttl_ms, worker_id, scan_max, ready_key, held_entry, new_entry,
#: entry_lapses_at.  Returns {claimed, next_score, ready}; each claimed row is
#: {id, score, job_bytes|nil, attempt, aborted, {timeout, max_tries, ws, batch, enq}|nil, corrupt|nil}.
#: The claim's value is its fencing token ``<worker_id>#<attempt>`` (see :func:`claim_token`).
#:
#: A job whose keys are corrupt (a wrong type, a counter that is not a number) does not stop the
#: claim: it is claimed with attempt 0 and its row carries the server's error as ``corrupt``, for
#: the worker to record it as failed.
#:
#: Ready-set bookkeeping (ready_key '' skips it): ``held_entry`` is the entry the worker believes it
#: has; if a submit took it meanwhile, a handed-over job is on its way and takes one of ``limit``.
#: ``new_entry`` is added when nothing was claimed and no job is on its way (the worker is idle).
#: ``ready`` is 1 (new_entry added), 0 (no entry), or -1 (held_entry was taken: a job is coming).
CLAIM = (
    PRELUDE
    + """
local qk, now, limit, ttl, wid = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5]
local scan_max = tonumber(ARGV[6])
local rk, held, fresh = ARGV[7], ARGV[8], ARGV[9]
local ready = 0
if rk ~= '' and held ~= '' and redis.call('ZREM', rk, held) == 0 then
  ready = -1
  limit = limit - 1
end
local function claim_one(id, score)
  local try = redis.call('INCR', RTY .. id)
  redis.call('SET', INP .. id, wid .. '#' .. try, 'PX', ttl)
  local job = redis.call('GET', JOB .. id)
  redis.call('EXPIRE', RTY .. id, 88400)
  local aborted = redis.call('ZREM', abort_key(qk), id)
  local mk = meta_key(id)
  local meta = false
  -- a queued job's record becomes its hash here, written as started in the same HSET
  local m = materialize(id, 'arq:queue', job, {'attempt', try, 'worker', wid, 'started', now})
  if type(m) == 'table' then
    local f = {}
    for k = 1, #m, 2 do f[m[k]] = m[k + 1] end
    meta = {f.timeout or '', f.max_tries or '', f.ws, f.batch or '', f.enq}
  elseif m then
    meta = redis.call('HMGET', mk, 'timeout', 'max_tries', 'ws', 'batch', 'enq')
    for k = 1, 5 do if not meta[k] then meta[k] = '' end end
    redis.call('HSET', mk, 'state', 'in_progress', 'attempt', try, 'worker', wid, 'started', now)
  end
  if meta then  -- a job with taskq metadata (record or hash) starts: its batch counts it, its waiters hear it
    if try == 1 then pcall(batch_count, id, meta[4], 'started', now) end
    redis.call('PUBLISH', chan(id), cjson.encode({e = 'started', a = try, w = wid}))
  end
  return {id, score, job, try, aborted, meta}
end
local out = {}
local offset = 0
local page = 64
while #out < limit and offset < scan_max do
  local ids = redis.call('ZRANGEBYSCORE', qk, '-inf', now, 'WITHSCORES', 'LIMIT', offset, page)
  if #ids == 0 then break end
  for j = 1, #ids, 2 do
    local id = ids[j]
    local holder = redis.pcall('GET', INP .. id)
    local corrupt = type(holder) == 'table' and holder.err or nil
    if not holder or corrupt then
      local ok, row = true, nil
      if not corrupt then ok, row = pcall(claim_one, id, ids[j + 1]) end
      if not ok then corrupt = tostring(row) end
      if corrupt then
        -- held (attempt 0) so that this worker alone records it as failed
        redis.call('SET', INP .. id, wid .. '#0', 'PX', ttl)
        row = {id, ids[j + 1], false, 0, 0, false, corrupt}
      end
      out[#out + 1] = row
      if #out >= limit then break end
    end
  end
  offset = offset + page
end
local nxt = redis.call('ZRANGEBYSCORE', qk, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if rk ~= '' and fresh ~= '' and ready == 0 and #out == 0 then
  redis.call('ZADD', rk, ARGV[10], fresh)
  redis.call('PEXPIRE', rk, 86400000)
  ready = 1
end
return {out, nxt[2] or false, ready}
"""
)


# ----------------------------------------------------------------------------- input-hash result cache
#: per tenant: ``cache:<entry>`` (the id of the job whose result a call's inputs map to),
#: ``cj:<job id>`` (marks a job that runs for a cache entry: ``<entry>|<ttl_ms>|<claimed_ms>``) and
#: ``cache-index`` (sorted set of entries by last use: size limit, ``cache_clear``). An entry is
#: ``<function digest>:<inputs digest>`` (see :mod:`taskq_sdk.caching`).
def cache_entry_key(tenant: str, entry: str) -> str:
    return f"{TENANT_NS}{tenant}:cache:{entry}"


def cache_job_key(job_id: str) -> str:
    return f"{TENANT_NS}{tenant_of(job_id)}:cj:{job_id}"


def cache_index_key(tenant: str) -> str:
    return f"{TENANT_NS}{tenant}:cache-index"


#: Lua run when a job finishes ('done'): a job marked as a cache entry's run keeps its result (and
#: its record) for the entry's TTL if it completed; any other ending drops the entry, so a failed
#: or cancelled run is never served from the cache.
CACHE_SETTLE = """
local function cache_settle(id, state)
  local t = tenant_of(id)
  local ck = TNS .. t .. ':cj:' .. id
  local v = redis.call('GET', ck)
  if not v then return end
  redis.call('DEL', ck)
  local entry, ttl = string.match(v, '^([^|]+)|(%d+)')
  if not entry then return end
  ttl = tonumber(ttl)
  local pk = TNS .. t .. ':cache:' .. entry
  if redis.call('GET', pk) ~= id then return end
  if state == 'complete' and redis.call('EXISTS', RES .. id) == 1 then
    redis.call('PEXPIRE', pk, ttl)
    local mk = meta_key(id)
    for _, k in ipairs({RES .. id, mk, logs_key(id), TNS .. t .. ':st:' .. id}) do
      local left = redis.call('PTTL', k)
      if left >= 0 and left < ttl then redis.call('PEXPIRE', k, ttl) end
    end
    redis.call('HSET', mk, 'cache', entry)
  else
    redis.call('DEL', pk)
    redis.call('ZREM', TNS .. t .. ':cache-index', entry)
  end
end
"""


# ----------------------------------------------------------------------------- jobs that wait on other jobs
#: per tenant: ``kids:<job id>`` (set of the jobs waiting on this one). A waiting job's meta holds
#: ``state`` 'waiting', ``deps_left`` (upstream jobs not finished yet), ``deps_n`` (how many it takes),
#: ``parents`` (comma-joined) and, once an upstream job failed, was cancelled or cannot be read,
#: ``upstream_failed`` (its id) and ``upstream_why`` (for a corrupt record: which key). An upstream's own
#: record lists its first dependents in ``children`` (a fallback when its ``kids`` key is corrupt).
def upstream_kids_key(job_id: str) -> str:
    return f"{TENANT_NS}{tenant_of(job_id)}:kids:{job_id}"


#: Lua: release the jobs waiting on job ``id`` as it finishes with ``state``: a complete upstream
#: counts down their ``deps_left`` and keeps its result as long as they may still run; any other
#: ending releases them at once, marked ``upstream_failed`` (their worker then records
#: UpstreamFailed). A count that reaches 0, or that is not a number or out of range (corrupt), is
#: checked against the upstream jobs' states before a release (``recount``): a job is never
#: released before its upstream jobs finished, and never kept waiting by a bad count. Releasing
#: puts the waiting job in its queue due now; a job no longer waiting (cancelled, released) is
#: left alone, so it is released once. A dependent that ends gives its upstream jobs' results back
#: (``release_parents``): after the last of an upstream's dependents, its result expires as results do.
UPSTREAM_RELEASE = """
local function release_child(child, now)
  local cmk = meta_key(child)
  if redis.call('HGET', cmk, 'state') ~= 'waiting' then return end
  local qk = redis.call('HGET', cmk, 'queue')
  if not qk or redis.call('EXISTS', JOB .. child) == 0 then return end
  redis.call('ZADD', qk, now, child)
  redis.call('HSET', cmk, 'state', 'queued', 'sched', now)
  if redis.call('PTTL', JOB .. child) < 86400000 then redis.call('PEXPIRE', JOB .. child, 86400000) end
  redis.call('PUBLISH', 'taskq:wake:' .. queue_of(qk), '{"e":"wake"}')
end
-- a complete upstream's result lives at least as long as the definition of a job waiting on it
local function keep_result_for(p, child)
  local need = redis.call('PTTL', JOB .. child)
  local have = redis.call('PTTL', RES .. p)
  if need == -1 and have > 0 then
    redis.call('PERSIST', RES .. p)
  elseif need > 0 and have >= 0 and have < need then
    redis.call('PEXPIRE', RES .. p, need)
  end
end
-- a dependent that ended no longer needs its upstream jobs' results: once no dependent of an upstream
-- needs its result ('deps_pending', counted at link), it expires as results do (ttl from now), not later
local function release_parents(id, ttl)
  local parents = redis.call('HGET', meta_key(id), 'parents')
  ttl = tonumber(ttl)
  if not parents or parents == '' or not ttl or ttl <= 0 then return end
  for p in string.gmatch(parents, '[^,]+') do
    local pmk = meta_key(p)
    if redis.call('EXISTS', pmk) == 1 then  -- an expired record is never re-created
      local pending = redis.pcall('HINCRBY', pmk, 'deps_pending', -1)
      if type(pending) == 'number' and pending <= 0 and redis.call('PTTL', RES .. p) > ttl then
        redis.call('PEXPIRE', RES .. p, ttl)
      end
    end
  end
end
-- mark a waiting job as failed by upstream job p (failed, cancelled, gone, or its record is unreadable)
local function blame(cmk, p, why)
  if redis.call('HEXISTS', cmk, 'upstream_failed') == 1 then return end
  redis.call('HSET', cmk, 'upstream_failed', p)
  if why then redis.call('HSET', cmk, 'upstream_why', why) end
end
-- the exact number of a waiting job's unfinished upstream jobs, from their states ('done' just completed);
-- 0 with 'upstream_failed' set when one failed, was cancelled, is gone or cannot be read
local function recount(cmk, done)
  local left = 0
  local parents = redis.call('HGET', cmk, 'parents') or ''
  for p in string.gmatch(parents, '[^,]+') do
    local st = p == done and 'complete' or redis.pcall('HGET', meta_key(p), 'state')
    if type(st) == 'table' then
      blame(cmk, p, 'its record ' .. meta_key(p) .. ' is not a hash (corrupt)')
      return 0
    elseif st == 'complete' and redis.call('EXISTS', RES .. p) == 1 then
      -- finished with its result
    elseif (not st) or st == 'failed' or st == 'cancelled' or st == 'complete' then
      blame(cmk, p, nil)
      return 0
    else
      left = left + 1
    end
  end
  redis.call('HSET', cmk, 'deps_left', left)
  return left
end
local function release_one(child, id, state, now)
  local cmk = meta_key(child)
  if redis.call('TYPE', cmk)['ok'] ~= 'hash' then return end
  if state == 'complete' then
    local left = redis.pcall('HINCRBY', cmk, 'deps_left', -1)
    local most = tonumber(redis.call('HGET', cmk, 'deps_n') or '')
    if type(left) ~= 'number' or left <= 0 or (most and left > most) then left = recount(cmk, id) end
    keep_result_for(id, child)
    if left <= 0 then release_child(child, now) end
  else
    blame(cmk, id, nil)
    release_child(child, now)
  end
end
local function release_children(id, state, now)
  local kk = TNS .. tenant_of(id) .. ':kids:' .. id
  local kids = redis.pcall('SMEMBERS', kk)
  if type(kids) ~= 'table' or kids.err then
    -- not a set (corrupt): the dependents the upstream's record names
    kids = {}
    local named = redis.pcall('HGET', meta_key(id), 'children')
    if type(named) == 'string' then
      for c in string.gmatch(named, '[^,]+') do kids[#kids + 1] = c end
    end
    redis.call('DEL', kk)
  end
  if #kids == 0 then return end  -- most jobs: one read, no write
  for _, child in ipairs(kids) do
    pcall(release_one, child, id, state, now)
  end
  redis.call('DEL', kk)
end
"""

# ----------------------------------------------------------------------------- jobs that stream
#: per tenant: ``st:<job id>``, a stream of the items a generator job yields (see
#: :mod:`taskq_sdk._backend.stream_io`): ``k`` 'b' (an attempt begins: ``a``), 'i' (an item: ``v``),
#: 'e' (the job ended: ``s`` its state). Lua run when a job finishes ('done'): a job that streamed (its
#: meta's ``stream`` field, set by the first append) gets its end entry, and its stream lives as long as its
#: result (the cache may raise both after this); other jobs pay one more field in FINISH's HMGET.
STREAM_END = """
local function stream_end(id, state, ttl, meta_ttl)
  local sk = TNS .. tenant_of(id) .. ':st:' .. id
  if redis.call('EXISTS', sk) == 0 then return end
  redis.call('XADD', sk, '*', 'k', 'e', 's', state)
  ttl = tonumber(ttl)
  if ttl > 0 then redis.call('PEXPIRE', sk, ttl)
  elseif ttl < 0 then redis.call('PERSIST', sk)
  else redis.call('PEXPIRE', sk, meta_ttl) end
end
"""

FINISH_STRIDE = 13
#: ARGV per job (FINISH_STRIDE values): op ('done' | 'retry' | 'release'), id, queue_key,
#: result_bytes, result_ttl_ms (<0: forever), state, meta_ttl_ms, now, error, duration_ms,
#: claim_token, retry_score, event_json.  Returns 'ok', 'claim-lost' (the token no longer holds the
#: job: another worker runs it, or ran it) or 'error: <reply>' per job. A 'done' with a result of at
#: most 16 KiB publishes the result envelope itself (which waiters read as the 'done' event). A
#: corrupt meta key is replaced, and counters that fail are skipped: an outcome is always recorded.
FINISH = (
    PRELUDE
    + CACHE_SETTLE
    + UPSTREAM_RELEASE
    + STREAM_END
    + """
local function finish_one(i)
  local op, id, qk, tok = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 10]
  if holds(id, tok, qk) == 0 then return 'claim-lost' end
  local mk = meta_key(id)
  local has_meta = meta_hash(mk)
  if op == 'done' then
    if ARGV[i + 3] ~= '' then
      local ttl = tonumber(ARGV[i + 4])
      if ttl > 0 then
        redis.call('SET', RES .. id, ARGV[i + 3], 'PX', ttl)
      elseif ttl < 0 then
        redis.call('SET', RES .. id, ARGV[i + 3])
      end
    end
    redis.call('DEL', INP .. id, JOB .. id, RTY .. id)
    redis.call('ZREM', qk, id)
    redis.pcall('ZREM', abort_key(qk), id)
    if not has_meta and ARGV[i + 8] ~= '' and string.sub(ARGV[i + 8], 1, 11) == 'CorruptJob:' then
      has_meta = true  -- a corrupt meta key was dropped: record the outcome in a fresh one
    end
    local streamed = false
    if has_meta then
      redis.call('HSET', mk, 'state', ARGV[i + 5], 'finished', ARGV[i + 7], 'err', ARGV[i + 8],
        'dur', ARGV[i + 9])
      local m = redis.call('HMGET', mk, 'ws', 'fn', 'batch', 'stream')
      streamed = m[4]
      pcall(count, tenant_of(id), m[1] or 'default', m[2] or '?', tonumber(ARGV[i + 7]), ARGV[i + 5],
        tonumber(ARGV[i + 9]))
      pcall(batch_count, id, m[3], ARGV[i + 5], ARGV[i + 7])
      redis.call('PEXPIRE', mk, ARGV[i + 6])
      redis.call('PEXPIRE', logs_key(id), ARGV[i + 6])
      -- a small result travels with the 'done' notice itself: a waiter needs no extra read
      local blob = ARGV[i + 3]
      if blob ~= '' and string.len(blob) <= 16384 then
        notify(id, mk, blob)
      else
        notify(id, mk, ARGV[i + 12])
      end
    end
    if streamed then pcall(stream_end, id, ARGV[i + 5], ARGV[i + 4], ARGV[i + 6]) end
    pcall(cache_settle, id, ARGV[i + 5])
    pcall(release_children, id, ARGV[i + 5], tonumber(ARGV[i + 7]))
    pcall(release_parents, id, ARGV[i + 4])
  elseif op == 'retry' then
    local score = tonumber(ARGV[i + 11])
    redis.call('ZADD', qk, score, id)
    redis.call('DEL', INP .. id)
    local need = score - tonumber(ARGV[i + 7]) + 86400000
    local pttl = redis.call('PTTL', JOB .. id)
    if pttl > 0 and pttl < need then redis.call('PEXPIRE', JOB .. id, need) end
    if has_meta then
      redis.call('HSET', mk, 'state', 'retrying', 'next_try', score, 'err', ARGV[i + 8], 'dur', ARGV[i + 9])
      local m = redis.call('HMGET', mk, 'ws', 'fn', 'batch')
      pcall(count, tenant_of(id), m[1] or 'default', m[2] or '?', tonumber(ARGV[i + 7]), 'retried', nil)
      pcall(batch_count, id, m[3], 'retried', ARGV[i + 7])
      notify(id, mk, ARGV[i + 12])
    end
  else
    redis.call('DEL', INP .. id)
    if has_meta then
      redis.call('HSET', mk, 'state', 'queued')
      notify(id, mk, ARGV[i + 12])
    end
    -- back in the queue: an idle worker takes it now (before jobs submitted after it)
    redis.call('PUBLISH', 'taskq:wake:' .. queue_of(qk), '{"e":"wake"}')
  end
  return 'ok'
end
local out = {}
for i = 1, #ARGV, 13 do
  local ok, res = pcall(finish_one, i)
  out[#out + 1] = ok and res or ('error: ' .. tostring(res))
end
return out
"""
)

PROGRESS_STRIDE = 6
#: ARGV per job (PROGRESS_STRIDE values): id, claim_token, fields_json (string values),
#: log_lines_json or '', log_cap, event_json or ''.  Written only while the token holds the job
#: ('' for a job the stock arq worker runs: its claims carry no token);
#: returns the ids whose claim is gone (their progress was dropped).
PROGRESS = (
    PRELUDE
    + """
local lost = {}
for i = 1, #ARGV, 6 do
  local id = ARGV[i]
  local mk = meta_key(id)
  if ARGV[i + 1] ~= '' and holds(id, ARGV[i + 1], nil) == 0 then
    lost[#lost + 1] = id
  elseif redis.call('TYPE', mk)['ok'] == 'hash' then
    local flat = {}
    for k, v in pairs(cjson.decode(ARGV[i + 2])) do
      flat[#flat + 1] = k
      flat[#flat + 1] = v
    end
    if #flat > 0 then redis.call('HSET', mk, unpack(flat)) end
    if ARGV[i + 3] ~= '' then
      local lk = logs_key(id)
      if redis.call('TYPE', lk)['ok'] ~= 'list' then redis.call('DEL', lk) end
      local lines = cjson.decode(ARGV[i + 3])
      for s = 1, #lines, 500 do
        redis.call('RPUSH', lk, unpack(lines, s, math.min(s + 499, #lines)))
      end
      redis.call('LTRIM', lk, -tonumber(ARGV[i + 4]), -1)
      redis.call('PEXPIRE', lk, math.max(redis.call('PTTL', mk), 1000))
    end
    if ARGV[i + 5] ~= '' then redis.call('PUBLISH', chan(id), ARGV[i + 5]) end
  end
end
return lost
"""
)

#: ARGV: id, now, cancel_result_bytes, result_ttl_ms, meta_ttl_ms, event_json.
#: Returns 'finished', 'running' (cancel requested), 'cancelled' (removed from the queue) or 'unknown'.
CANCEL = (
    PRELUDE
    + UPSTREAM_RELEASE
    + """
local id, now = ARGV[1], ARGV[2]
local mk = meta_key(id)
materialize(id, 'arq:queue')
local has_meta = redis.call('TYPE', mk)['ok'] == 'hash'
local qk = has_meta and redis.call('HGET', mk, 'queue') or 'arq:queue'
if redis.call('EXISTS', RES .. id) == 1 then return 'finished' end
if redis.call('EXISTS', INP .. id) == 1 then
  redis.call('ZADD', abort_key(qk), now, id)
  redis.call('PUBLISH', 'taskq:control:' .. queue_of(qk), cjson.encode({e = 'cancel', id = id}))
  if has_meta then redis.call('HSET', mk, 'cancel_requested', now) end
  return 'running'
end
if redis.call('ZSCORE', qk, id) then
  redis.call('ZREM', qk, id)
  local ttl = tonumber(ARGV[4])
  if ttl > 0 then
    redis.call('SET', RES .. id, ARGV[3], 'PX', ttl)
    redis.call('PEXPIRE', JOB .. id, ttl)
  elseif ttl < 0 then
    redis.call('SET', RES .. id, ARGV[3])
  else
    redis.call('DEL', JOB .. id)  -- results are not kept (keep_result=0): nothing stays behind
  end
  redis.call('DEL', RTY .. id)
  if has_meta then
    redis.call('HSET', mk, 'state', 'cancelled', 'finished', now, 'err', 'JobCancelled: cancelled before it started')
    local m = redis.call('HMGET', mk, 'ws', 'fn', 'batch')
    count(tenant_of(id), m[1] or 'default', m[2] or '?', tonumber(now), 'cancelled', nil)
    batch_count(id, m[3], 'cancelled', now)
    redis.call('PEXPIRE', mk, ARGV[5])
    notify(id, mk, ARGV[6])
  end
  pcall(release_children, id, 'cancelled', tonumber(now))
  pcall(release_parents, id, ARGV[4])
  return 'cancelled'
end
return 'unknown'
"""
)

#: ARGV: id.  Writes a queued job's record (see ``job_record`` in the prelude) out as its hash, for a
#: worker that claimed the job without CLAIM (the stock arq worker).
MATERIALIZE = PRELUDE + "\nmaterialize(ARGV[1], 'arq:queue')\nreturn 1\n"

#: ARGV: id, want_result ('1' to also return the result envelope).
#: Returns {meta_flat, result_exists, in_progress_holder|nil, queue_score|nil, job_exists, result|nil}.
STATE = (
    PRELUDE
    + """
local id = ARGV[1]
local mk = meta_key(id)
-- keys of the wrong type (corrupt) read as absent, rather than failing every status read
local function get(...)
  local v = redis.pcall(...)
  if type(v) == 'table' and v.err then return false end
  return v
end
local meta = get('HGETALL', mk) or {}
-- a queued job's record, read in place (a status read writes nothing)
if #meta == 0 then meta = job_record(id, 'arq:queue') or meta end
local qk = 'arq:queue'
for k = 1, #meta, 2 do if meta[k] == 'queue' then qk = meta[k + 1] break end end
local res = false
local has_res = redis.call('EXISTS', RES .. id)
if has_res == 1 and ARGV[2] == '1' then res = get('GET', RES .. id) end
return {meta, has_res, get('GET', INP .. id), get('ZSCORE', qk, id), redis.call('EXISTS', JOB .. id), res}
"""
)

#: ARGV: claim_ttl_ms, then (id, claim_token) pairs.  Renews the claims the tokens hold, and re-takes
#: one that expired while nobody else claimed the job since (its attempt counter still matches:
#: after an outage longer than the claim TTL); returns the ids whose claim is gone.
RENEW = (
    PRELUDE
    + """
local lost = {}
for i = 2, #ARGV, 2 do
  local id, tok = ARGV[i], ARGV[i + 1]
  local held = holds(id, tok, nil)
  if held == 1 then
    redis.call('PEXPIRE', INP .. id, ARGV[1])
  elseif held == 2 then
    redis.call('SET', INP .. id, tok, 'PX', ARGV[1])
  else
    lost[#lost + 1] = id
  end
end
return lost
"""
)

#: ARGV: kind ('push' | 'cancel'), id, claim_token, claim_ttl_ms, queue_key.  What a worker asks before it acts
#: on a message anyone allowed on the channel could have published: 'push' - does this token hold
#: the handed-over job (then its claim is renewed from now)? 'cancel' - was a cancel of the job
#: requested through the cancel script?  Returns 1 or 0.
CHECK = (
    PRELUDE
    + """
local kind, id, tok = ARGV[1], ARGV[2], ARGV[3]
if kind == 'push' then
  if redis.pcall('GET', INP .. id) ~= tok then return 0 end
  redis.call('PEXPIRE', INP .. id, ARGV[4])
  return 1
end
local mk = meta_key(id)
if redis.call('TYPE', mk)['ok'] == 'hash' then
  return redis.call('HEXISTS', mk, 'cancel_requested')
end
local score = redis.pcall('ZSCORE', abort_key(ARGV[5]), id)
return (score and type(score) ~= 'table') and 1 or 0
"""
)


def claim_token(worker_id: str, attempt: int) -> str:
    """The value of a job's claim: which worker holds it, for which attempt (a fencing token).

    Example::

        claim_token("host:42:ab12cd", 3)   # 'host:42:ab12cd#3'
    """
    return f"{worker_id}#{attempt}"


def claim_holder(value: str | None) -> str | None:
    """The worker id in a claim's value (stock arq workers write '1', not a worker id)."""
    if value is None:
        return None
    return value.rsplit("#", 1)[0]


# ----------------------------------------------------------------------------- as a layout object
#: this module is the default layout object (``keys.layout_for``); ``cluster_layout.ClusterLayout``
#: is the other one, with the same names
name = "arq"


def script_keys(queue: str | None = None) -> list[str]:
    """KEYS of a script call: none in this layout (the scripts build every name from ARGV)."""
    return []


def check_queue(queue: str) -> None:
    """Any queue goes in this layout (a job is found by its id alone)."""


def for_queue(queue: str) -> ModuleType:
    """This layout for jobs of ``queue``: the same (a job is found by its id alone)."""
    return sys.modules[__name__]


def script(text: str) -> str:
    """A Lua script written on :data:`PRELUDE`, for this layout: as it is."""
    return text
