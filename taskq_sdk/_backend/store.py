"""Reads and writes of jobs: submit, state, result, cancel, listings, workers, registry - and the rest.

Everything is one round trip where it can be (Lua scripts, pipelines). The :class:`Store` returns
taskq models, never arq's; its parts cover the other key families (``store.batches``,
``store.metrics``, ``store.health``, ``store.hooks``, ``store.schedules``), so no code outside
``_backend`` spells a key::

    store = Store(redis, codec, settings)
    created = await store.submit([SubmitRow(...)], wake_queue="default")
    state = await store.state(job_id)      # JobState(status=JobStatus.queued, info=JobInfo(...))
    await store.hooks.register(job_id, "https://hooks.example.com/done")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError

from .._names import tenant_of
from ..config import Settings
from ..errors import ConfigurationError
from ..models import JobInfo, JobStatus, Progress, WorkerInfo, ms_to_dt
from ..serialization import Codec, RemoteError
from . import layout, liveness
from .autopipe import AutoPipeline
from .batches import BatchStore
from .cache_io import CacheStore
from .connection import close_redis, is_moving_slot, run_scripts
from .durable import NO_DURABLE_ON_CLUSTER, add_wait, check_acked, durable_timeout_ms
from .envelope import JobCall, ResultRecord, decode_job, decode_result, encode_result, job_call_of
from .health_io import HealthReader
from .hooks import HookStore
from .keys import KeyLayout, layout_for
from .metrics_io import MetricsReader
from .schedules import ScheduleClaims
from .upstream_io import UpstreamStore

#: features whose scripts span slots (see :meth:`Store.refuse_on_cluster`)
CACHE_FEATURE = "the result cache (cache=, _cache=)"
UPSTREAM_FEATURE = "jobs that take other jobs as arguments"
LIMITS_FEATURE = "rate and concurrency limits (rate_limit=, max_concurrency=, _limit_key=)"

__all__ = [
    "CACHE_FEATURE",
    "LIMITS_FEATURE",
    "UPSTREAM_FEATURE",
    "JobState",
    "ResultRecord",
    "Store",
    "SubmitRow",
    "now_ms",
]


def now_ms() -> int:
    """Wall-clock milliseconds, as arq uses for queue scores."""
    return int(time.time() * 1000)


@dataclass
class SubmitRow:
    """One job ready to be written: its full id, encoded definition and taskq metadata."""

    job_id: str
    function: str
    job_bytes: bytes
    queue: str
    workspace: str
    score_ms: int
    job_ttl_ms: int
    timeout: float | None
    max_tries: int | None
    state: str
    args_repr: str
    retry_of: str | None = None
    batch: str | None = None
    durable: bool = False
    limit_key: str | None = None


@dataclass
class JobState:
    """A job's status and info, read in one round trip."""

    status: JobStatus
    info: JobInfo
    exists: bool  # any trace of the job (meta, queue entry, claim, result)
    has_meta: bool
    result_blob: bytes | None = None  # the result envelope, when asked for and present
    record: ResultRecord | None = None  # the result envelope decoded, when it was read (never decode twice)


def _s(v: Any) -> str:
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else str(v)


def _f(v: Any) -> float | None:
    s = _s(v)
    if not s:
        return None
    try:
        return float(s)
    except ValueError:
        return None


def _i(v: Any) -> int | None:
    f = _f(v)
    return None if f is None else int(f)


class Store:
    """Reads and writes jobs in Redis for a client (see module docstring).

    Example::

        store = Store(redis, codec, settings)
        await store.cancel(job_id)   # 'cancelled' | 'running' | 'finished' | 'unknown'
    """

    def __init__(
        self, redis: Redis, codec: Codec, settings: Settings, queue: str | None = None, *, pipelined: bool = False
    ) -> None:
        self.redis = redis
        self.codec = codec
        self.settings = settings
        #: the key layout: arq's own, or the Redis Cluster one bound to ``queue`` (see ``keys``)
        self.queue = queue or settings.queue
        self.layout: KeyLayout = layout_for(settings, self.queue)
        self._keys = self.layout.script_keys()
        self._submit = redis.register_script(self.layout.SUBMIT)
        self._state = redis.register_script(self.layout.STATE)
        self._cancel = redis.register_script(self.layout.CANCEL)
        #: submits waiting to share one script call, by (wake queue, reply_to); see :meth:`submit_one`
        self._joining: dict[tuple[str, str], list[tuple[SubmitRow, asyncio.Future[bool]]]] = {}
        self._submitting = 0
        self._heads: dict[str | None, tuple[str, str, str, str]] = {}
        self._joined: set[asyncio.Task[None]] = set()
        #: script calls made by :meth:`submit_one`, and the rows they carried (for benchmarks and tests)
        self.submit_calls = 0
        self.submit_rows = 0
        #: a client's hot calls (submit, state, result) coalesce per loop tick on one connection of
        #: their own (see autopipe); a worker's or a job's store (``pipelined=False``) opens none, nor
        #: does a cluster client (``for_redis`` declines it)
        self.auto = AutoPipeline.for_redis(redis) if pipelined else None

    # ------------------------------------------------------------------ the other key families
    @cached_property
    def batches(self) -> BatchStore:
        """Batch manifests, bulk submit, bulk status (see :mod:`.batches`)."""
        return BatchStore(self.redis, self.codec, self.layout)

    @cached_property
    def cache(self) -> CacheStore:
        """The input-hash result cache's entries (see :mod:`.cache_io`)."""
        self.refuse_on_cluster(CACHE_FEATURE)
        return CacheStore(self.redis)

    @cached_property
    def upstream(self) -> UpstreamStore:
        """Links of jobs that wait on other jobs (see :mod:`.upstream_io`)."""
        self.refuse_on_cluster(UPSTREAM_FEATURE)
        return UpstreamStore(self.redis)

    def refuse_on_cluster(self, what: str) -> None:
        """Raise ConfigurationError for a feature the Redis Cluster layout does not offer (yet).

        Their scripts touch a tenant's keys and several jobs' keys at once, which the cluster layout keeps
        on different slots: refused with the reason before anything is written, not with a cross-slot reply.

        Example::

            store.refuse_on_cluster(UPSTREAM_FEATURE)
        """
        if self._keys:
            raise ConfigurationError(
                f"{what}: not offered on a Redis Cluster yet; use a single server or Sentinel for it"
            )

    @cached_property
    def metrics(self) -> MetricsReader:
        """The metric counters the Lua scripts keep (see :mod:`.metrics_io`)."""
        return MetricsReader(self.redis, self.layout)

    @cached_property
    def health(self) -> HealthReader:
        """Server facts, queue heads, claimed jobs and the monitoring history (see :mod:`.health_io`)."""
        return HealthReader(self.redis, self.layout)

    @cached_property
    def hooks(self) -> HookStore:
        """Webhook registrations and delivery outcomes (see :mod:`.hooks`)."""
        return HookStore(self.redis, self.layout)

    @cached_property
    def schedules(self) -> ScheduleClaims:
        """Claims of cron schedule slots (see :mod:`.schedules`)."""
        return ScheduleClaims(self.redis)

    async def close(self) -> None:
        """Close the connection pool (and the auto-pipeline's connection)."""
        if self.auto is not None:
            await self.auto.close()
        await close_redis(self.redis)

    async def _run(self, script: Any, args: list[Any]) -> Any:
        """Run a registered script through the auto-pipeline; on a lost connection, through the pool.

        The pool's path reconnects and retries as configured; a timeout (a hung server) is not
        retried here, so a call still fails within the socket timeout (see ``run_scripts``).
        """
        (out,) = await run_scripts(self.redis, [(script, args)], keys=self._keys, auto=self.auto)
        return out

    async def _get(self, key: str) -> Any:
        """GET through the auto-pipeline (see :meth:`_run`)."""
        auto = self.auto
        if auto is not None and auto.usable:
            try:
                return await auto.execute("GET", key)
            except RedisConnectionError as exc:
                if isinstance(exc, AuthenticationError):
                    raise
        return await self.redis.get(key)

    async def ping(self) -> None:
        await self.redis.ping()

    # ------------------------------------------------------------------ ttl policy
    @property
    def result_ttl_ms(self) -> int:
        return int(self.settings.keep_result * 1000)

    @property
    def meta_ttl_after_finish_ms(self) -> int:
        return int((self.settings.keep_result + self.settings.tombstone_ttl) * 1000)

    # ------------------------------------------------------------------ submit
    async def submit(
        self, rows: Sequence[SubmitRow], *, wake_queue: str | None, reply_to: str = "", chunk: int = 2000
    ) -> list[bool]:
        """Write jobs atomically per chunk; returns, per row, whether it was created (False: id taken).

        ``reply_to``: the submitting client's id; the jobs' state events also go to its reply channel.
        """
        now = now_ms()
        created: list[bool] = []
        # jobs due now on wake_queue may be handed straight to an idle worker of that queue
        header: list[Any] = [now, *self._submit_head(wake_queue), reply_to]
        layout = self.layout
        for r in rows:
            layout.check_queue(r.queue)
        after_finish = self.meta_ttl_after_finish_ms
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            argv: list[Any] = list(header)
            for r in part:
                argv += [
                    r.job_id,
                    r.job_bytes,
                    r.score_ms,
                    r.job_ttl_ms,
                    r.job_ttl_ms + after_finish,
                    layout.queue_key(r.queue),
                    r.workspace,
                    r.function,
                    "" if r.timeout is None else repr(float(r.timeout)),
                    "" if r.max_tries is None else str(r.max_tries),
                    r.state,
                    r.retry_of or "",
                    r.batch or "",
                    r.args_repr,
                ]
            if any(r.durable for r in part):
                if self._keys:
                    raise ConfigurationError(NO_DURABLE_ON_CLUSTER)
                timeout_ms = durable_timeout_ms(self.settings)
                async with self.redis.pipeline(transaction=False) as pipe:
                    await self._submit(keys=self._keys, args=argv, client=pipe)
                    add_wait(pipe, timeout_ms)
                    out, acked = await pipe.execute()
                check_acked(acked, [r.job_id for r in part], timeout_ms)
            elif self._keys:  # a cluster: the queue's slot may be on its way to another shard
                out = await self._moving_slot_safe(partial(self._submit, keys=self._keys, args=argv))
            else:
                out = await self._run(self._submit, argv)
            created.extend(bool(x) for x in out)
        return created

    def _submit_head(self, wake_queue: str | None) -> tuple[str, str, str, str]:
        """SUBMIT's header keys for jobs woken on ``wake_queue``: wake channel, ready set, push prefix, queue."""
        head = self._heads.get(wake_queue)
        if head is None:
            if wake_queue and self._keys:
                # the cluster layout hands no job over: PUBLISH there counts only the shard's own
                # subscribers, so a listening worker on another node would look absent
                head = (self.layout.wake_channel(wake_queue), "", "", "")
            elif wake_queue:
                head = (
                    self.layout.wake_channel(wake_queue),
                    self.layout.ready_key(wake_queue),
                    self.layout.push_channel(wake_queue, ""),
                    self.layout.queue_key(wake_queue),
                )
            else:
                head = ("", "", "", "")
            if len(self._heads) >= 256:  # many queues: the cache stays small
                self._heads.clear()
            self._heads[wake_queue] = head
        return head

    async def submit_one(self, row: SubmitRow, *, reply_to: str = "") -> bool:
        """Write one job (True: created); submits issued while another is in flight share one script call.

        A lone submit goes out at once. Submits made while one is on its way (``asyncio.gather``,
        threads sharing a ``Client``) join the current loop tick's call: one ``SUBMIT`` with many
        rows, which the script handles one by one in order, as separate calls would.
        """
        if not self._submitting:
            self._submitting += 1
            try:
                self.submit_calls += 1
                self.submit_rows += 1
                return (await self.submit([row], wake_queue=row.queue, reply_to=reply_to))[0]
            finally:
                self._submitting -= 1
        loop = asyncio.get_running_loop()
        key = (row.queue, reply_to)
        fut: asyncio.Future[bool] = loop.create_future()
        joining = self._joining.get(key)
        if joining is None:
            joining = self._joining[key] = []
            loop.call_soon(self._send_joined, key)
        joining.append((row, fut))
        return await fut

    def _send_joined(self, key: tuple[str, str]) -> None:
        task = asyncio.ensure_future(self._submit_joined(key, self._joining.pop(key)))
        self._joined.add(task)
        task.add_done_callback(self._joined.discard)

    async def _submit_joined(self, key: tuple[str, str], joined: list[tuple[SubmitRow, asyncio.Future[bool]]]) -> None:
        self._submitting += 1
        try:
            self.submit_calls += 1
            self.submit_rows += len(joined)
            created = await self.submit([row for row, _ in joined], wake_queue=key[0], reply_to=key[1])
        except BaseException as exc:
            for _, fut in joined:
                if not fut.done():
                    fut.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        finally:
            self._submitting -= 1
        for (_, fut), made in zip(joined, created, strict=True):
            if not fut.done():
                fut.set_result(made)

    async def _moving_slot_safe(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Run a script call again while the cluster moves the queue's slot (within the outage budget).

        A script that meets a job key already moved to the new shard stops at that first command,
        before it wrote anything: the same call, sent again, is redirected to the new shard.
        """
        deadline = time.monotonic() + self.settings.outage_budget
        while True:
            try:
                return await call()
            except ResponseError as exc:
                if not is_moving_slot(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ state
    async def state(self, job_id: str, *, with_result: bool = False) -> JobState:
        """The job's status and info in one round trip (``with_result``: and its result envelope)."""
        raw = await self._run(self._state, [job_id, "1" if with_result else "0"])
        return await self._interpret(job_id, raw)

    async def states(self, job_ids: Sequence[str]) -> list[JobState]:
        """Many jobs' states in one pipelined round trip."""
        if not job_ids:
            return []
        raws = await run_scripts(self.redis, [(self._state, [jid, "0"]) for jid in job_ids], keys=self._keys)
        return [await self._interpret(jid, raw) for jid, raw in zip(job_ids, raws, strict=True)]

    async def _interpret(self, job_id: str, raw: list[Any]) -> JobState:
        meta_flat, result_exists, holder, score, job_exists, result_blob = raw
        meta = {_s(meta_flat[i]): meta_flat[i + 1] for i in range(0, len(meta_flat), 2)}
        has_meta = bool(meta)
        state = _s(meta.get("state"))
        now = now_ms()
        status: JobStatus
        record: ResultRecord | None = None
        if result_exists:
            if state in ("complete", "failed", "cancelled"):
                status = JobStatus(state)
            else:
                record = self.decode_result(result_blob) if result_blob else await self.result(job_id)
                if record is None:
                    status = JobStatus.expired
                elif record.success:
                    status = JobStatus.complete
                elif record.error is not None and record.error.kind == "cancelled":
                    status = JobStatus.cancelled
                else:
                    status = JobStatus.failed
        elif holder is not None:
            status = JobStatus.in_progress
        elif score is not None:
            if state == "waiting":
                status = JobStatus.waiting
            elif state == "retrying":
                status = JobStatus.retrying
            elif float(score) > now:
                status = JobStatus.deferred
            else:
                status = JobStatus.queued
        elif has_meta:
            status = JobStatus.expired if state in ("complete", "failed", "cancelled") else JobStatus.lost
        else:
            status = JobStatus.not_found
        exists = has_meta or bool(result_exists) or holder is not None or score is not None or bool(job_exists)
        info = self._info(job_id, status, meta, score, layout.claim_holder(_s(holder)) if holder is not None else None)
        return JobState(
            status=status, info=info, exists=exists, has_meta=has_meta, result_blob=result_blob, record=record
        )

    def _info(self, job_id: str, status: JobStatus, meta: dict[str, Any], score: Any, holder: str | None) -> JobInfo:
        prog = Progress(
            fraction=_f(meta.get("p")),
            done=_f(meta.get("pd")),
            total=_f(meta.get("pt")),
            message=_s(meta.get("pmsg")) or None,
            updated_at=ms_to_dt(_s(meta.get("pts")) or None),
        )
        if status is JobStatus.complete and prog.fraction is None:
            prog = Progress(fraction=1.0, updated_at=ms_to_dt(_s(meta.get("finished")) or None))
        # a job without its hash: on the bound queue (cluster layout: the only one), else arq's default
        queue_key = _s(meta.get("queue")) or self.layout.queue_key(self.queue if self._keys else "default")
        return JobInfo(
            id=job_id,
            status=status,
            function=_s(meta.get("fn")) or None,
            tenant=(_s(meta.get("tenant")) or tenant_of(job_id)) if meta else "default",
            workspace=_s(meta.get("ws")) or "default",
            queue=self.layout.queue_name(queue_key),
            attempts=_i(meta.get("attempt")) or 0,
            max_tries=_i(meta.get("max_tries")),
            timeout=_f(meta.get("timeout")),
            enqueued_at=ms_to_dt(_s(meta.get("enq")) or None),
            scheduled_for=None  # a waiting job runs when its upstream jobs complete, not at a time
            if status is JobStatus.waiting
            else ms_to_dt(_s(meta.get("next_try")) or _s(meta.get("sched")) or (score or None) or _s(meta.get("enq"))),
            started_at=ms_to_dt(_s(meta.get("started")) or None),
            finished_at=ms_to_dt(_s(meta.get("finished")) or None),
            worker=_s(meta.get("worker")) or holder or None,
            progress=prog,
            error=_s(meta.get("err")) or None,
            retry_of=_s(meta.get("retry_of")) or None,
            retried_by=_s(meta.get("retried_by")) or None,
            batch_id=_s(meta.get("batch")) or None,
            args_repr=_s(meta.get("args")) or None,
            parents=[p for p in _s(meta.get("parents")).split(",") if p],
            children=[c for c in _s(meta.get("children")).split(",") if c],
            waiting=_s(meta.get("waiting")) or None,
        )

    # ------------------------------------------------------------------ results
    async def result_blob(self, job_id: str) -> bytes | None:
        """The raw result envelope, or ``None`` when there is none (yet, or any more)."""
        blob: bytes | None = await self._get(self.layout.result_key(job_id))
        return blob

    async def result(self, job_id: str) -> ResultRecord | None:
        """The decoded result envelope, or ``None`` when there is none (yet, or any more)."""
        blob = await self.result_blob(job_id)
        if blob is None:
            return None
        return self.decode_result(blob)

    def decode_result(self, blob: bytes) -> ResultRecord:
        """Decode a result envelope written by a taskq or arq worker (or by a cancel)."""
        return decode_result(self.codec, blob)

    async def cancel_requested(self, job_id: str) -> bool:
        """Whether a cancel of the job was requested while it ran (its worker stops it moments later)."""
        return bool(await self.redis.hexists(self.layout.meta_key(job_id), "cancel_requested"))  # type: ignore[misc]

    async def job_definition(self, job_id: str) -> JobCall | None:
        """The call a job was submitted with (function, args, kwargs, limit key), from its result or its definition."""
        record = await self.result(job_id)
        recorded = job_call_of(record) if record is not None else None
        if recorded is not None and (recorded.args or recorded.kwargs):
            return recorded
        blob = await self.redis.get(self.layout.job_key(job_id))
        if blob is not None:
            return decode_job(self.codec, blob)
        return recorded

    def cancel_blob(self, job_id: str, queue: str) -> bytes:
        """The result envelope a cancel-before-start leaves behind."""
        now = now_ms()
        err = RemoteError(type="JobCancelled", message="cancelled before it started", traceback="", kind="cancelled")
        return encode_result(
            self.codec,
            JobCall("", [], {}, now),
            attempt=0,
            success=False,
            value=err,
            started_ms=now,
            finished_ms=now,
            queue_key=self.layout.queue_key(queue),
            job_id=job_id,
        )

    # ------------------------------------------------------------------ cancel
    def _cancel_args(self, job_id: str, queue: str, now: int) -> list[Any]:
        event = '{"e": "done", "s": "cancelled"}'
        blob = self.cancel_blob(job_id, queue)
        return [job_id, now, blob, self.result_ttl_ms, self.meta_ttl_after_finish_ms, event]

    async def cancel(self, job_id: str, queue: str) -> str:
        """Cancel: 'cancelled' (was queued), 'running' (requested), 'finished' or 'unknown' (no change)."""
        out = await self._cancel(keys=self._keys, args=self._cancel_args(job_id, queue, now_ms()))
        return _s(out)

    async def cancel_many(self, job_ids: Sequence[str], queue: str) -> list[str]:
        """Cancel many jobs of one queue in one pipeline; each job's outcome as :meth:`cancel` says it."""
        if not job_ids:
            return []
        now = now_ms()
        if self._keys:  # the cluster layout: its client's pipelines refuse scripts
            calls = [(self._cancel, self._cancel_args(job_id, queue, now)) for job_id in job_ids]
            return [_s(o) for o in await run_scripts(self.redis, calls, keys=self._keys)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                await self._cancel(keys=self._keys, args=self._cancel_args(job_id, queue, now), client=pipe)
            outs = await pipe.execute(raise_on_error=False)
        return [_s(o) if isinstance(o, bytes | str) else str(o) for o in outs]

    # ------------------------------------------------------------------ listings
    async def job_ids(self, tenant: str, workspace: str | None, *, limit: int, offset: int = 0) -> list[str]:
        """Newest-first job ids of a tenant (optionally one workspace).

        The listing index is per workspace; a tenant-wide listing merges the indexes of the tenant's
        workspaces (and the tenant-wide index earlier versions wrote, while it lives).
        """
        if workspace is not None:
            raw = await self.redis.zrevrange(self.layout.index_key(tenant, workspace), offset, offset + limit - 1)
            return [_s(x) for x in raw]
        names: set[Any] = await self.redis.smembers(self.layout.workspaces_key(tenant))  # type: ignore[misc]
        keys = [self.layout.index_key(tenant, _s(w)) for w in sorted(names)] + [self.layout.index_key(tenant)]
        newest: dict[str, float] = {}
        for key in keys:
            for member, score in await self.redis.zrevrange(key, 0, offset + limit - 1, withscores=True):
                job_id = _s(member)
                newest[job_id] = max(score, newest.get(job_id, score))
        ordered = sorted(newest, key=lambda j: (newest[j], j), reverse=True)
        return ordered[offset : offset + limit]

    async def logs(self, job_id: str, last: int | None = None) -> list[str]:
        """Captured log lines of a job (the last ``last`` of them)."""
        start = -last if last else 0
        raw: list[Any] = await self.redis.lrange(self.layout.logs_key(job_id), start, -1)  # type: ignore[misc]
        return [_s(x) for x in raw]

    async def queue_depth(self, queue: str) -> int:
        """Jobs waiting or running in a queue (arq keeps running jobs in the queue set)."""
        return int(await self.redis.zcard(self.layout.queue_key(queue)))

    async def registry(self, queue: str) -> dict[str, float]:
        """Function names ever served on ``queue``, with the last time a worker said so (epoch s)."""
        raw: dict[Any, Any] = await self.redis.hgetall(self.layout.registry_key(queue))  # type: ignore[misc]
        return {_s(k): float(_s(v)) / 1000.0 for k, v in raw.items()}

    async def signatures(self, queue: str) -> dict[str, frozenset[str] | None]:
        """The keyword parameters workers published per function (``None``: takes ``**kwargs``); {} if none."""
        raw: dict[Any, Any] = await self.redis.hgetall(self.layout.signatures_key(queue))  # type: ignore[misc]
        return {_s(k): layout.decode_params(_s(v)) for k, v in raw.items() if not _s(k).startswith(layout.LIMITED)}

    async def limited_functions(self, queue: str) -> frozenset[str]:
        """The functions on ``queue`` whose workers published a rate or concurrency limit (``@job(rate_limit=)``)."""
        raw: list[Any] = await self.redis.hkeys(self.layout.signatures_key(queue))  # type: ignore[misc]
        cut = len(layout.LIMITED)
        return frozenset(_s(k)[cut:] for k in raw if _s(k).startswith(layout.LIMITED))

    async def announce_names(
        self, queue: str, names: Sequence[str], params: Mapping[str, frozenset[str] | None] | None = None
    ) -> None:
        """Record that ``names`` are served on ``queue`` now (what workers do in their heartbeats).

        ``params``: each function's keyword parameters, published so submits can check keywords.
        """
        if not names:
            return
        key = self.layout.registry_key(queue)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=dict.fromkeys(names, now_ms()))
            pipe.pexpire(key, layout.REGISTRY_TTL_MS)
            if params:
                skey = self.layout.signatures_key(queue)
                pipe.hset(skey, mapping={n: layout.encode_params(p) for n, p in params.items()})
                pipe.pexpire(skey, layout.REGISTRY_TTL_MS)
            await pipe.execute()

    async def workers(self, *, include_stopped: bool = True) -> list[WorkerInfo]:
        """Workers seen recently: live ones, and (briefly) ones that stopped gracefully.

        Any tenant may write the liveness keys, so entries that are not worker records are skipped.
        """
        try:
            ids = liveness.member_ids(await self.redis.zrange(layout.WORKERS_ZSET, 0, -1))
        except ResponseError as exc:
            if not liveness.is_wrong_type(exc):
                raise
            liveness.note_junk("the worker set is not a sorted set", exc)
            return []
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for wid in ids:
                pipe.hgetall(layout.worker_key(wid))
            rows = await pipe.execute(raise_on_error=False)
        out: list[WorkerInfo] = []
        stale: list[str] = []
        for wid, row in zip(ids, rows, strict=True):
            d = liveness.record(row)
            if d == {}:
                stale.append(wid)
                continue
            if d is None or (d.get("status") == "stopped" and not include_stopped):
                continue
            info = liveness.worker_info(wid, d)
            if info is not None:
                out.append(info)
        if stale:
            await self.redis.zrem(layout.WORKERS_ZSET, *stale)
        return out
