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

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from .._names import tenant_of
from ..config import Settings
from ..models import JobInfo, JobStatus, Progress, WorkerInfo, ms_to_dt
from ..serialization import Codec, RemoteError
from . import layout, liveness
from .batches import BatchStore
from .connection import run_scripts
from .durable import add_wait, check_acked, durable_timeout_ms
from .envelope import JobCall, ResultRecord, decode_job, decode_result, encode_result, job_call_of
from .health_io import HealthReader
from .hooks import HookStore
from .metrics_io import MetricsReader
from .schedules import ScheduleClaims

__all__ = ["JobState", "ResultRecord", "Store", "SubmitRow", "now_ms"]


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

    def __init__(self, redis: Redis, codec: Codec, settings: Settings) -> None:
        self.redis = redis
        self.codec = codec
        self.settings = settings
        self._submit = redis.register_script(layout.SUBMIT)
        self._state = redis.register_script(layout.STATE)
        self._cancel = redis.register_script(layout.CANCEL)

    # ------------------------------------------------------------------ the other key families
    @cached_property
    def batches(self) -> BatchStore:
        """Batch manifests, bulk submit, bulk status (see :mod:`.batches`)."""
        return BatchStore(self.redis, self.codec)

    @cached_property
    def metrics(self) -> MetricsReader:
        """The metric counters the Lua scripts keep (see :mod:`.metrics_io`)."""
        return MetricsReader(self.redis)

    @cached_property
    def health(self) -> HealthReader:
        """Server facts, queue heads, claimed jobs and the monitoring history (see :mod:`.health_io`)."""
        return HealthReader(self.redis)

    @cached_property
    def hooks(self) -> HookStore:
        """Webhook registrations and delivery outcomes (see :mod:`.hooks`)."""
        return HookStore(self.redis)

    @cached_property
    def schedules(self) -> ScheduleClaims:
        """Claims of cron schedule slots (see :mod:`.schedules`)."""
        return ScheduleClaims(self.redis)

    async def close(self) -> None:
        """Close the connection pool."""
        await self.redis.aclose(close_connection_pool=True)

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
        header: list[Any] = [now, "", "", "", "", reply_to]
        if wake_queue:
            header = [
                now,
                layout.wake_channel(wake_queue),
                layout.ready_key(wake_queue),
                layout.push_channel(wake_queue, ""),
                layout.queue_key(wake_queue),
                reply_to,
            ]
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            argv: list[Any] = list(header)
            for r in part:
                meta_ttl = r.job_ttl_ms + self.meta_ttl_after_finish_ms
                argv += [
                    r.job_id,
                    r.job_bytes,
                    r.score_ms,
                    r.job_ttl_ms,
                    meta_ttl,
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
                timeout_ms = durable_timeout_ms(self.settings)
                async with self.redis.pipeline(transaction=False) as pipe:
                    await self._submit(keys=[], args=argv, client=pipe)
                    add_wait(pipe, timeout_ms)
                    out, acked = await pipe.execute()
                check_acked(acked, [r.job_id for r in part], timeout_ms)
            else:
                out = await self._submit(keys=[], args=argv)
            created.extend(bool(x) for x in out)
        return created

    # ------------------------------------------------------------------ state
    async def state(self, job_id: str, *, with_result: bool = False) -> JobState:
        """The job's status and info in one round trip (``with_result``: and its result envelope)."""
        raw = await self._state(keys=[], args=[job_id, "1" if with_result else "0"])
        return await self._interpret(job_id, raw)

    async def states(self, job_ids: Sequence[str]) -> list[JobState]:
        """Many jobs' states in one pipelined round trip."""
        if not job_ids:
            return []
        raws = await run_scripts(self.redis, [(self._state, [jid, "0"]) for jid in job_ids])
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
            if state == "retrying":
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
        queue_key = _s(meta.get("queue")) or layout.queue_key("default")
        return JobInfo(
            id=job_id,
            status=status,
            function=_s(meta.get("fn")) or None,
            tenant=(_s(meta.get("tenant")) or tenant_of(job_id)) if meta else "default",
            workspace=_s(meta.get("ws")) or "default",
            queue=layout.queue_name(queue_key),
            attempts=_i(meta.get("attempt")) or 0,
            max_tries=_i(meta.get("max_tries")),
            timeout=_f(meta.get("timeout")),
            enqueued_at=ms_to_dt(_s(meta.get("enq")) or None),
            scheduled_for=ms_to_dt(_s(meta.get("next_try")) or _s(meta.get("sched")) or (score or None)),
            started_at=ms_to_dt(_s(meta.get("started")) or None),
            finished_at=ms_to_dt(_s(meta.get("finished")) or None),
            worker=_s(meta.get("worker")) or holder or None,
            progress=prog,
            error=_s(meta.get("err")) or None,
            retry_of=_s(meta.get("retry_of")) or None,
            retried_by=_s(meta.get("retried_by")) or None,
            batch_id=_s(meta.get("batch")) or None,
            args_repr=_s(meta.get("args")) or None,
            waiting=_s(meta.get("waiting")) or None,
        )

    # ------------------------------------------------------------------ results
    async def result_blob(self, job_id: str) -> bytes | None:
        """The raw result envelope, or ``None`` when there is none (yet, or any more)."""
        blob: bytes | None = await self.redis.get(layout.result_key(job_id))
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

    async def job_definition(self, job_id: str) -> tuple[str, list[Any], dict[str, Any]] | None:
        """The function, args and kwargs a job was submitted with (from its result or its definition)."""
        record = await self.result(job_id)
        recorded = job_call_of(record) if record is not None else None
        if recorded is not None and (recorded.args or recorded.kwargs):
            return recorded.function, recorded.args, recorded.kwargs
        blob = await self.redis.get(layout.job_key(job_id))
        if blob is not None:
            call = decode_job(self.codec, blob)
            return call.function, call.args, call.kwargs
        if recorded is not None:
            return recorded.function, recorded.args, recorded.kwargs
        return None

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
            queue_key=layout.queue_key(queue),
            job_id=job_id,
        )

    # ------------------------------------------------------------------ cancel
    def _cancel_args(self, job_id: str, queue: str, now: int) -> list[Any]:
        event = '{"e": "done", "s": "cancelled"}'
        blob = self.cancel_blob(job_id, queue)
        return [job_id, now, blob, self.result_ttl_ms, self.meta_ttl_after_finish_ms, event]

    async def cancel(self, job_id: str, queue: str) -> str:
        """Cancel: 'cancelled' (was queued), 'running' (requested), 'finished' or 'unknown' (no change)."""
        out = await self._cancel(keys=[], args=self._cancel_args(job_id, queue, now_ms()))
        return _s(out)

    async def cancel_many(self, job_ids: Sequence[str], queue: str) -> list[str]:
        """Cancel many jobs of one queue in one pipeline; each job's outcome as :meth:`cancel` says it."""
        if not job_ids:
            return []
        now = now_ms()
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                await self._cancel(keys=[], args=self._cancel_args(job_id, queue, now), client=pipe)
            outs = await pipe.execute(raise_on_error=False)
        return [_s(o) if isinstance(o, bytes | str) else str(o) for o in outs]

    # ------------------------------------------------------------------ listings
    async def job_ids(self, tenant: str, workspace: str | None, *, limit: int, offset: int = 0) -> list[str]:
        """Newest-first job ids of a tenant (optionally one workspace)."""
        key = layout.index_key(tenant, workspace)
        raw = await self.redis.zrevrange(key, offset, offset + limit - 1)
        return [_s(x) for x in raw]

    async def logs(self, job_id: str, last: int | None = None) -> list[str]:
        """Captured log lines of a job (the last ``last`` of them)."""
        start = -last if last else 0
        raw: list[Any] = await self.redis.lrange(layout.logs_key(job_id), start, -1)  # type: ignore[misc]
        return [_s(x) for x in raw]

    async def queue_depth(self, queue: str) -> int:
        """Jobs waiting or running in a queue (arq keeps running jobs in the queue set)."""
        return int(await self.redis.zcard(layout.queue_key(queue)))

    async def registry(self, queue: str) -> dict[str, float]:
        """Function names ever served on ``queue``, with the last time a worker said so (epoch s)."""
        raw: dict[Any, Any] = await self.redis.hgetall(layout.registry_key(queue))  # type: ignore[misc]
        return {_s(k): float(_s(v)) / 1000.0 for k, v in raw.items()}

    async def signatures(self, queue: str) -> dict[str, frozenset[str] | None]:
        """The keyword parameters workers published per function (``None``: takes ``**kwargs``); {} if none."""
        raw: dict[Any, Any] = await self.redis.hgetall(layout.signatures_key(queue))  # type: ignore[misc]
        return {_s(k): layout.decode_params(_s(v)) for k, v in raw.items()}

    async def announce_names(
        self, queue: str, names: Sequence[str], params: Mapping[str, frozenset[str] | None] | None = None
    ) -> None:
        """Record that ``names`` are served on ``queue`` now (what workers do in their heartbeats).

        ``params``: each function's keyword parameters, published so submits can check keywords.
        """
        if not names:
            return
        key = layout.registry_key(queue)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping=dict.fromkeys(names, now_ms()))
            pipe.pexpire(key, layout.REGISTRY_TTL_MS)
            if params:
                skey = layout.signatures_key(queue)
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
