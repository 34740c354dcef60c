"""A queued job's record: its metadata riding in its job key until something needs its hash (Lua).

SUBMIT and BULK_SUBMIT write no hash for a job they leave queued: the record rides in arq's job
envelope as its first entry ``q`` (arq's reader ignores it), about 20-40 bytes instead of a ~250-byte
hash. A claim, a cancel, a dependent, a cached call and the stock arq worker write it out as the hash
(``materialize``); a status read takes it in place (``job_record``). This text is part of
:data:`.layout.PRELUDE` (it uses ``tenant_of``, ``meta_key`` and ``JOB`` defined there). Example::

    from taskq_sdk._backend import layout, record_lua
    record_lua.RECORD_LUA in layout.PRELUDE   # True
"""

from __future__ import annotations

__all__ = ["RECORD_AFTER_MS", "RECORD_LUA"]

#: a record's life after its job's when it names none: the defaults of ``keep_result`` plus
#: ``tombstone_ttl`` (``config.Settings``), as the hash's would be
RECORD_AFTER_MS = 90_000_000

RECORD_LUA = f"""\
-- A queued job's record rides in its job key (SUBMIT and BULK_SUBMIT put it there: no hash per queued
-- job, ~250 B less each): the envelope's first entry 'q' holds, joined by NULs, reply channel,
-- workspace ('' = default), queue key ('' = the default queue), timeout, max_tries, retry_of, the
-- record's life after the job's ('' = RECORD_AFTER), batch ('#<n>': the first n characters of the id
-- after its tenant, as a batch names its items) and the call's text ('' = fn()); function and enqueue
-- time are the envelope's own 'f' and 'et'. It becomes the job's hash when first needed
-- (materialize: a claim, a cancel, a dependent, a cache lookup) and a status read takes it in place
-- (job_record).
local RECORD_AFTER = {RECORD_AFTER_MS}
-- where a job id's own part starts (after its tenant's prefix, which the default tenant's ids lack)
local function own_at(id)
  local t = tenant_of(id)
  return t == 'default' and 1 or string.len(t) + 2
end
-- the msgpack str at byte p of v: its text and the byte after it
local function str_at(v, p)
  local b = string.byte(v, p)
  local n, s
  if not b then return nil
  elseif b >= 160 and b <= 191 then n, s = b - 160, p + 1
  elseif b == 217 then n, s = string.byte(v, p + 1), p + 2
  elseif b == 218 then n, s = (string.byte(v, p + 1) or 0) * 256 + (string.byte(v, p + 2) or 0), p + 3
  else return nil end
  if not n or s + n - 1 > #v then return nil end
  return string.sub(v, s, s + n - 1), s + n
end
-- the job envelope jb (function fn) with its record (fields f, as above, before the defaults are
-- dropped; dq: the default queue key) as its first entry; nil when jb is not in the shape taskq's
-- codec writes (msgpack, 't' then 'f' first, 'et' last: a pickle, a plain arq job) - it keeps a hash
local function with_record(id, jb, fn, dq, f)
  if string.sub(jb, 1, 5) ~= '\\193TQ\\1m' or string.sub(jb, 7, 11) ~= '\\161t\\192\\161f'
    or string.sub(jb, -12, -9) ~= '\\162et\\207' then
    return nil
  end
  local hb = string.byte(jb, 6)
  if hb < 128 or hb >= 143 or str_at(jb, 12) ~= fn then return nil end
  if f[2] == 'default' then f[2] = '' end
  if f[3] == dq then f[3] = '' end
  f[7] = f[7] == RECORD_AFTER and '' or tostring(f[7])
  if f[9] == fn .. '()' then f[9] = '' end
  local b = f[8]
  if b ~= '' and string.sub(id, own_at(id), own_at(id) + #b) == b .. '.' then f[8] = '#' .. #b end
  local nf = 9
  while nf > 1 and f[nf] == '' do nf = nf - 1 end  -- empty fields at the end are left out
  local rec = table.concat(f, '\\0', 1, nf)
  local n = #rec
  local head = n < 32 and string.char(160 + n) or n < 256 and '\\217' .. string.char(n)
    or n < 65536 and '\\218' .. string.char(math.floor(n / 256), n % 256)
  if not head then return nil end
  return string.sub(jb, 1, 5) .. string.char(hb + 1) .. '\\161q' .. head .. rec .. string.sub(jb, 7)
end
-- the hash fields (flat) a job's record stands for, and the record's life after the job's; nil when
-- the job key holds none (a plain arq job, a job with a hash, a corrupt key). dq: the default queue
-- key; v: the job key's value when the caller read it
local function job_record(id, dq, v)
  v = v or redis.pcall('GET', JOB .. id)
  if type(v) ~= 'string' or string.sub(v, 1, 5) ~= '\\193TQ\\1m' or string.sub(v, 7, 8) ~= '\\161q' then return nil end
  local rec, p = str_at(v, 9)
  if not rec or string.sub(v, p, p + 4) ~= '\\161t\\192\\161f' or string.sub(v, -12, -9) ~= '\\162et\\207' then
    return nil
  end
  local fn = str_at(v, p + 5)
  if not fn then return nil end
  local enq = 0
  for k = #v - 7, #v do enq = enq * 256 + string.byte(v, k) end
  -- 9 fields; those left out at the end are empty (the call's text, last, may hold NULs itself)
  local f, s = {{}}, 1
  for k = 1, 8 do
    local e = s and string.find(rec, '\\0', s, true)
    f[k] = string.sub(rec, s or #rec + 1, (e or #rec + 1) - 1)
    s = e and e + 1
  end
  local args = s and string.sub(rec, s) or ''
  local m = {{'fn', fn, 'ws', f[2] ~= '' and f[2] or 'default', 'queue', f[3] ~= '' and f[3] or dq,
    'enq', string.format('%.0f', enq), 'state', 'queued', 'args', args ~= '' and args or fn .. '()'}}
  local b = string.match(f[8], '^#(%d+)$')
  if b then f[8] = string.sub(id, own_at(id), own_at(id) + tonumber(b) - 1) end
  local names = {{'rc', false, false, 'timeout', 'max_tries', 'retry_of', false, 'batch'}}
  for k = 1, 8 do
    if names[k] and f[k] ~= '' then m[#m + 1] = names[k]; m[#m + 1] = f[k] end
  end
  return m, tonumber(f[7]) or RECORD_AFTER
end
-- write a job's record out as its hash: a job due later reads as deferred, with its time, and a job
-- being claimed ('started': its attempt, worker and start, flat) as started, in the same write.
-- Returns the fields written; true when the job has its hash already; nil when it has neither
local function materialize(id, dq, v, started)
  local mk = meta_key(id)
  if redis.call('EXISTS', mk) == 1 then return true end
  local m, after = job_record(id, dq, v)
  if not m then return nil end
  if started then
    m[10] = 'in_progress'
    for k = 1, #started do m[#m + 1] = started[k] end
  else
    local score = redis.pcall('ZSCORE', m[6], id)
    if type(score) == 'string' and tonumber(score) > tonumber(m[8]) then
      m[10] = 'deferred'
      m[#m + 1] = 'sched'; m[#m + 1] = score
    end
  end
  redis.call('HSET', mk, unpack(m))
  local left = redis.call('PTTL', JOB .. id)
  redis.call('PEXPIRE', mk, math.max(left, 0) + after)
  return m
end
"""
