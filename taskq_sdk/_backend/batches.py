"""Batch reads and writes: bulk submit in one Lua call per few thousand jobs, manifests, bulk status.

A batch's jobs are ordinary jobs (same keys as :mod:`.layout` writes for ``submit``) whose meta
``batch`` field names the batch. Per tenant, a batch adds::

    taskq:t:<tenant>:batch:<id>:m     string: the manifest (msgpack): function, chunking, job ids, key
    taskq:t:<tenant>:batch:<id>:p     hash: chunk -> patches (jobs that re-ran some of its items)
    taskq:t:<tenant>:batch:<id>:rf    hash: job id -> items that failed inside that chunk job
    taskq:t:<tenant>:batch:<id>:ix    string: the DataFrame index of a fan-out (codec bytes), if small
    taskq:t:<tenant>:batch:<id>:n     hash: job counters kept by the worker scripts (see layout)

and, per tenant, ``layout.item_seconds_key``: each function's measured seconds per item (for
``chunk_size="auto"``), written by the chunk runner.

All of them expire with the batch's jobs. Example::

    bstore = store.batches                           # a Store's batch part (or BatchStore(redis, codec))
    flags = await bstore.submit(rows_blob, header)   # b"1101..." (1 created, 0 already there)
    codes = await bstore.statuses(job_ids)           # b"qrcf..." one status letter per job
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ..errors import ConfigurationError
from ..serialization import Codec
from . import layout
from .connection import run_scripts
from .durable import NO_DURABLE_ON_CLUSTER, add_wait, check_acked
from .envelope import decode_job, decode_result, job_call_of
from .keys import KeyLayout

__all__ = [
    "BULK_STATUS",
    "BULK_SUBMIT",
    "BatchStore",
    "BulkHeader",
    "frame_index_key",
    "manifest_key",
    "patches_key",
    "rows_failed_key",
]


ITEM_SECONDS_TTL_MS = 30 * 86_400_000  # a function's measured item time is kept a month after its last chunk


def _batch_key(tenant: str, batch_id: str, part: str, tns: str) -> str:
    return f"{tns}{tenant}:batch:{batch_id}:{part}"


def manifest_key(tenant: str, batch_id: str, tns: str = layout.TENANT_NS) -> str:
    """The batch's manifest (a msgpack map)."""
    return _batch_key(tenant, batch_id, "m", tns)


def patches_key(tenant: str, batch_id: str, tns: str = layout.TENANT_NS) -> str:
    """Hash: chunk index -> msgpack list of ``[job_id, [offsets...]]`` re-runs, oldest first."""
    return _batch_key(tenant, batch_id, "p", tns)


def rows_failed_key(tenant: str, batch_id: str, tns: str = layout.TENANT_NS) -> str:
    """Hash: chunk job id -> number of items that failed inside it (written by the chunk runner)."""
    return _batch_key(tenant, batch_id, "rf", tns)


def frame_index_key(tenant: str, batch_id: str, tns: str = layout.TENANT_NS) -> str:
    """The original DataFrame index of a fan-out, encoded with the wire codec (only when small)."""
    return _batch_key(tenant, batch_id, "ix", tns)


#: ARGV: now, wake_channel ('' none), queue_key, workspace, function, timeout, max_tries, state,
#: score, job_ttl_ms, meta_ttl_ms, batch, fresh ('1': ids are new, skip existence checks), rows.
#: ``rows`` is a msgpack array ``[id, job_bytes, args_repr, ...]``. Writes exactly what SUBMIT
#: writes per job (job with its record, queue entry, listings, 'enq' metrics, wake-up), with the
#: per-call parts (listings, metrics, queue) done once per call instead of once per job.
#: Returns a string of '1' (created) / '0' (id already taken), one per row.
BULK_SUBMIT = (
    layout.PRELUDE
    + """
local now = tonumber(ARGV[1])
local qk, ws, fn = ARGV[3], ARGV[4], ARGV[5]
local score, job_ttl, meta_ttl = ARGV[9], ARGV[10], tonumber(ARGV[11])
local fresh = ARGV[13] == '1'
local rows = cmsgpack.unpack(ARGV[14])
local flags = {}
local made = {}
local tenant = 'default'
-- the meta fields every row shares; optional ones only when set (a missing field reads as empty);
-- as in SUBMIT, no 'tenant' (the id's) and 'sched' only for a deferred batch
local shared = {'fn', fn, 'ws', ws, 'queue', qk, 'enq', now, 'state', ARGV[8]}
if tonumber(score) > now then shared[#shared + 1] = 'sched'; shared[#shared + 1] = score end
for _, f in ipairs({{'timeout', 6}, {'max_tries', 7}, {'batch', 12}}) do
  if ARGV[f[2]] ~= '' then shared[#shared + 1] = f[1]; shared[#shared + 1] = ARGV[f[2]] end
end
local nshared = #shared
local records, after = ARGV[8] ~= 'waiting', meta_ttl - tonumber(job_ttl)
local call = redis.call
-- Not fresh (a keyed batch: ids may exist): the keys of a group of rows (and the queue's cancel
-- requests) are read with one EXISTS; when none exists, no row of the group needs its own read,
-- clean-up or cancel-request removal (as in SUBMIT). Else each row of the group is checked alone.
local nrows = #rows / 3
local keys, clear_aborts, found = {}, false, 0
local function probe(r1, r2)
  local n = (r2 - r1 + 1) * 5
  for r = r1, r2 do
    local id = rows[r * 3 - 2]
    local tp = TNS .. tenant_of(id)
    local b = (r - r1) * 5
    keys[b + 1], keys[b + 2], keys[b + 3], keys[b + 4], keys[b + 5] = JOB .. id, RES .. id, tp .. ':job:' .. id,
      RTY .. id, tp .. ':logs:' .. id
  end
  keys[n + 1] = abort_key(qk)
  return call('EXISTS', unpack(keys, 1, n + 1))
end
local seen = {}
for r = 1, nrows do
  local i = r * 3 - 2
  local id = rows[i]
  local new = true
  if not fresh then
    if r % 100 == 1 then found = probe(r, math.min(r + 99, nrows)) end
    if found == 0 then
      new = not seen[id]  -- an id given twice is taken the second time
      seen[id] = true
    elseif call('EXISTS', JOB .. id, RES .. id) > 0 then
      new = false
    else
      clear_aborts = true
    end
  end
  if not new then
    flags[#flags + 1] = '0'
  else
    tenant = tenant_of(id)
    local mk = TNS .. tenant .. ':job:' .. id
    -- a queued job's record rides in its job key, as in SUBMIT (see with_record): no hash
    local rec = records and with_record(id, rows[i + 1], fn, 'arq:queue', {'', ws, qk, ARGV[6], ARGV[7], '', after,
      ARGV[12], rows[i + 2]})
    call('SET', JOB .. id, rec or rows[i + 1], 'PX', job_ttl)
    if found > 0 then call('DEL', mk, RTY .. id, logs_key(id)) end
    if not rec then
      shared[nshared + 1], shared[nshared + 2] = 'args', rows[i + 2]
      call('HSET', mk, unpack(shared))
      call('PEXPIRE', mk, meta_ttl)
    end
    made[#made + 1] = id
    flags[#flags + 1] = '1'
  end
end
local n = #made
local idx = {TNS .. tenant .. ':idx:' .. ws}  -- per workspace only, as in SUBMIT (and 'wss' below)
for s = 1, n, 1000 do
  local e = math.min(s + 999, n)
  local zq, zi = {}, {}
  for j = s, e do
    zq[#zq + 1] = score
    zq[#zq + 1] = made[j]
    zi[#zi + 1] = now
    zi[#zi + 1] = made[j]
  end
  redis.call('ZADD', qk, unpack(zq))
  if clear_aborts then redis.call('ZREM', abort_key(qk), unpack(made, s, e)) end
  redis.call('ZADD', idx[1], unpack(zi))
end
if n > 0 then
  for _, ik in ipairs(idx) do
    redis.call('ZREMRANGEBYSCORE', ik, '-inf', now - meta_ttl)
    if redis.call('PTTL', ik) < meta_ttl then redis.call('PEXPIRE', ik, meta_ttl) end
  end
  local wk = TNS .. tenant .. ':wss'
  redis.call('SADD', wk, ws)
  if redis.call('PTTL', wk) < meta_ttl then redis.call('PEXPIRE', wk, meta_ttl) end
  local prefix = TNS .. tenant .. ':m:'
  local mkeys = {prefix .. 'all', prefix .. math.floor(now / 60000)}
  for k = 1, 2 do redis.call('HINCRBY', mkeys[k], ws .. '|' .. fn .. '|enq', n) end
  redis.call('PEXPIRE', mkeys[1], 2592000000)
  redis.call('PEXPIRE', mkeys[2], 7200000)
  if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], '{"e":"wake"}') end
end
return table.concat(flags)
"""
)

#: ARGV: msgpack array of job ids.  Returns one letter per job: q (waiting: queued, deferred,
#: retrying), r (running), c (complete), f (failed), x (cancelled), d (finished, state unknown:
#: read the result), l (lost: nothing left, or its definition vanished before it finished).
BULK_STATUS = (
    layout.PRELUDE
    + """
local ids = cmsgpack.unpack(ARGV[1])
local out = {}
local finished = {complete = 'c', failed = 'f', cancelled = 'x'}
for i = 1, #ids do
  local id = ids[i]
  local st = redis.call('HGET', meta_key(id), 'state')
  local code = st and finished[st]
  if code then
    out[i] = code
  elseif redis.call('EXISTS', RES .. id) == 1 then
    out[i] = 'd'
  elseif redis.call('EXISTS', JOB .. id) == 0 then
    out[i] = 'l'
  elseif st == 'in_progress' then
    out[i] = 'r'
  else
    out[i] = 'q'
  end
end
return table.concat(out)
"""
)


@dataclass(frozen=True)
class BulkHeader:
    """What every job of one bulk submit shares (validated by the client before)."""

    queue: str
    workspace: str
    function: str
    timeout: float | None
    max_tries: int | None
    state: str
    score_ms: int
    job_ttl_ms: int
    meta_ttl_ms: int
    batch: str
    durable_ms: int = 0  # > 0: a durable submit, WAIT this long for a replica (see durable.py)


def pack_rows(rows: Sequence[Any]) -> bytes:
    """The ``rows`` argument of :data:`BULK_SUBMIT` from a flat ``[id, job_bytes, args_repr, ...]`` list."""
    packed: bytes = msgpack.packb(rows, use_bin_type=False)
    return packed


class BatchStore:
    """Batch-level reads and writes for a client (see the module docstring).

    Example::

        bstore = BatchStore(redis, codec)
        await bstore.write_manifest("acme", "exp1", blob, ttl_ms=86_400_000)
    """

    def __init__(self, redis: Redis, codec: Codec, keys: KeyLayout = layout) -> None:
        self.redis = redis
        self.codec = codec
        self.layout = keys
        self._tns = keys.TENANT_NS
        self._keys = keys.script_keys()
        self._submit = redis.register_script(keys.script(BULK_SUBMIT))
        self._status = redis.register_script(keys.script(BULK_STATUS))

    async def submit(self, header: BulkHeader, groups: Sequence[bytes], *, now: int, fresh: bool) -> bytes:
        """Write the jobs of ``groups`` (each from :func:`pack_rows`), all Lua calls in one pipeline.

        Returns one flag byte per job: ``b"1"`` created, ``b"0"`` its id was already taken.
        """
        if not groups:
            return b""
        head: list[Any] = [
            now,
            self.layout.wake_channel(header.queue),
            self.layout.queue_key(header.queue),
            header.workspace,
            header.function,
            "" if header.timeout is None else repr(float(header.timeout)),
            "" if header.max_tries is None else str(header.max_tries),
            header.state,
            header.score_ms,
            header.job_ttl_ms,
            header.meta_ttl_ms,
            header.batch,
            "1" if fresh else "0",
        ]
        self.layout.check_queue(header.queue)
        if self._keys:  # the cluster layout: its client's pipelines refuse scripts
            if header.durable_ms:
                raise ConfigurationError(NO_DURABLE_ON_CLUSTER)
            outs = await run_scripts(self.redis, [(self._submit, [*head, blob]) for blob in groups], keys=self._keys)
            return b"".join(o if isinstance(o, bytes) else str(o).encode() for o in outs)
        async with self.redis.pipeline(transaction=False) as pipe:
            for blob in groups:
                await self._submit(keys=[], args=[*head, blob], client=pipe)
            if header.durable_ms:
                add_wait(pipe, header.durable_ms)
            outs = await pipe.execute()
        if header.durable_ms:
            check_acked(outs.pop(), [], header.durable_ms, f"the jobs of batch {header.batch}")
        return b"".join(o if isinstance(o, bytes) else str(o).encode() for o in outs)

    async def statuses(self, job_ids: Sequence[str], *, group: int = 5000) -> bytes:
        """One status letter per job (see :data:`BULK_STATUS`), in one pipelined round trip."""
        if not job_ids:
            return b""
        blobs = [
            msgpack.packb(list(job_ids[start : start + group]), use_bin_type=False)
            for start in range(0, len(job_ids), group)
        ]
        if self._keys:  # the cluster layout: its client's pipelines refuse scripts
            parts = await run_scripts(self.redis, [(self._status, [blob]) for blob in blobs], keys=self._keys)
            return b"".join(p if isinstance(p, bytes) else str(p).encode() for p in parts)
        async with self.redis.pipeline(transaction=False) as pipe:
            for blob in blobs:
                await self._status(keys=[], args=[blob], client=pipe)
            parts = await pipe.execute()
        return b"".join(p if isinstance(p, bytes) else str(p).encode() for p in parts)

    async def _mgets(self, groups: list[list[str]]) -> list[list[Any]]:
        """MGET each group of keys, pipelined (one call each in the cluster layout: its pipelines refuse MGET)."""
        if self._keys:
            return [await self.redis.mget(keys) for keys in groups]
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys in groups:
                pipe.mget(keys)
            out: list[list[Any]] = await pipe.execute()
        return out

    async def results(self, job_ids: Sequence[str], *, group: int = 500) -> list[bytes | None]:
        """The raw result envelopes of ``job_ids`` (``None`` where there is none), pipelined."""
        if not job_ids:
            return []
        groups = [
            [self.layout.result_key(j) for j in job_ids[start : start + group]]
            for start in range(0, len(job_ids), group)
        ]
        parts = await self._mgets(groups)
        out: list[bytes | None] = []
        for part in parts:
            out.extend(part)
        return out

    async def calls(self, job_ids: Sequence[str]) -> list[tuple[list[Any], dict[str, Any]] | None]:
        """The arguments each job was submitted with, from its result or else its definition (``None``: gone).

        A cancel-before-start or a lost job leaves a result without the call: the job's own then.
        """
        if not job_ids:
            return []
        results, jobs = await self._mgets(
            [[self.layout.result_key(j) for j in job_ids], [self.layout.job_key(j) for j in job_ids]]
        )
        out: list[tuple[list[Any], dict[str, Any]] | None] = []
        for res, job in zip(results, jobs, strict=True):
            found: tuple[list[Any], dict[str, Any]] | None = None
            if res is not None:
                call = job_call_of(decode_result(self.codec, res))
                if call is not None and (call.args or call.kwargs):
                    found = (call.args, call.kwargs)
            if found is None and job is not None:
                job_call = decode_job(self.codec, job)
                if job_call.args or job_call.kwargs:
                    found = (job_call.args, job_call.kwargs)
            out.append(found)
        return out

    # ------------------------------------------------------------------ manifest
    async def write_manifest(self, tenant: str, batch_id: str, blob: bytes, *, ttl_ms: int) -> None:
        """Store (replace) the manifest and extend the lifetime of the batch's other keys."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(manifest_key(tenant, batch_id, self._tns), blob, px=ttl_ms)
            for key in (patches_key, rows_failed_key, frame_index_key):
                pipe.pexpire(key(tenant, batch_id, self._tns), ttl_ms)
            await pipe.execute()

    async def read_manifest(self, tenant: str, batch_id: str) -> tuple[bytes | None, dict[bytes, bytes]]:
        """The manifest blob and the patches hash, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(manifest_key(tenant, batch_id, self._tns))
            pipe.hgetall(patches_key(tenant, batch_id, self._tns))
            blob, patches = await pipe.execute()
        return blob, dict(patches or {})

    async def write_patches(self, tenant: str, batch_id: str, patches: dict[str, bytes], *, ttl_ms: int) -> None:
        """Set some chunks' patch lists (field = chunk index)."""
        if not patches:
            return
        key = patches_key(tenant, batch_id, self._tns)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=patches)
            pipe.pexpire(key, ttl_ms)
            pipe.pexpire(manifest_key(tenant, batch_id, self._tns), ttl_ms)
            await pipe.execute()

    async def clear_patches(self, tenant: str, batch_id: str) -> None:
        """Forget a keyed batch's re-runs (its content changed: the chunks are new jobs)."""
        await self.redis.delete(patches_key(tenant, batch_id, self._tns))

    async def record_rows_failed(self, tenant: str, batch_id: str, job_id: str, failed: int) -> None:
        """A chunk job says how many of its items failed (the chunk runner calls this)."""
        key = rows_failed_key(tenant, batch_id, self._tns)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, job_id, str(failed))
            pipe.pexpire(key, 7 * 86_400_000)
            await pipe.execute()

    async def rows_failed(self, tenant: str, batch_id: str) -> dict[str, int]:
        """Items that failed inside each finished chunk job, as the chunk runner reported them."""
        raw: dict[Any, Any] = await self.redis.hgetall(rows_failed_key(tenant, batch_id, self._tns))  # type: ignore[misc]
        return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}

    async def record_item_seconds(
        self, tenant: str, function: str, per_item: float, *, now_ms: int, items: int = 1
    ) -> bool:
        """A chunk job says how long one item of ``function`` took (seconds, averaged over its ``items``).

        Returns False instead of raising when the server refused it: it is a planning hint only.
        """
        key = layout.item_seconds_key(tenant)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hset(key, function, f"{per_item:.9f}:{now_ms}:{items}")
                pipe.pexpire(key, ITEM_SECONDS_TTL_MS)
                await pipe.execute()
        except RedisError:
            return False
        return True

    async def item_seconds(self, tenant: str, function: str) -> tuple[float, int, int] | None:
        """The last measured seconds per item of ``function``, when (ms) and over how many items; None if never."""
        raw = await self.redis.hget(layout.item_seconds_key(tenant), function)  # type: ignore[misc]
        if raw is None:
            return None
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            value, when, items = text.split(":")
            return float(value), int(when), int(items)
        except ValueError:
            return None  # not written by taskq: as if never measured

    async def write_index(self, tenant: str, batch_id: str, blob: bytes, *, ttl_ms: int) -> None:
        await self.redis.set(frame_index_key(tenant, batch_id, self._tns), blob, px=ttl_ms)

    async def read_index(self, tenant: str, batch_id: str) -> bytes | None:
        blob: bytes | None = await self.redis.get(frame_index_key(tenant, batch_id, self._tns))
        return blob
