"""The body of the SUBMIT script (:data:`.layout.SUBMIT` is the Lua prelude and this), kept apart for size.

It writes jobs as :mod:`.layout` describes (ARGV and reply there, at ``SUBMIT``), with as few server
commands per row as the cases allow: the keys of up to 100 rows are read with one ``EXISTS``, and
consecutive rows of one queue, index and function share their ``ZADD`` s and metrics counts.
Every ``redis.call`` costs ~1-2 us of conversion on the server beyond its command, so each one counts
(``python -m bench.submit_script`` measures it). Example::

    from taskq_sdk._backend import layout
    layout.SUBMIT == layout.PRELUDE + SUBMIT_BODY   # True
"""

from __future__ import annotations

__all__ = ["SUBMIT_BODY"]

#: Lua, run after the prelude (it uses ``tenant_of``, ``abort_key``, ``meta_key``, ``chan``,
#: ``batch_count``, ``count`` and the key prefixes defined there)
SUBMIT_BODY = """
local now, nows = tonumber(ARGV[1]), ARGV[1]
local rk, ppfx, pqk, rc = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local call = redis.call
local out = {}
local queued = false
-- the ready set: its two newest offers (no idle worker: nothing else to do); the lapsed offers go
-- (a lone offer only if it lapsed), and the newest, if live, takes the first job handed over
local can_push, top = false, nil
if rk ~= '' then
  local t = call('ZRANGE', rk, -2, -1, 'WITHSCORES')
  if #t > 0 then
    local newest = tonumber(t[#t])
    if #t > 2 or newest < now then call('ZREMRANGEBYSCORE', rk, '-inf', '(' .. nows) end
    if newest >= now then can_push, top = true, t[#t - 1] end
  end
end
local nrows = (#ARGV - 6) / 14
-- A group of up to 100 rows starts with one EXISTS of their keys (and of their queues' cancel
-- requests): when none exists - new ids, nothing an earlier job left to clear: the usual case - no
-- row of the group needs a read of its own; else each row of the group is checked alone.
local keys, found, g1 = {}, 0, 1
-- Consecutive rows of one queue, one index, one (tenant, workspace, function) share one ZADD, one
-- index upkeep check and one 'enq' count, written when a row differs and after the last row (the
-- script is atomic: nobody sees the rows in between). No functions here: each would be a new
-- closure on every run, and a lone submit is most of the runs.
local qk_w, qbuf, nq = nil, {}, 0
local ik_w, wk_w, ws_w, ibuf, ttls, ni = nil, nil, nil, {}, {}, 0
local t_w, gws_w, fn_w, gn = nil, nil, nil, 0
local aborts, seen = nil, nil
local fields = {'fn', '', 'ws', '', 'queue', '', 'enq', nows, 'state', '', 'args', ''}
for r = 1, nrows + 1 do
  local i = 7 + (r - 1) * 14
  local id, qk, ws, fn = ARGV[i], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
  local tenant, tp, ik, score, meta_ttl
  local made = false
  if r <= nrows then
    tenant = tenant_of(id)
    tp = TNS .. tenant
    if r == g1 then
      local g2 = math.min(r + 99, nrows)
      local nk = (g2 - r + 1) * 5
      local na = nk
      for j = r, g2 do
        local jid, jq = ARGV[7 + (j - 1) * 14], ARGV[12 + (j - 1) * 14]
        local jtp = j == r and tp or TNS .. tenant_of(jid)
        local b = (j - r) * 5
        keys[b + 1], keys[b + 2], keys[b + 3], keys[b + 4], keys[b + 5] = JOB .. jid, RES .. jid,
          jtp .. ':job:' .. jid, RTY .. jid, jtp .. ':logs:' .. jid
        local ak = abort_key(jq)
        local listed = false
        for a = nk + 1, na do if keys[a] == ak then listed = true break end end
        if not listed then na = na + 1; keys[na] = ak end
      end
      found = call('EXISTS', unpack(keys, 1, na))
      g1 = g2 + 1
    end
    local b = ((r - 1) % 100) * 5
    local jk, resk, mk, rtk, lk = keys[b + 1], keys[b + 2], keys[b + 3], keys[b + 4], keys[b + 5]
    local free = true
    if found == 0 then
      -- all new; an id given twice in this call is taken the second time
      if nrows > 1 then
        seen = seen or {}
        if seen[id] then free = false else seen[id] = true end
      end
    else
      aborts = aborts or {}
      local ab = aborts[qk]
      if ab == nil then ab = call('EXISTS', abort_key(qk)); aborts[qk] = ab end
      local n = call('EXISTS', jk, resk, mk, rtk, lk)
      if n > 0 and call('EXISTS', jk, resk) > 0 then
        free = false
      else
        -- what an earlier job of this id left goes (cancel request, meta, attempts, logs)
        if ab == 1 then call('ZREM', abort_key(qk), id) end
        if n > 0 then call('DEL', mk, rtk, lk) end
      end
    end
    if not free then
      out[r] = 0
    else
      made = true
      score, meta_ttl = ARGV[i + 2], tonumber(ARGV[i + 4])
      local due = tonumber(score) <= now
      -- due now on the push queue: handed to the newest idle worker listening (claimed here for it,
      -- as CLAIM would), else the next one; a worker that stopped refreshing its offer comes last
      local wid = nil
      while can_push and due and qk == pqk do
        local entry = top or call('ZRANGE', rk, -1, -1)[1]
        top = nil
        if not entry then can_push = false break end
        call('ZREM', rk, entry)
        local a = string.find(entry, '|', 1, true)
        local c = a and string.find(entry, '|', a + 1, true)
        if c then
          local w = string.sub(entry, c + 1)
          local meta = {ARGV[i + 8], ARGV[i + 9], ws, ARGV[i + 12], tostring(now)}
          local row = {id, score, ARGV[i + 1], 1, 0, meta, entry}
          if call('PUBLISH', ppfx .. w, PUSH_MAGIC .. cmsgpack.pack(row)) > 0 then
            call('SET', INP .. id, w .. '#1', 'PX', string.sub(entry, 1, a - 1))
            call('SET', rtk, 1, 'EX', 88400)
            batch_count(id, ARGV[i + 12], 'started', now)
            wid = w
            break
          end
        end
      end
      -- a job left queued keeps its record in its job key (see with_record in the prelude), no hash
      local jb, rec = ARGV[i + 1], nil
      if not wid and ARGV[i + 10] ~= 'waiting' then
        rec = with_record(id, jb, fn, 'arq:queue', {rc, ws, qk, ARGV[i + 8], ARGV[i + 9], ARGV[i + 11],
          meta_ttl - tonumber(ARGV[i + 3]), ARGV[i + 12], ARGV[i + 13]})
      end
      call('SET', jk, rec or jb, 'PX', ARGV[i + 3])
      if not rec then
        -- optional fields only when set (a missing field reads as empty): fewer bytes per queued job.
        -- The tenant is the id's (tenant_of); 'sched' only for a deferred job (due now: the queue score,
        -- then the enqueue time, say when it was due). A job handed over is written as started.
        fields[2], fields[4], fields[6], fields[10], fields[12] = fn, ws, qk, wid and 'in_progress' or ARGV[i + 10],
          ARGV[i + 13]
        local nf = 12
        if not due then fields[13] = 'sched'; fields[14] = score; nf = 14 end
        local v = ARGV[i + 8]
        if v ~= '' then fields[nf + 1] = 'timeout'; fields[nf + 2] = v; nf = nf + 2 end
        v = ARGV[i + 9]
        if v ~= '' then fields[nf + 1] = 'max_tries'; fields[nf + 2] = v; nf = nf + 2 end
        v = ARGV[i + 11]
        if v ~= '' then fields[nf + 1] = 'retry_of'; fields[nf + 2] = v; nf = nf + 2 end
        v = ARGV[i + 12]
        if v ~= '' then fields[nf + 1] = 'batch'; fields[nf + 2] = v; nf = nf + 2 end
        if rc ~= '' then fields[nf + 1] = 'rc'; fields[nf + 2] = rc; nf = nf + 2 end
        if wid then
          fields[nf + 1], fields[nf + 2], fields[nf + 3], fields[nf + 4] = 'attempt', 1, 'worker', wid
          fields[nf + 5], fields[nf + 6] = 'started', now
          nf = nf + 6
        end
        call('HSET', mk, unpack(fields, 1, nf))
        call('PEXPIRE', mk, meta_ttl)
      end
      if wid then call('PUBLISH', chan(id), cjson.encode({e = 'started', a = 1, w = wid})) else queued = true end
      if ARGV[i + 11] ~= '' then
        local ok = meta_key(ARGV[i + 11])
        if call('EXISTS', ok) == 1 then call('HSET', ok, 'retried_by', id) end
      end
      out[r] = 1
      -- the listing index is per workspace (a tenant-wide listing merges them: one index entry, ~90 B,
      -- less per job than writing a tenant-wide index too); 'wss' names the workspaces that have one
      ik = tp .. ':idx:' .. ws
    end
  end
  -- the rows so far of a queue / index / (tenant, workspace, function) this row does not share
  if made or r > nrows then
    if qk ~= qk_w then
      for s = 1, nq, 2000 do call('ZADD', qk_w, unpack(qbuf, s, math.min(s + 1999, nq))) end
      qk_w, nq = qk, 0
    end
    if ik ~= ik_w then
      for s = 1, ni, 2000 do call('ZADD', ik_w, unpack(ibuf, s, math.min(s + 1999, ni))) end
      -- upkeep at most once a minute per index (a new index at once), checked for each row as if it
      -- came alone: drop the entries past their metadata's life, name the workspace, extend both
      -- lifetimes ('wss' always outlives the index)
      local left = ni > 0 and call('PTTL', ik_w)
      for k = 1, ni / 2 do
        local ttl = ttls[k]
        if left < ttl - 60000 then
          call('ZREMRANGEBYSCORE', ik_w, '-inf', now - ttl)
          call('SADD', wk_w, ws_w)
          if call('PTTL', ik_w) < ttl then call('PEXPIRE', ik_w, ttl) end
          if call('PTTL', wk_w) < ttl then call('PEXPIRE', wk_w, ttl) end
          left = call('PTTL', ik_w)
        end
      end
      ik_w, wk_w, ws_w, ni = ik, made and tp .. ':wss', ws, 0
    end
    if tenant ~= t_w or ws ~= gws_w or fn ~= fn_w then
      if gn > 0 then count(t_w, gws_w, fn_w, now, 'enq', nil, gn) end
      t_w, gws_w, fn_w, gn = tenant, ws, fn, 0
    end
    if made then
      qbuf[nq + 1], qbuf[nq + 2] = score, id
      ibuf[ni + 1], ibuf[ni + 2] = nows, id
      nq, ni, gn = nq + 2, ni + 2, gn + 1
      ttls[ni / 2] = meta_ttl
    end
  end
end
if queued and ARGV[2] ~= '' then call('PUBLISH', ARGV[2], '{"e":"wake"}') end
return out
"""
