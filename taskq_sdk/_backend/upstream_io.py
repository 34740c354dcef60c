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
LINK = (
    layout.PRELUDE
    + layout.UPSTREAM_RELEASE
    + """
local child, now = ARGV[1], tonumber(ARGV[2])
local cmk = meta_key(child)
local left, failed = 0, false
local parents = {}
for i = 3, #ARGV do
  local p = ARGV[i]
  parents[#parents + 1] = p
  local pmk = meta_key(p)
  local st = redis.call('HGET', pmk, 'state')
  if st then
    -- the upstream's record names its dependents (the first ones: a record stays small)
    local kids = redis.call('HGET', pmk, 'children')
    if not kids or kids == '' then
      redis.call('HSET', pmk, 'children', child)
    elseif string.len(kids) < 4000 then
      redis.call('HSET', pmk, 'children', kids .. ',' .. child)
    end
  end
  if st == 'complete' and redis.call('EXISTS', RES .. p) == 1 then
    -- finished: nothing to wait for
  elseif (not st) or st == 'failed' or st == 'cancelled' or st == 'complete' then
    failed = failed or p  -- failed, cancelled, or gone (its result expired): the child cannot run
  else
    local kk = TNS .. tenant_of(p) .. ':kids:' .. p
    if redis.call('SADD', kk, child) == 1 then left = left + 1 end
    if redis.call('PTTL', kk) < 604800000 then redis.call('PEXPIRE', kk, 604800000) end
  end
end
redis.call('HSET', cmk, 'deps_left', left, 'parents', table.concat(parents, ','))
if failed then
  redis.call('HSET', cmk, 'upstream_failed', failed)
  release_child(child, now)
elseif left == 0 then
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
    """Put the upstream results in place of their markers in ``call``; the ``UpstreamFailed`` error if one failed."""
    parents = [str(p) for p in call.kwargs.pop(PARENTS_KEY, None) or []]
    if not parents:
        return None
    async with store.redis.pipeline(transaction=False) as pipe:  # one round trip for both reads
        pipe.mget([layout.result_key(p) for p in parents])
        pipe.hget(layout.meta_key(job_id), "upstream_failed")
        blobs, failed = await pipe.execute()
    results: dict[str, Any] = {}
    for parent, blob in zip(parents, blobs, strict=True):
        record = store.decode_result(blob) if blob is not None else None
        if record is None or not record.success:
            if record is not None and record.error is not None:
                why = f"{record.error.type}: {record.error.message}"
            else:
                why = "its result is gone (expired or never written)"
            return _upstream_failed(job_id, parent, why)
        results[parent] = record.value
    if failed:
        blame = failed.decode() if isinstance(failed, bytes) else str(failed)
        return _upstream_failed(job_id, blame, "it failed or was cancelled")
    try:
        call.args = substitute(call.args, results)
        call.kwargs = substitute(call.kwargs, results)
    except _ItemFailed as exc:
        return _upstream_failed(job_id, exc.job_id, exc.why)
    return None


def _upstream_failed(job_id: str, parent: str, why: str) -> RemoteError:
    return remote_error(
        "UpstreamFailed",
        f"job {job_id} was not run: the job it takes as an argument, {parent}, did not complete ({why}). "
        f"Fix and re-run {parent}, then submit this job again.",
        details={"upstream": parent},
    )
