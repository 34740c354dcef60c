"""Jobs that take other jobs as arguments, in Redis: link a waiting job to its upstream jobs, read their results.

A job submitted with handles among its arguments is written waiting (not due), then linked: one
script counts the upstream jobs still unfinished and adds the job to each one's ``kids`` set; the
upstream's finish script (``UPSTREAM_RELEASE`` in :mod:`.layout`) releases it when the count
reaches 0, or at once when an upstream job fails or is cancelled. The worker then swaps the
handles' markers for the upstream results, or records ``UpstreamFailed``::

    await UpstreamStore(redis).link("acme:child", ["acme:a", "acme:b"], now_ms=now)
    error = await resolve_upstreams(store, job_id, call)   # None: call's args now hold the results
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from ..runtime import remote_error
from ..serialization import RemoteError
from . import layout

if TYPE_CHECKING:
    from .envelope import JobCall
    from .store import Store

__all__ = ["BATCH_MARKER", "MARKER", "PARENTS_KEY", "UpstreamStore", "resolve_upstreams", "substitute"]

#: how an upstream job's handle travels in the arguments: ``{MARKER: job_id}``
MARKER = "$taskq_upstream"
#: how a batch's handle travels: ``{BATCH_MARKER: [its job ids], "runner": whether they run chunks}``
BATCH_MARKER = "$taskq_upstream_batch"
#: the keyword the client adds to a waiting job's call: its upstream job ids (the worker takes it out)
PARENTS_KEY = "$taskq_upstreams"
#: the longest a job waits for its upstream jobs before its definition expires
WAITING_TTL_MS = 7 * 86_400_000

#: ARGV: child id, now_ms, then the upstream ids.  Returns the number of upstream jobs still running.
#: An upstream whose record is not a hash (corrupt) fails the child at once, naming the key; a ``kids``
#: key of another type is rebuilt from the dependents the upstream's record names.
LINK = (
    layout.PRELUDE
    + layout.UPSTREAM_RELEASE
    + """
local child, now = ARGV[1], tonumber(ARGV[2])
local cmk = meta_key(child)
local left = 0
local parents = {}
for i = 3, #ARGV do parents[#parents + 1] = ARGV[i] end
redis.call('HSET', cmk, 'parents', table.concat(parents, ','), 'deps_n', #parents)
for _, p in ipairs(parents) do
  local pmk = meta_key(p)
  materialize(p, 'arq:queue')  -- a queued upstream's record becomes its hash: its dependents are named there
  local st = redis.pcall('HGET', pmk, 'state')
  if type(st) == 'table' then
    blame(cmk, p, 'its record ' .. pmk .. ' is not a hash (corrupt)')
  else
    if st then
      -- one more dependent needs its result (given back by release_parents when the dependent ends)
      redis.pcall('HINCRBY', pmk, 'deps_pending', 1)
      -- the upstream's record names its dependents (the first ones: a record stays small)
      local kids = redis.call('HGET', pmk, 'children')
      if not kids or kids == '' then
        redis.call('HSET', pmk, 'children', child)
      elseif string.len(kids) < 4000 then
        redis.call('HSET', pmk, 'children', kids .. ',' .. child)
      end
    end
    if st == 'complete' and redis.call('EXISTS', RES .. p) == 1 then
      keep_result_for(p, child)  -- finished: nothing to wait for, but its result must outlive the wait
    elseif (not st) or st == 'failed' or st == 'cancelled' or st == 'complete' then
      blame(cmk, p, nil)  -- failed, cancelled, or gone (its result expired): the child cannot run
    else
      local kk = TNS .. tenant_of(p) .. ':kids:' .. p
      local kt = redis.call('TYPE', kk)['ok']
      if kt ~= 'set' and kt ~= 'none' then
        -- corrupt: rebuilt from the dependents the upstream's record names (this one included)
        redis.call('DEL', kk)
        for c in string.gmatch(redis.call('HGET', pmk, 'children') or '', '[^,]+') do
          if c ~= child and redis.pcall('HGET', meta_key(c), 'state') == 'waiting' then redis.call('SADD', kk, c) end
        end
      end
      if redis.call('SADD', kk, child) == 1 then left = left + 1 end
      if redis.call('PTTL', kk) < 604800000 then redis.call('PEXPIRE', kk, 604800000) end
    end
  end
end
redis.call('HSET', cmk, 'deps_left', left)
if redis.call('HEXISTS', cmk, 'upstream_failed') == 1 or left == 0 then
  release_child(child, now)
end
return left
"""
)


class UpstreamStore:
    """Links waiting jobs to their upstream jobs (see the module docstring).

    Example::

        still_running = await UpstreamStore(redis).link(child_id, parent_ids, now_ms=now)
    """

    def __init__(self, redis: Redis) -> None:
        self._link = redis.register_script(LINK)

    async def link(self, child: str, parents: list[str], *, now_ms: int) -> int:
        """Make ``child`` (written waiting) wait for ``parents``; returns how many are still unfinished."""
        left = await self._link(keys=[], args=[child, now_ms, *parents])
        return int(left)


def substitute(value: Any, results: dict[str, Any], depth: int = 0) -> Any:
    """``value`` with every job marker replaced by its result and every batch marker by its items' results."""
    if depth > 50:
        return value
    if isinstance(value, dict):
        if len(value) == 1 and MARKER in value and value[MARKER] in results:
            return results[value[MARKER]]
        if BATCH_MARKER in value and isinstance(value[BATCH_MARKER], list):
            return _batch_values(value[BATCH_MARKER], bool(value.get("runner")), results)
        return {k: substitute(v, results, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, results, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(substitute(v, results, depth + 1) for v in value)
    return value


class _ItemFailed(Exception):
    def __init__(self, job_id: str, why: str) -> None:
        super().__init__(why)
        self.job_id = job_id
        self.why = why


def _batch_values(job_ids: list[str], runner: bool, results: dict[str, Any]) -> list[Any]:
    """A batch's items' results in input order (a chunk job's result holds its items' values and errors)."""
    if not runner:
        return [results[j] for j in job_ids]
    out: list[Any] = []
    for job_id in job_ids:
        chunk = results[job_id]
        if not isinstance(chunk, dict) or "v" not in chunk:
            raise _ItemFailed(job_id, "its result is not a chunk of items")
        if chunk.get("e"):
            offset, error = chunk["e"][0]
            raise _ItemFailed(
                job_id,
                f"item {offset} of its chunk failed: {getattr(error, 'type', '?')}: {getattr(error, 'message', error)}",
            )
        out.extend(chunk["v"])
    return out


async def resolve_upstreams(store: Store, job_id: str, call: JobCall) -> RemoteError | None:
    """Put the upstream results in place of their markers in ``call``; the ``UpstreamFailed`` error if one failed.

    One round trip reads every upstream result and the job's own upstream marks; only a failure reads
    more (the upstream jobs' states, to say why a result is missing).
    """
    parents = [str(p) for p in call.kwargs.pop(PARENTS_KEY, None) or []]
    if not parents:
        return None
    async with store.redis.pipeline(transaction=False) as pipe:
        pipe.mget([layout.result_key(p) for p in parents])
        pipe.hmget(layout.meta_key(job_id), ["upstream_failed", "upstream_why"])
        blobs, marks = await pipe.execute(raise_on_error=False)
    if isinstance(blobs, Exception):
        raise blobs  # the server failed: the engine records it (a reply is not a crash)
    failed, why = (None, None) if isinstance(marks, Exception) else (_text(marks[0]), _text(marks[1]))
    if failed:
        if not why and failed in parents and blobs[parents.index(failed)] is None:
            why = await _missing_why(store, failed, layout.result_key(failed))
        return _upstream_failed(job_id, failed, why or _error_of(store, failed, blobs, parents) or "it failed")
    results: dict[str, Any] = {}
    for parent, blob in zip(parents, blobs, strict=True):
        key = layout.result_key(parent)
        if blob is None:
            return _upstream_failed(job_id, parent, await _missing_why(store, parent, key))
        try:
            record = store.decode_result(blob)
        except Exception as exc:
            return _upstream_failed(job_id, parent, f"its result {key} cannot be read ({type(exc).__name__}: corrupt)")
        if not record.success:
            return _upstream_failed(job_id, parent, _describe(record.error) or "it failed")
        results[parent] = record.value
    try:
        call.args = substitute(call.args, results)
        call.kwargs = substitute(call.kwargs, results)
    except _ItemFailed as exc:
        return _upstream_failed(job_id, exc.job_id, exc.why)
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _describe(error: Any) -> str | None:
    return None if error is None else f"{error.type}: {error.message}"


def _error_of(store: Store, parent: str, blobs: list[Any], parents: list[str]) -> str | None:
    """The error recorded in the blamed upstream's result, when it is one of the blobs read."""
    blob = blobs[parents.index(parent)] if parent in parents else None
    try:
        return _describe(store.decode_result(blob).error) if blob is not None else None
    except Exception:
        return None


async def _missing_why(store: Store, parent: str, key: str) -> str:
    """Why an upstream's result is missing: gone (expired or deleted), or the job has not finished."""
    try:
        state = _text(await store.redis.hget(layout.meta_key(parent), "state"))  # type: ignore[misc]
    except Exception:
        state = None
    if state in ("queued", "deferred", "waiting", "in_progress", "retrying"):
        return f"it has not finished ({state}), yet this job was released: its count of upstream jobs was wrong"
    return f"its result {key} is gone (expired or deleted)"


def _upstream_failed(job_id: str, parent: str, why: str) -> RemoteError:
    return remote_error(
        "UpstreamFailed",
        f"job {job_id} was not run: the job it takes as an argument, {parent}, did not complete ({why}). "
        f"Fix and re-run {parent}, then submit this job again.",
        details={"upstream": parent},
    )
