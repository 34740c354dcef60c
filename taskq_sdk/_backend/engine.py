"""The taskq worker engine: arq's ``Worker`` with push wake-up, batched claims and writes, renewed claims.

It keeps arq's key layout and envelopes (so plain arq clients and the stock ``arq`` worker
interoperate) and changes how work is found and finished:

* wakes on a pub/sub notice when work is submitted (polling every ``TASKQ_POLL_INTERVAL`` only
  as a fallback), and sleeps exactly until the next deferred job is due;
* claims up to its free slots in one Lua call that also loads the jobs and counts the attempt;
* writes results, progress and state changes in batched, ordered pipelines;
* renews the claims of running jobs, so a dead worker's job is retried within ``TASKQ_CLAIM_TTL``
  and a live worker's job is never started twice;
* cancels running jobs at once on request, drains gracefully on SIGTERM, and rides out server
  outages instead of exiting.

Example::

    engine = Engine(collect_jobs(["mypkg.jobs"]), settings=Settings(), queue="default")
    await engine.async_run()      # until SIGTERM / SIGINT (or, with burst=True, an empty queue)
    await engine.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from signal import Signals
from typing import Any

from arq.connections import ArqRedis
from arq.worker import Worker, func
from redis.exceptions import RedisError

from .._aio import stop_tasks
from .._chunks import RUNNER_NAME, chunk_calls
from .._names import tenant_of
from ..config import Settings
from ..errors import ConfigurationError, DeserializationError, SerializationError
from ..execution import Outcome, execute
from ..extensions import EngineExtension, FinishedJob
from ..models import WorkerInfo
from ..registry import JobSpec
from ..runtime import JobContext, Lease, install_output_capture, remote_error
from ..serialization import Codec, RemoteError, codec_for
from ..streaming import ItemWriter, item_writer
from . import layout, limits
from .autopipe import AutoPipeline
from .connection import (
    close_redis,
    is_connection_error,
    is_transient_reply,
    make_redis,
    make_sync_redis,
    reply_kind,
    run_scripts,
)
from .envelope import JobCall, decode_job, encode_result
from .events import EventHub
from .keys import KeyLayout, layout_for
from .store import LIMITS_FEATURE, Store, now_ms
from .upstream_io import PARENTS_KEY, resolve_upstreams

logger = logging.getLogger("taskq_sdk.worker")

__all__ = ["RUNNING", "Engine"]

# queue entries one claim may look past (running jobs stay in arq's queue set, ahead of waiting ones)
SCAN_MAX = 20_000
SPARE_THREADS = 4  # sync jobs abandoned after a timeout or cancel before the thread pool is replaced
#: a limit check that could not reach the server is asked again after this, doubling up to the max,
#: for at most this many claim TTLs (a put-back by the check counts no attempt; a release would)
GATE_RETRY_FIRST_S = 0.1
GATE_RETRY_MAX_S = 1.0
GATE_RETRY_CLAIM_TTLS = 10


@dataclasses.dataclass(frozen=True)
class _ClaimPlan:
    """One CLAIM call: the slots it asks for, its arguments, and the ready-set entries involved."""

    free: int
    args: list[Any]
    held: str
    fresh: str
    ready_key: str
    sent: float  # monotonic time before the call: the claims it makes hold for a TTL from later


# per-job records are plain slotted dataclasses: a frozen one costs ~1.5 us more to build, per job
@dataclasses.dataclass(slots=True)
class _ClaimedJob:
    """A claimed (or handed-over) job as its claim row carried it, before anything was decoded."""

    job_id: str
    score: int
    blob: bytes | None
    attempt: int
    aborted: bool
    timeout: float | None  # per submit (``_timeout``), else the function's or the worker's
    max_tries: int | None
    workspace: str
    start_ms: int
    corrupt: str | None = None  # why the job's stored keys or fields cannot be used, if they cannot


@dataclasses.dataclass(slots=True)
class _AttemptPlan:
    """What one attempt runs: the decoded call, the function that runs it, and its limits."""

    call: JobCall
    spec: JobSpec
    max_tries: int
    timeout: float


@dataclasses.dataclass(slots=True)
class _Refusal:
    """Why a claimed job is not run, recorded as its outcome (expired, undecodable, unknown, cancelled, exhausted)."""

    state: str
    error: RemoteError
    call: JobCall | None = None
    attempt: int | None = None


#: engines serving in this process, newest last (``taskq_sdk.worker.get_worker_stats`` reads it)
RUNNING: list[Engine] = []


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))


def _clean(text: str) -> str:
    """Text the server and msgpack accept: lone surrogates (undecodable file names) as \\udcXX escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _clean_error(error: RemoteError) -> RemoteError:
    return dataclasses.replace(
        error, type=_clean(error.type), message=_clean(error.message), traceback=_clean(error.traceback)
    )


def _log_job(event: str, job_id: str, function: str, attempt: int, duration: float, text: str, **extra: Any) -> None:
    """One log line per job activity, with fields a log system can parse (TASKQ_LOG_FORMAT=json).

    Starts are logged at DEBUG (``-v``): at thousands of jobs a second, two INFO lines per job cost
    more than the jobs; every outcome (complete, failed, retrying, cancelled) is logged at INFO.
    """
    level = logging.DEBUG if event == "started" else logging.INFO
    if not logger.isEnabledFor(level):
        return
    fields = {
        "event": event,
        "job_id": job_id,
        "tenant": tenant_of(job_id),
        "function": function,
        "attempt": attempt,
        "duration": round(duration, 4),
        **extra,
    }
    logger.log(level, "job %s %s (attempt %d, %.3fs): %s", job_id, function, attempt, duration, text, extra=fields)


async def _never_called(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> None:  # pragma: no cover
    raise RuntimeError("the taskq engine runs job specs directly")


class Engine(Worker):
    """A taskq worker process's engine (see the module docstring).

    Example::

        engine = Engine(specs, settings=Settings(max_jobs=20), queue="heavy", burst=True)
        await engine.async_run(); await engine.close()
    """

    def __init__(
        self,
        specs: Mapping[str, JobSpec],
        *,
        settings: Settings,
        queue: str = "default",
        burst: bool = False,
        handle_signals: bool = True,
        codec: Codec | None = None,
        worker_id: str | None = None,
        ctx: dict[str, Any] | None = None,
        cron_jobs: Sequence[Any] | None = None,
        extensions: Sequence[EngineExtension] = (),
    ) -> None:
        if not specs:
            raise ValueError("a worker needs at least one job function")
        self.settings = settings
        self.specs = dict(specs)
        self.codec = codec or codec_for(settings)
        self.taskq_queue = queue
        #: key and channel names (the layout follows the server: see ``keys.layout_for``)
        self.layout: KeyLayout = layout_for(settings, queue)
        self._keys = self.layout.script_keys()
        self._auto: AutoPipeline | None = None  # made in main()
        limited = sorted(spec.name for spec in self.specs.values() if spec.limit is not None)
        if self._keys and limited:  # the limits' script spans slots (see Store.refuse_on_cluster)
            raise ConfigurationError(
                f"{LIMITS_FEATURE}: not offered on a Redis Cluster yet, and {', '.join(limited)} declare(s) them; "
                "drop the limits or serve these functions from a single server or Sentinel"
            )
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        functions = [
            func(_never_called, name=spec.name, timeout=spec.timeout, max_tries=spec.max_tries)
            for spec in self.specs.values()
        ]
        super().__init__(
            functions=functions,
            queue_name=self.layout.queue_key(queue),
            burst=burst,
            handle_signals=handle_signals,
            max_jobs=settings.max_jobs,
            job_timeout=settings.job_timeout,
            keep_result=settings.keep_result,
            max_tries=settings.max_tries,
            poll_delay=settings.poll_interval,
            allow_abort_jobs=True,
            job_serializer=self.codec.serializer,
            job_deserializer=self.codec.deserializer,
            ctx=ctx,
            cron_jobs=cron_jobs,
            log_results=False,
        )
        self.jobs_cancelled = 0
        self.jobs_limited = 0  # put back by a rate or concurrency limit
        self._gated: dict[str, list[str]] = {}  # running jobs that passed a limit: their limits' names
        self._paces: dict[str, float] = {}  # admitted chunks of rate-limited calls: seconds between their items
        self._bg_writes: set[asyncio.Task[Any]] = set()
        self._early_cancels: set[str] = set()
        self._running: dict[str, JobContext] = {}
        #: the claim of each job this worker holds (claimed, handed over, running), by job id
        self._leases: dict[str, Lease] = {}
        self._keeper_wakeup = threading.Event()  # a fence check asks for a renewal now
        self._reply_errors_logged: dict[str, float] = {}
        self._abandoned = 0
        self._workspaces: dict[str, str] = {}
        #: consulted before ``specs`` for each job (newest registration wins): notebook functions
        self.spec_resolvers: list[Callable[[str], JobSpec | None]] = []
        #: more names this worker serves through resolvers (listed in heartbeats and the registry)
        self.name_providers: list[Callable[[], Iterable[str]]] = []
        #: called (on the loop, must be quick) with a FinishedJob after each job's final write
        self.finish_listeners: list[Callable[[FinishedJob], None]] = []
        self.extensions: list[EngineExtension] = list(extensions)
        self._wake = asyncio.Event()
        # handed-over jobs: an idle worker takes a job from the submit itself, with no claim trip
        self._push_listening = False  # our push channel is subscribed: a submit can reach us
        self._ready_entry: str | None = None  # our entry in the ready set, as far as we know
        self._ready_gen = 0
        self._taken: deque[str] = deque(maxlen=64)  # entries whose job reached us
        self._pushes_coming: dict[str, float] = {}  # entries taken by a submit, job not here yet
        self._claiming = 0  # slots asked for by claims in flight
        self.jobs_handed = 0
        self._saturated = False
        self._stopping = False
        self._stop_now = False
        self._drain_deadline: float | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._hub: EventHub | None = None
        self._bg: list[asyncio.Task[None]] = []
        self._pending_progress: dict[str, tuple[dict[str, str], list[str], str]] = {}
        self._pending_finish: list[tuple[list[Any], asyncio.Future[str]]] = []
        self._flush_wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._started_ms = now_ms()
        self._outage_since: float | None = None
        self._closed = False
        self._keeper_thread: threading.Thread | None = None
        self._keeper_stop = threading.Event()
        self._loop_alive = time.monotonic()
        self.status = "starting"

    # ================================================================== lifecycle
    async def main(self) -> None:
        self._pool = make_redis(self.settings, self.codec, redis_class=ArqRedis)
        #: taskq's reads and writes on the worker's connection (jobs reach it as ctx["taskq_store"])
        self.store = Store(self._pool, self.codec, self.settings, self.taskq_queue)
        self._claim_script = self._pool.register_script(self.layout.CLAIM)
        self._gate_script: Any = None  # registered at the first limited job
        self._wake_script: Any = None
        self._finish_script = self._pool.register_script(self.layout.FINISH)
        self._progress_script = self._pool.register_script(self.layout.PROGRESS)
        self._check_script = self._pool.register_script(self.layout.CHECK)
        #: the per-job scripts (claim, check, finish, progress) go out on a connection of their own, each
        #: round trip one write with no redis-py pipeline work (see autopipe); None on a cluster
        self._auto = AutoPipeline.for_redis(self._pool) if not self._keys else None
        await self._wait_for_server()
        for script in (self._claim_script, self._finish_script, self._progress_script, self._check_script):
            # loaded up front: pipelined calls are sent by digest (see run_scripts)
            await self._pool.script_load(script.script)
        self.ctx.update(
            redis=self._pool,
            settings=self.settings,
            worker_id=self.worker_id,
            taskq_resolve=self.resolve_spec,
            taskq_store=self.store,
        )
        install_output_capture()
        self._executor = ThreadPoolExecutor(max_workers=self.max_jobs + SPARE_THREADS, thread_name_prefix="taskq-job")
        if self.on_startup:
            await self.on_startup(self.ctx)
        self._hub = EventHub(self.settings, self.layout)
        self._flusher = asyncio.create_task(self._flush_loop(), name="taskq-flush")
        self._bg = [
            asyncio.create_task(self._listen(self.layout.wake_channel(self.taskq_queue)), name="taskq-wake"),
            asyncio.create_task(self._listen(self.layout.control_channel(self.taskq_queue)), name="taskq-control"),
            asyncio.create_task(
                self._listen(self.layout.push_channel(self.taskq_queue, self.worker_id), push=True), name="taskq-push"
            ),
            asyncio.create_task(self._heartbeat_loop(), name="taskq-heartbeat"),
        ]
        for ext in self.extensions:
            await ext.start(self)
        self._loop_alive = time.monotonic()
        self._keeper_stop = threading.Event()
        self._keeper_thread = threading.Thread(
            target=self._keeper, args=(self._keeper_stop,), name="taskq-claims", daemon=True
        )
        self._keeper_thread.start()
        self.status = "running"
        RUNNING.append(self)
        try:
            await self._heartbeat()
        except RedisError as exc:  # e.g. a shared liveness key of the wrong type: the loop retries it
            if is_connection_error(exc):
                raise
            await self._refused(exc, "the first heartbeat")
        logger.info(
            "worker %s serving %d functions on queue %r (%s), max_jobs=%d: %s",
            self.worker_id,
            len(self.specs),
            self.taskq_queue,
            self.settings.safe_url(),
            self.max_jobs,
            ", ".join(sorted(self.specs)),
        )
        await self._serve()

    async def _wait_for_server(self) -> None:
        deadline = time.monotonic() + max(self.settings.outage_budget, self.settings.connect_timeout)
        delay = 0.1
        while True:
            try:
                await self.pool.ping()
                return
            except Exception as exc:
                if not (is_connection_error(exc) or is_transient_reply(exc)) or time.monotonic() > deadline:
                    raise
                logger.warning("server %s not reachable yet (%s); retrying", self.settings.safe_url(), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _serve(self) -> None:
        next_due: float | None = None
        while True:
            if self._stopping and await self._drained():
                return
            self._wake.clear()
            try:
                claimed, next_due = await self._claim_batch()
                if self._outage_since is not None:
                    logger.warning("server reachable again after %.1fs", time.monotonic() - self._outage_since)
                    self._outage_since = None
            except Exception as exc:
                if is_connection_error(exc):
                    await self._outage(exc)
                elif isinstance(exc, RedisError):
                    await self._refused(exc, "claiming jobs")
                else:
                    raise
                continue
            idle = self.burst and not self.tasks and claimed == 0 and not self._stopping
            if idle and await self.pool.zcard(self.queue_name) == 0:
                return
            timeout = self.settings.poll_interval
            if next_due is not None:
                timeout = min(timeout, max(0.0, next_due / 1000.0 - time.time()))
            if self._stopping:
                timeout = 0.05
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _outage(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            logger.warning(
                "lost the server %s (%s: %s); reconnecting and keeping running jobs",
                self.settings.safe_url(),
                type(exc).__name__,
                str(exc)[:200],
            )
        await asyncio.sleep(min(2.0, 0.1 * 2 ** min(5, int(now - self._outage_since))))

    async def _refused(self, exc: BaseException, doing: str) -> None:
        """The server answered with an error (BUSY, READONLY, a corrupt key...): log it, back off, go on.

        A worker never exits for a reply: a long script of another client (BUSY), a primary demoted
        in a failover (READONLY, then the connections are made again) or one corrupt key must not
        take the worker - and every job it runs - down.
        """
        text = str(exc).split(" script: ")[0][:300]
        kind = reply_kind(exc) or type(exc).__name__
        if not text.startswith(kind):
            text = f"{kind} {text}"
        now = time.monotonic()
        if now - self._reply_errors_logged.get(kind, -1e9) > 30:
            self._reply_errors_logged[kind] = now
            logger.warning(
                "worker %s: the server refused %s: %s (%s); backing off and going on",
                self.worker_id,
                doing,
                text,
                "transient" if is_transient_reply(exc) else "check the server and its keys",
            )
        if kind == "READONLY" and self._pool is not None:  # a demoted primary: new connections find the new one
            with contextlib.suppress(Exception):
                await self._pool.connection_pool.disconnect()
        await asyncio.sleep(min(2.0, max(0.1, self.settings.poll_interval)))

    async def _drained(self) -> bool:
        """In drain mode: True once running jobs finished, or were sent back to the queue at the deadline."""
        if self._drain_deadline is None:
            self._drain_deadline = time.monotonic() + self.settings.drain_timeout
        if self.tasks and (self._stop_now or time.monotonic() >= self._drain_deadline):
            for job_id, jctx in list(self._running.items()):
                if jctx.stop_reason is None:
                    jctx.stop_reason = "worker shutdown"
                task = self.tasks.get(job_id)
                if task is not None:
                    task.cancel()
            self._stop_now = True
        if self.tasks:
            await asyncio.wait(list(self.tasks.values()), timeout=0.2)
            return not self.tasks
        return True

    def handle_sig(self, signum: Signals) -> None:
        """First SIGTERM/SIGINT: stop taking jobs, let running ones finish (drain). Second: stop now."""
        sig = Signals(signum)
        if self._stopping:
            logger.warning("%s again: stopping now; %d running jobs go back to the queue", sig.name, len(self.tasks))
            self._stop_now = True
        else:
            self._stopping = True
            self.allow_pick_jobs = False
            self.status = "draining"
            with contextlib.suppress(RuntimeError):  # not on the loop (nothing was offered yet)
                self._background(self._unready())
            logger.info(
                "%s: draining - finishing %d running jobs (up to %gs; send it again to stop at once)",
                sig.name,
                len(self.tasks),
                self.settings.drain_timeout,
            )
        self._wake.set()
        if self.on_stop:
            self.on_stop(sig)

    def request_stop(self, *, now: bool = False) -> None:
        """Stop from code (in-process workers): drain, or with ``now`` stop at once."""
        self.handle_sig(Signals.SIGTERM)
        if now:
            self.handle_sig(Signals.SIGTERM)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        logger.debug("worker %s closing", self.worker_id)
        # first leave the ready set: a job handed over from now on would find nobody listening
        await self._unready()
        if self in RUNNING:
            RUNNING.remove(self)
        for t in list(self.tasks.values()):
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await stop_tasks(self._bg)
        if self._bg_writes:
            await asyncio.wait(list(self._bg_writes), timeout=5.0)
        if self._keeper_thread is not None:
            self._keeper_stop.set()
            self._keeper_wakeup.set()
        for ext in reversed(self.extensions):
            try:
                await ext.stop()
            except Exception:
                logger.exception("stopping extension %r failed", ext)
        if self._flusher is not None:
            await self._drain_writes(timeout=5.0)
            await stop_tasks([self._flusher])
        self.status = "stopped"
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await self._heartbeat()
        if self._hub is not None:
            await self._hub.close()
        if self.on_shutdown and self._pool is not None:
            await self.on_shutdown(self.ctx)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._auto is not None:
            await self._auto.close()
        if self._pool is not None:
            with contextlib.suppress(Exception):
                await close_redis(self._pool)
            self._pool = None
        logger.info(
            "worker %s stopped: %d complete, %d failed, %d retried, %d cancelled",
            self.worker_id,
            self.jobs_complete,
            self.jobs_failed,
            self.jobs_retried,
            self.jobs_cancelled,
        )

    # ================================================================== claiming
    async def _claim_batch(self) -> tuple[int, float | None]:
        if self._pushes_coming:  # a handed-over job that never came: its claim expired, the slot is free
            now_m = time.monotonic()
            self._pushes_coming = {e: t for e, t in self._pushes_coming.items() if t > now_m}
        free = self.max_jobs - len(self.tasks) - self._claiming - len(self._pushes_coming)
        if free <= 0 or not self.allow_pick_jobs:
            return 0, None
        plan = self._plan_claim(free, idle=not self.tasks and not self._claiming and not self._pushes_coming)
        self._claiming += free
        try:
            (reply,) = await run_scripts(self.pool, [(self._claim_script, plan.args)], keys=self._keys, auto=self._auto)
        finally:
            self._claiming -= free
        return self._claimed(plan, reply)

    def _plan_claim(self, free: int, *, idle: bool) -> _ClaimPlan:
        """The CLAIM call for ``free`` slots; an ``idle`` worker also offers to take submitted jobs directly."""
        now = now_ms()
        held, fresh, lapse = self._ready_entry or "", "", 0
        if idle and self._push_listening and not self.burst and not self._stopping and not self._keys:
            # if this claim finds nothing, the next submitted job is handed to us (no claim trip)
            self._ready_gen += 1
            fresh = f"{int(self.settings.claim_ttl * 1000)}|{self._ready_gen}|{self.worker_id}"
            lapse = now + self._ready_lapse_ms()
        ready_key = self.layout.ready_key(self.taskq_queue) if (held or fresh) else ""
        args = [
            self.queue_name,
            now,
            free,
            int(self.settings.claim_ttl * 1000),
            self.worker_id,
            SCAN_MAX,
            ready_key,
            held,
            fresh,
            lapse,
        ]
        return _ClaimPlan(free, args, held, fresh, ready_key, time.monotonic())

    def _claimed(self, plan: _ClaimPlan, reply: list[Any]) -> tuple[int, float | None]:
        """Start the claimed jobs and note where this worker stands in the ready set."""
        rows, nxt, ready = reply
        if plan.ready_key:
            self._ready_entry = plan.fresh if ready == 1 and plan.fresh not in self._taken else None
            if ready == -1 and plan.held not in self._taken:
                self._pushes_coming[plan.held] = time.monotonic() + self.settings.claim_ttl
        for row in rows:
            self._start(row, plan.sent)
        self._saturated = len(rows) == plan.free
        return len(rows), (float(nxt) if nxt is not None else None)

    def _ready_lapse_ms(self) -> int:
        # refreshed every heartbeat: an offer two heartbeats old belongs to a frozen or dying worker
        return int(2 * self.settings.heartbeat_interval * 1000) + 1000

    def _lease_span(self) -> float:
        """How long a claim surely holds after the call that set it was sent (its TTL, less a margin)."""
        ttl = self.settings.claim_ttl
        return ttl - max(0.2, 0.1 * ttl)

    def _start(self, row: list[Any], sent: float, *, pushed: bool = False) -> None:
        job_id = _s(row[0])
        token = layout.claim_token(self.worker_id, int(row[3]))
        until = 0.0 if pushed else sent + self._lease_span()  # a hand-over holds once checked
        lease = self._leases.get(job_id)
        if lease is not None and job_id in self.tasks:
            # claimed again while this worker's copy still runs (its claim lapsed in an outage, and
            # nobody else claimed it): the copy goes on under the new claim; no second copy starts
            lease.adopt(token, until)
            logger.warning("job %s: claimed again after its claim lapsed; the running copy goes on", job_id)
            return
        lease = Lease(token, until, self._keeper_wakeup.set)
        self._leases[job_id] = lease
        task = asyncio.create_task(self._run(job_id, row, lease, pushed), name=f"taskq-job-{job_id}")
        self.tasks[job_id] = task
        task.add_done_callback(self._task_done)

    def _accept_push(self, row: list[Any]) -> None:
        """Run a job a submit handed to us (the submit script already claimed it for this worker)."""
        entry = _s(row[6])
        self._taken.append(entry)
        if self._ready_entry == entry:
            self._ready_entry = None
        self._pushes_coming.pop(entry, None)
        job_id = _s(row[0])
        if job_id in self.tasks:
            return
        self.jobs_handed += 1
        if self._stop_now or self._closed:
            # stopping at once: back to the queue, like the jobs the stop cut off
            self._background(self._release(job_id, layout.claim_token(self.worker_id, int(row[3]))))
            return
        self._start(row[:6], time.monotonic(), pushed=True)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._bg_writes.add(task)
        task.add_done_callback(self._bg_writes.discard)

    async def _unready(self) -> None:
        """Leave the ready set (stopping): submits stop handing jobs to this worker."""
        entry, self._ready_entry = self._ready_entry, None
        self._push_listening = False
        if entry and self._pool is not None:
            with contextlib.suppress(Exception):  # bounded: shutdown must not wait on an unreachable server
                await asyncio.wait_for(self._pool.zrem(self.layout.ready_key(self.taskq_queue), entry), 2.0)

    def _thread_abandoned(self) -> None:
        """A sync job's thread runs on after its job ended; replace the pool before they starve it."""
        self._abandoned += 1
        if self._abandoned >= SPARE_THREADS and self._executor is not None:
            logger.warning(
                "worker %s: %d sync jobs ran past their cancel or time limit and still hold threads; "
                "starting a fresh thread pool (mark such jobs @job(isolate=True) so they can be stopped)",
                self.worker_id,
                self._abandoned,
            )
            old = self._executor
            self._executor = ThreadPoolExecutor(
                max_workers=self.max_jobs + SPARE_THREADS, thread_name_prefix="taskq-job"
            )
            old.shutdown(wait=False)
            self._abandoned = 0

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        for job_id, t in list(self.tasks.items()):
            if t is task:
                del self.tasks[job_id]
                self._leases.pop(job_id, None)
                gated = self._gated.pop(job_id, None)
                self._paces.pop(job_id, None)
                if gated and not self._closed:
                    self._background(self._wake_waiters(job_id, gated))
                self._early_cancels.discard(job_id)
                break
        if not task.cancelled() and task.exception() is not None:
            logger.error("internal error while running a job", exc_info=task.exception())
        idle_again = not self.tasks and self._push_listening and not self._ready_entry
        if self._saturated or self._stopping or idle_again:
            self._wake.set()

    # ================================================================== running
    async def _run(self, job_id: str, row: list[Any], lease: Lease, pushed: bool) -> None:
        """Run one claimed (or handed-over) job: check it can run, run one attempt, record the outcome."""
        if pushed and not await self._check_push(job_id, lease):
            return
        claimed = self._claimed_job(job_id, row)
        self._workspaces[job_id] = claimed.workspace
        try:
            plan = self._plan_attempt(claimed)
            if not isinstance(plan, _Refusal) and PARENTS_KEY in plan.call.kwargs:
                # it takes other jobs' results as arguments (upstream_io): put them in, or refuse
                upstream_error = await resolve_upstreams(self.store, job_id, plan.call)
                if upstream_error is not None:
                    plan = _Refusal("failed", upstream_error, plan.call)
            if isinstance(plan, _Refusal):
                await self._refuse(claimed, plan)
                return
            if await self._held_back(claimed, plan):
                return
            jctx = self._job_context(claimed, plan)
            outcome = await self._attempt(claimed, plan, jctx)
        except Exception as exc:  # a worker bug must not leave the job in progress, run again every TTL
            logger.exception("job %s: the worker failed to run it", job_id)
            error = remote_error("InternalError", f"the worker could not run this job: {type(exc).__name__}: {exc}")
            await self._finish_error(job_id, "failed", error, attempt=claimed.attempt, start_ms=claimed.start_ms)
            return
        if outcome is not None:
            await self._finish_outcome(job_id, outcome, plan.spec, claimed.attempt, claimed.start_ms, plan.call)

    async def _held_back(self, job: _ClaimedJob, plan: _AttemptPlan) -> bool:
        """Whether a rate or concurrency limit put the job back in its queue for later (not run, not
        failed, no attempt counted; see :mod:`taskq_sdk._backend.limits`): its slot is free at once."""
        spec, cost = plan.spec, 1
        if spec.name == RUNNER_NAME:  # a chunk of a map or apply: the limits of the function it runs,
            inner = plan.call.kwargs.get("function")  # one rate slot per item of the chunk
            spec = (self.resolve_spec(inner) if isinstance(inner, str) else None) or spec
            cost = chunk_calls(plan.call.kwargs.get("items"), str(plan.call.kwargs.get("mode", "items")))
        args = limits.gate_args(spec.name, spec.limit, plan.call.limit_key)
        if not args:
            return False
        if self._gate_script is None:
            self._gate_script = self.pool.register_script(limits.GATE)
        token = self._token(job.job_id)
        pause = GATE_RETRY_FIRST_S
        deadline = time.monotonic() + GATE_RETRY_CLAIM_TTLS * self.settings.claim_ttl
        while True:
            try:
                reply = await self._gate_script(
                    keys=[], args=[job.job_id, token, self.queue_name, now_ms(), cost, *args]
                )
                due, why = reply[0], reply[1]
                break
            except Exception as exc:
                if isinstance(exc, RedisError) and not (is_connection_error(exc) or is_transient_reply(exc)):
                    # a reply that will not go away (a limit's keys corrupted: WRONGTYPE...): putting the job
                    # back would only use up its attempts and then blame a dead worker; fail it and say why
                    named = ", ".join(a for a in args if isinstance(a, str) and a.startswith(("fn:", "key:")))
                    reason = (
                        f"its limits ({named}) could not be checked: the server replied {exc}. The limit's keys "
                        "are corrupt; client.remove_limit(...) (or deleting them) clears them; submit the job again"
                    )
                    logger.error("job %s refused: %s", job.job_id, reason)
                    refusal = _Refusal("failed", remote_error("CorruptJob", reason, kind="error"), plan.call)
                    await self._refuse(job, refusal)
                    return True
                # unreachable for now: ask again (the same check, whose put-back counts no attempt, and which
                # puts the job back uncounted if this worker's claim lapsed meanwhile) while the claim is ours
                lease = self._leases.get(job.job_id)
                if self._stopping or self._closed or lease is None or lease.lost or time.monotonic() > deadline:
                    logger.warning("job %s: could not check its limits (%s); back to the queue", job.job_id, exc)
                    await self._release(job.job_id, token)
                    return True
                logger.warning("job %s: could not check its limits (%s); asking again", job.job_id, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, GATE_RETRY_MAX_S)
        if int(due) == limits.NOT_ALLOWED:
            # a limit its tenant may not use (another tenant's key, not shared with it): never run it
            reason = _s(why)
            if "not shared" in reason:
                reason += "; its owner shares it with client.set_limit(..., share_with=[<tenant>])"
            logger.warning("job %s refused: %s", job.job_id, reason)
            await self._refuse(
                job, _Refusal("failed", remote_error("PermissionDenied", reason, kind="error"), plan.call)
            )
            return True
        if int(due) == 0:
            if cost > 1 and len(reply) > 2:  # a chunk: its items start one rate step apart (jobs/mapping.py)
                self._paces[job.job_id] = float(_s(reply[2])) / 1000.0
            names = limits.permit_names(spec.name, spec.limit, plan.call.limit_key)
            if names:
                self._gated[job.job_id] = names
            return False
        if int(due) > 0:
            logger.debug("job %s: %s; put back until %s", job.job_id, _s(why), due)
            self.jobs_limited += 1
            self._wake.set()  # claim again now: the next due job may be this one
        return True

    async def _wake_waiters(self, job_id: str, names: list[str]) -> None:
        """A limited job ended (its permits went with its claim): wake the next job waiting for one."""
        if self._wake_script is None:
            self._wake_script = self.pool.register_script(limits.WAKE)
        with contextlib.suppress(Exception):  # a lost wake-up only delays: waiters look again anyway
            await self._wake_script(keys=[], args=[job_id, now_ms(), *names])

    async def _check_push(self, job_id: str, lease: Lease) -> bool:
        """Whether a handed-over job's claim is ours: a push may be stale (this worker was frozen) or forged."""
        sent = time.monotonic()
        ttl_ms = int(self.settings.claim_ttl * 1000)
        try:
            args = ["push", job_id, lease.token, ttl_ms, self.queue_name]
            (ok,) = await run_scripts(self.pool, [(self._check_script, args)], keys=self._keys, auto=self._auto)
        except Exception as exc:  # unchecked: not run here; its claim lapses and any worker claims it
            logger.warning("job %s: could not check its hand-over (%s); leaving it to the queue", job_id, exc)
            return False
        if not ok:
            logger.warning(
                "job %s was handed to this worker, but its claim is not this worker's (a hand-over that "
                "waited while the worker was frozen, or one published by hand); not running it",
                job_id,
            )
            return False
        lease.confirm(lease.token, sent + self._lease_span())
        return True

    def _claimed_job(self, job_id: str, row: list[Any]) -> _ClaimedJob:
        """What a claim row says: ``[id, score, job_bytes|nil, attempt, aborted, meta|nil, corrupt|nil]``."""
        meta = [_s(x) for x in row[5]] if row[5] else ["", "", "", "", ""]
        timeout_s, max_tries_s, workspace, _batch, _enq = meta
        corrupt = _s(row[6]) if len(row) > 6 and row[6] else None
        timeout, max_tries = None, None
        try:
            timeout = float(timeout_s) if timeout_s else None
            max_tries = int(max_tries_s) if max_tries_s else None
            if timeout is not None and not 0 < timeout < 1e9:
                raise ValueError(f"timeout {timeout_s!r}")
            if max_tries is not None and not 0 < max_tries < 1_000_000:
                raise ValueError(f"max_tries {max_tries_s!r}")
        except (ValueError, OverflowError) as exc:
            corrupt = corrupt or f"its stored limits are not usable ({exc})"
            timeout, max_tries = None, None
        # a cancel can arrive between the claim (or hand-over) and this task's first step
        aborted = bool(row[4]) or job_id in self._early_cancels
        self._early_cancels.discard(job_id)
        return _ClaimedJob(
            job_id=job_id,
            score=int(float(row[1])),
            blob=row[2] or None,
            attempt=int(row[3]),
            aborted=aborted,
            timeout=timeout,
            max_tries=max_tries,
            workspace=workspace or "default",
            start_ms=now_ms(),
            corrupt=corrupt,
        )

    def _plan_attempt(self, job: _ClaimedJob) -> _AttemptPlan | _Refusal:
        """The function and limits of this attempt, or why the job is not run."""
        if job.corrupt is not None:
            reason = f"the job's data on the server is corrupt, so it was not run ({job.corrupt}); submit it again"
            logger.error("job %s refused: %s", job.job_id, reason)
            return _Refusal("failed", remote_error("CorruptJob", reason, kind="error"), attempt=max(job.attempt, 1))
        if job.blob is None:
            reason = "the job's definition expired before a worker started it (see _expires=); it was not run"
            return _Refusal("failed", remote_error("JobExpired", reason, kind="lost"))
        try:
            call = decode_job(self.codec, job.blob)
        except (DeserializationError, KeyError, TypeError, ValueError, OverflowError) as exc:
            logger.error("job %s refused: %s", job.job_id, exc)
            reason = f"the worker refused to decode the job's arguments, so it was never run: {exc}"
            return _Refusal("failed", remote_error("DeserializationError", reason, kind="deserialization"))
        if call.enqueued_ms is None:
            call.enqueued_ms = job.start_ms
        spec = self.resolve_spec(call.function)
        if spec is None:
            served = ", ".join(sorted(self.specs))
            reason = (
                f"worker {self.worker_id} does not serve {call.function!r} (it serves {served}); "
                f"start a worker that imports it on queue {self.taskq_queue!r}"
            )
            return _Refusal("failed", remote_error("UnknownJob", reason), call)
        max_tries = job.max_tries or spec.max_tries or self.settings.max_tries
        if job.aborted:
            return _Refusal(
                "cancelled", remote_error("JobCancelled", "cancelled before it started", kind="cancelled"), call
            )
        if job.attempt > max_tries:
            reason = (
                f"gave up after {max_tries} attempt{'s' if max_tries != 1 else ''}: the earlier attempts ended "
                "without a result (the worker running it died or was stopped each time)"
            )
            error = remote_error("AttemptsExhausted", reason, details={"attempts": max_tries})
            return _Refusal("failed", error, call, attempt=job.attempt - 1)
        timeout = job.timeout or spec.timeout or self.settings.job_timeout
        return _AttemptPlan(call=call, spec=spec, max_tries=max_tries, timeout=timeout)

    async def _refuse(self, job: _ClaimedJob, refusal: _Refusal) -> None:
        attempt = job.attempt if refusal.attempt is None else refusal.attempt
        await self._finish_error(
            job.job_id, refusal.state, refusal.error, attempt=attempt, start_ms=job.start_ms, call=refusal.call
        )

    def _job_context(self, job: _ClaimedJob, plan: _AttemptPlan) -> JobContext:
        jctx = JobContext(
            job_id=job.job_id,
            function=plan.call.function,
            tenant=tenant_of(job.job_id),
            workspace=job.workspace,
            attempt=job.attempt,
            max_tries=plan.max_tries,
            loop=asyncio.get_running_loop(),
            sink=self._progress_sink,
            log_limit=self.settings.log_lines,
            lease=self._leases.get(job.job_id),
            lease_patience=max(self.settings.outage_budget, self.settings.claim_ttl),
        )
        self._running[job.job_id] = jctx
        _log_job("started", job.job_id, plan.call.function, job.attempt, 0.0, "started", workspace=jctx.workspace)
        return jctx

    async def _attempt(self, job: _ClaimedJob, plan: _AttemptPlan, jctx: JobContext) -> Outcome | None:
        """One attempt of the job; None when it was stopped (cancelled, claim lost: recorded here, or released)."""
        arq_ctx = {
            **self.ctx,
            "job_id": job.job_id,
            "job_try": job.attempt,
            "enqueue_time": datetime.fromtimestamp((plan.call.enqueued_ms or job.start_ms) / 1000, tz=UTC),
            "score": job.score,
            "tenant": jctx.tenant,
            "workspace": jctx.workspace,
            "taskq_pace": self._paces.pop(job.job_id, 0.0),
        }
        try:
            outcome = await execute(
                plan.spec,
                jctx,
                plan.call.args,
                plan.call.kwargs,
                arq_ctx=arq_ctx,
                timeout=plan.timeout,
                executor=self._executor,
                retry_base=self.settings.retry_delay,
                retry_cap=self.settings.retry_max_delay,
                stream=functools.partial(self._item_writer, job, jctx),
            )
        except asyncio.CancelledError:
            if await self._stopped(job, plan, jctx):
                return None
            raise
        finally:
            self._running.pop(job.job_id, None)
        jctx.flush()
        if jctx.stop_reason == "claim lost":  # its fence check stopped it: another worker runs it now
            logger.warning("job %s: claim lost to another worker; this attempt's result is discarded", job.job_id)
            return None
        if jctx.stop_reason == "claim unconfirmed":  # the server was out of reach: back to the queue
            logger.warning("job %s: its claim could not be confirmed in time; stopped, back to the queue", job.job_id)
            await asyncio.shield(self._release(job.job_id))
            return None
        return outcome

    def _item_writer(self, job: _ClaimedJob, jctx: JobContext) -> ItemWriter:
        """Where a generator job's items go (see :mod:`.stream_io`); a lost claim stops the attempt."""

        def lost() -> None:
            jctx.stop_reason = jctx.stop_reason or "claim lost"

        token = functools.partial(self._token, job.job_id)
        return item_writer(self.pool, self.layout, self.codec, self.settings, job.job_id, job.attempt, token, lost)

    async def _stopped(self, job: _ClaimedJob, plan: _AttemptPlan, jctx: JobContext) -> bool:
        """The attempt's task was cancelled: record a cancel or drop a lost claim (True), or hand the
        job back to the queue because the worker stops (False: the cancellation goes on)."""
        reason = jctx.stop_reason
        jctx.flush()
        if reason == "cancelled":
            note = "cancelled while running"
            if not plan.spec.is_async and not plan.spec.isolate:
                self._thread_abandoned()
                note += (
                    " (its thread runs on until the function returns, since threads cannot be "
                    "interrupted; its result will be discarded and its next report_progress() "
                    "call stops it)"
                )
            await self._refuse(
                job, _Refusal("cancelled", remote_error("JobCancelled", note, kind="cancelled"), plan.call)
            )
            return True
        if reason == "claim lost":
            logger.warning("job %s: claim lost to another worker; this attempt's result is discarded", job.job_id)
            return True
        jctx.stop_reason = reason or "worker shutdown"
        await asyncio.shield(self._release(job.job_id))
        return False

    async def _finish_outcome(
        self,
        job_id: str,
        outcome: Outcome,
        spec: JobSpec,
        attempt: int,
        start_ms: int,
        call: JobCall,
    ) -> None:
        function = call.function
        if outcome.kind == "timed_out" and not spec.is_async and not spec.isolate:
            self._thread_abandoned()
        if outcome.kind == "retry":
            assert outcome.error is not None
            assert outcome.retry_delay is not None
            score = now_ms() + int(outcome.retry_delay * 1000)
            err = _clean(f"{outcome.error.type}: {outcome.error.message}"[:500])
            event = json.dumps({"e": "retrying", "a": attempt, "n": score, "err": err})
            _log_job(
                "retrying",
                job_id,
                function,
                attempt,
                outcome.duration,
                f"failed ({err}); retrying in {outcome.retry_delay:.1f}s",
                error=outcome.error.type,
                retry_in=round(outcome.retry_delay, 3),
            )
            self.jobs_retried += 1
            await self._write(
                [
                    "retry",
                    job_id,
                    self.queue_name,
                    "",
                    0,
                    "retrying",
                    0,
                    now_ms(),
                    err,
                    int(outcome.duration * 1000),
                    self._token(job_id),
                    score,
                    event,
                ]
            )
            return
        if outcome.kind == "complete":
            try:
                blob = self._envelope(call, attempt, start_ms, True, outcome.value)
                if len(blob) > self.settings.max_result_bytes:
                    raise SerializationError(
                        f"the job's result takes {len(blob):,} bytes, over the limit of "
                        f"{self.settings.max_result_bytes:,} (TASKQ_MAX_RESULT_BYTES): return a reference "
                        "(a path or URL) to large data instead"
                    )
            except SerializationError as exc:
                outcome = Outcome(
                    "failed",
                    error=remote_error("ResultError", str(exc), kind="error"),
                    duration=outcome.duration,
                )
            else:
                self.jobs_complete += 1
                _log_job("complete", job_id, function, attempt, outcome.duration, "complete")
                await self._done(
                    job_id,
                    "complete",
                    blob,
                    "",
                    outcome.duration,
                    finished=(function, attempt, start_ms, outcome.value, None),
                )
                return
        assert outcome.error is not None
        state = "cancelled" if outcome.error.kind == "cancelled" else "failed"
        _log_job(
            state,
            job_id,
            function,
            attempt,
            outcome.duration,
            f"{state}: {outcome.error.type}: {outcome.error.message[:300]}",
            error=outcome.error.type,
        )
        await self._finish_error(
            job_id,
            state,
            outcome.error,
            attempt=attempt,
            start_ms=start_ms,
            call=call,
            duration=outcome.duration,
        )

    def _envelope(self, call: JobCall, attempt: int, start_ms: int, success: bool, value: Any) -> bytes:
        return encode_result(
            self.codec,
            call,
            attempt=attempt,
            success=success,
            value=value,
            started_ms=start_ms,
            finished_ms=now_ms(),
            queue_key=self.queue_name,
        )

    async def _finish_error(
        self,
        job_id: str,
        state: str,
        error: RemoteError,
        *,
        attempt: int,
        start_ms: int,
        call: JobCall | None = None,
        duration: float = 0.0,
    ) -> None:
        error = _clean_error(error)
        if state == "cancelled":
            self.jobs_cancelled += 1
        else:
            self.jobs_failed += 1
        unknown = JobCall("?", [], {}, start_ms)
        try:
            blob = self._envelope(call or unknown, attempt, start_ms, False, error)
        except SerializationError:  # the call's arguments cannot be stored again: keep the error
            blob = self._envelope(unknown, attempt, start_ms, False, error)
        function = call.function if call else "?"
        await self._done(
            job_id,
            state,
            blob,
            f"{error.type}: {error.message}"[:500],
            duration,
            finished=(function, attempt, start_ms, None, error),
        )

    async def _done(
        self,
        job_id: str,
        state: str,
        blob: bytes,
        err: str,
        duration: float,
        *,
        finished: tuple[str, int, int, Any, RemoteError | None],
    ) -> None:
        keep = -1 if self.keep_result_forever else int(self.keep_result_s * 1000)
        meta_ttl = int((self.settings.keep_result + self.settings.tombstone_ttl) * 1000)
        event = json.dumps({"e": "done", "s": state})
        out = await self._write(
            [
                "done",
                job_id,
                self.queue_name,
                blob if keep != 0 else "",
                keep,
                state,
                meta_ttl,
                now_ms(),
                err,
                int(duration * 1000),
                self._token(job_id),
                0,
                event,
            ]
        )
        if out.startswith("error"):
            logger.error("job %s: the server refused to record its outcome: %s", job_id, out)
        if out == "ok" and self.finish_listeners:
            function, attempt, start_ms, value, error = finished
            record = FinishedJob(
                job_id=job_id,
                tenant=tenant_of(job_id),
                workspace=self._workspaces.get(job_id, "default"),
                function=function,
                state=state,
                attempt=attempt,
                started_ms=start_ms,
                finished_ms=now_ms(),
                duration=duration,
                value=value,
                error=error,
                worker_id=self.worker_id,
            )
            for listener in self.finish_listeners:
                try:
                    listener(record)
                except Exception:
                    logger.exception("finish listener %r failed", listener)
        self._workspaces.pop(job_id, None)

    def _token(self, job_id: str) -> str:
        """The claim token this worker holds job ``job_id`` under (every write about the job carries it)."""
        lease = self._leases.get(job_id)
        return lease.token if lease is not None else layout.claim_token(self.worker_id, 0)

    async def _release(self, job_id: str, token: str | None = None) -> None:
        event = json.dumps({"e": "released"})
        with contextlib.suppress(Exception):
            await self._write(
                [
                    "release",
                    job_id,
                    self.queue_name,
                    "",
                    0,
                    "queued",
                    0,
                    now_ms(),
                    "",
                    0,
                    token or self._token(job_id),
                    0,
                    event,
                ]
            )

    # ================================================================== batched writes
    def _progress_sink(self, jctx: JobContext, payload: dict[str, Any]) -> None:
        lines: list[str] = [_clean(line) for line in payload.pop("_logs", [])]
        fields = {k: _clean(str(v)) for k, v in payload.items()}
        prev = self._pending_progress.get(jctx.job_id)
        if prev is not None:
            prev[0].update(fields)
            prev[1].extend(lines)
            fields, lines = prev[0], prev[1]
        event = ""
        if "p" in fields:
            event = json.dumps({"e": "progress", "p": float(fields["p"]), "m": fields.get("pmsg")})
        elif prev is not None:
            event = prev[2]
        self._pending_progress[jctx.job_id] = (fields, lines, event)
        self._flush_wakeup.set()

    async def _write(self, argv: list[Any]) -> str:
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending_finish.append((argv, fut))
        self._flush_wakeup.set()
        return await fut

    async def _flush_loop(self) -> None:
        backoff = 0.05
        while True:
            await self._flush_wakeup.wait()
            self._flush_wakeup.clear()
            progress, self._pending_progress = self._pending_progress, {}
            finishes, self._pending_finish = self._pending_finish, []
            if not progress and not finishes:
                continue
            while True:
                try:
                    outs = await self._flush_once(progress, finishes)
                    backoff = 0.05
                    break
                except asyncio.CancelledError:
                    for _, fut in finishes:
                        if not fut.done():
                            fut.cancel()
                    raise
                except Exception as exc:
                    if is_transient_reply(exc):  # BUSY, READONLY, LOADING...: the same writes, later
                        await self._refused(exc, f"writing {len(finishes)} job outcomes")
                        continue
                    if not is_connection_error(exc):
                        # not the network: one bad item must not block every later write
                        logger.exception("writing %d job results failed; writing them one by one", len(finishes))
                        outs = await self._flush_each(progress, finishes)
                        break
                    if self._outage_since is None:
                        self._outage_since = time.monotonic()
                        logger.warning("server unreachable while writing %d results; retrying", len(finishes))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
            for (argv, fut), out in zip(finishes, outs, strict=True):
                if out == "claim-lost":
                    logger.warning(
                        "job %s: another worker holds it now; this worker's %s was dropped", argv[1], argv[0]
                    )
                if not fut.done():
                    fut.set_result(out)

    async def _flush_each(
        self, progress: dict[str, tuple[dict[str, str], list[str], str]], finishes: list[tuple[list[Any], Any]]
    ) -> list[str]:
        """Write items separately after a batch failed for a reason other than the network; drop what fails."""
        for job_id, entry in progress.items():
            try:
                await self._flush_once({job_id: entry}, [])
            except Exception:
                logger.exception("dropped a progress update of job %s that the server refused", job_id)
        outs: list[str] = []
        for item in finishes:
            try:
                outs += await self._flush_once({}, [item])
            except Exception:
                logger.exception(
                    "could not record the outcome of job %s; its claim will expire and it will run again", item[0][1]
                )
                outs.append("error")
        return outs

    async def _flush_once(
        self, progress: dict[str, tuple[dict[str, str], list[str], str]], finishes: list[tuple[list[Any], Any]]
    ) -> list[str]:
        calls: list[tuple[Any, list[Any]]] = []
        if progress:
            pargv: list[Any] = []
            for job_id, (fields, lines, event) in progress.items():
                lease = self._leases.get(job_id)
                if lease is None:  # the job ended: its outcome is written, its progress no longer matters
                    continue
                pargv += [
                    job_id,
                    lease.token,
                    json.dumps(fields),
                    json.dumps(lines) if lines else "",
                    self.settings.log_lines,
                    event,
                ]
            if pargv:
                calls.append((self._progress_script, pargv))
        plan: _ClaimPlan | None = None
        if finishes:
            fargv: list[Any] = []
            for argv, _ in finishes:
                fargv += argv
            calls.append((self._finish_script, fargv))
            if self._idle_after(finishes):
                # the worker is idle once these are written: claim (or offer to take the next
                # submitted job) in the same round trip, before any waiter hears 'done' and submits again
                plan = self._plan_claim(self.max_jobs, idle=True)
                calls.append((self._claim_script, plan.args))
                self._claiming += plan.free
        if not calls:
            return []
        try:
            results = await run_scripts(self.pool, calls, keys=self._keys, auto=self._auto)
        finally:
            if plan is not None:
                self._claiming -= plan.free
        if plan is not None:
            self._claimed(plan, results.pop())
        if calls[0][0] is self._progress_script:
            tokens = {str(a): str(b) for a, b in zip(calls[0][1][0::6], calls[0][1][1::6], strict=True)}
            for job_id in (_s(x) for x in results[0]):  # a progress write found the claim gone
                self._claim_lost(job_id, tokens.get(job_id, ""))
        return [_s(x) for x in results[-1]] if finishes else []

    def _idle_after(self, finishes: list[tuple[list[Any], Any]]) -> bool:
        if not (self._push_listening and self.allow_pick_jobs) or self.burst:
            return False
        if self._claiming or self._pushes_coming:
            return False
        finishing = {str(argv[1]) for argv, _ in finishes}
        return finishing.issuperset(self.tasks)

    async def _drain_writes(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while (self._pending_finish or self._pending_progress) and time.monotonic() < deadline:
            self._flush_wakeup.set()
            await asyncio.sleep(0.01)
        if self._pending_finish:
            logger.error(
                "could not write %d job outcomes before shutdown (server unreachable): %s - these jobs will "
                "be retried by another worker once their claims expire",
                len(self._pending_finish),
                ", ".join(str(a[1]) for a, _ in self._pending_finish[:20]),
            )

    # ================================================================== notifications
    async def _listen(self, channel: str, *, push: bool = False) -> None:
        assert self._hub is not None
        while not self._closed:
            try:
                async with self._hub.subscribe(channel) as sub:
                    if push:
                        self._push_listening = not self._stopping
                        self._wake.set()  # offer to take jobs directly from now on
                    while True:
                        event = await sub.get(timeout=None)
                        if event is None:
                            continue
                        kind = event.get("e")
                        if kind == "push":
                            self._accept_push(event["row"])
                        elif kind in ("wake", "reconnected", "disconnected"):
                            self._wake.set()
                        elif kind == "cancel":
                            self._background(self._checked_cancel(str(event.get("id", ""))))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("listener for %s failed (%s); retrying", channel, exc)
                self._wake.set()
                await asyncio.sleep(1.0)
            finally:
                if push:
                    self._push_listening = False

    def served_names(self) -> list[str]:
        """Every job name this worker serves: its specs plus what resolvers provide."""
        names = set(self.specs)
        for provider in self.name_providers:
            try:
                names.update(provider())
            except Exception:
                logger.exception("name provider %r failed", provider)
        return sorted(names)

    def resolve_spec(self, name: str) -> JobSpec | None:
        """The spec that runs job ``name`` now: extension resolvers first, then the served specs."""
        for resolver in self.spec_resolvers:
            spec = resolver(name)
            if spec is not None:
                return spec
        return self.specs.get(name)

    async def _checked_cancel(self, job_id: str) -> None:
        """Cancel a running job once the server confirms a cancel was requested (anyone may publish one)."""
        if job_id not in self.tasks:
            return
        try:
            requested = await self._check_script(keys=self._keys, args=["cancel", job_id, "", 0, self.queue_name])
        except Exception as exc:
            logger.warning("job %s: could not check a cancel request (%s); ignoring it", job_id, exc)
            return
        if requested:
            self.cancel_running(job_id)
        else:
            logger.warning("job %s: ignored a cancel notice no cancel request backs (published by hand?)", job_id)

    def cancel_running(self, job_id: str) -> bool:
        """Cancel a job this worker is running (the control channel calls this)."""
        jctx = self._running.get(job_id)
        task = self.tasks.get(job_id)
        if task is None:
            return False
        if jctx is None:  # claimed, not started yet: it starts as cancelled
            self._early_cancels.add(job_id)
            return True
        jctx.stop_reason = "cancelled"
        task.cancel()
        return True

    # ================================================================== health
    async def _heartbeat_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.settings.heartbeat_interval)
            self._loop_alive = time.monotonic()
            try:
                await self._heartbeat()
                if self.cron_jobs:
                    await self.run_cron(datetime.now(tz=self.timezone), self.settings.heartbeat_interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, RedisError) and not is_connection_error(exc):
                    await self._refused(exc, "a heartbeat")
                elif not is_connection_error(exc):
                    logger.exception("heartbeat failed")
                self._wake.set()

    def _claim_lost(self, job_id: str, token: str) -> None:
        """The claim ``token`` on ``job_id`` is gone (another worker took the job): stop this copy."""
        lease = self._leases.get(job_id)
        if lease is None or not (lease.lose(token) or (lease.lost and lease.token == token)):
            return  # an older claim of a job this worker claimed again, or a job that ended
        jctx = self._running.get(job_id)
        task = self.tasks.get(job_id)
        if jctx is not None:
            jctx.stop_reason = "claim lost"
        if task is not None:
            task.cancel()

    def _keeper(self, stop: threading.Event) -> None:
        """Renew the claims of held jobs from a thread, so a blocked event loop cannot lose them.

        An async job that blocks the loop (``time.sleep`` in an ``async def``) would otherwise stop
        renewals, let the claim expire, and another worker would start the job a second time. Each
        renewal moves the job's :class:`Lease` on; a lost claim marks it lost at once (so a sync job
        waiting in its fence check stops without the loop's help) and stops the job's task.
        """
        client = make_sync_redis(self.settings)
        renew = client.register_script(self.layout.RENEW)
        failing_since: float | None = None
        interval = self.settings.claim_ttl / 3
        ttl_ms = int(self.settings.claim_ttl * 1000)
        warned_at = 0.0
        wakeup = self._keeper_wakeup
        try:
            while not stop.is_set():
                wakeup.wait(interval)
                wakeup.clear()
                if stop.is_set():
                    break
                held = [(job_id, lease, lease.token) for job_id, lease in list(self._leases.items())]
                blocked = time.monotonic() - self._loop_alive
                if blocked > max(5.0, 3 * self.settings.heartbeat_interval) and time.monotonic() - warned_at > 30:
                    warned_at = time.monotonic()
                    logger.warning(
                        "worker %s: event loop blocked for %.0fs (an async job doing blocking work? running: %s); "
                        "its claims are kept alive",
                        self.worker_id,
                        blocked,
                        ", ".join(job_id for job_id, _, _ in held[:5]),
                    )
                if not held:
                    continue
                sent = time.monotonic()
                try:
                    args: list[Any] = [ttl_ms]
                    for job_id, _, token in held:
                        args += [job_id, token]
                    lost = {_s(x) for x in renew(keys=self._keys, args=args) or ()}
                    failing_since = None
                except Exception as exc:
                    now = time.monotonic()
                    failing_since = failing_since or now
                    if now - failing_since >= self.settings.claim_ttl / 2:
                        logger.warning(
                            "worker %s: renewing the claims of %d running jobs has failed for %.0fs (%s); "
                            "another worker may start them again once the claims expire",
                            self.worker_id,
                            len(held),
                            now - failing_since,
                            exc,
                        )
                    if not stop.wait(min(interval, 0.5)):  # asked again at once: do not spin
                        continue
                    break
                for job_id, lease, token in held:
                    if job_id not in lost:
                        lease.confirm(token, sent + self._lease_span())
                    elif lease.lose(token):
                        with contextlib.suppress(RuntimeError):
                            self.loop.call_soon_threadsafe(self._claim_lost, job_id, token)
        finally:
            client.close()

    def get_worker_stats(self) -> dict[str, Any]:
        """The seed's worker-health dict: status, max_jobs, jobs complete/failed/retried/ongoing, uptime.

        Example::

            stats = engine.get_worker_stats(); stats["status"], stats["max_jobs"]
        """
        return self.info().as_stats()

    def info(self) -> WorkerInfo:
        """This worker as a :class:`WorkerInfo`."""
        now = now_ms()
        return WorkerInfo(
            id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            status=self.status,
            queue=self.taskq_queue,
            max_jobs=self.max_jobs,
            ongoing=len(self.tasks),
            complete=self.jobs_complete,
            failed=self.jobs_failed,
            retried=self.jobs_retried,
            cancelled=self.jobs_cancelled,
            started_at=datetime.fromtimestamp(self._started_ms / 1000, tz=UTC),
            last_seen=datetime.fromtimestamp(now / 1000, tz=UTC),
            functions=self.served_names(),
        )

    async def _heartbeat(self) -> None:
        now = now_ms()
        interval_ms = int(self.settings.heartbeat_interval * 1000)
        key = layout.worker_key(self.worker_id)
        info = self.info()
        async with self.pool.pipeline(transaction=False) as pipe:
            pipe.hset(
                key,
                mapping={
                    "host": info.host,
                    "pid": info.pid,
                    "status": info.status,
                    "queue": info.queue,
                    "max_jobs": info.max_jobs,
                    "ongoing": info.ongoing,
                    "complete": info.complete,
                    "failed": info.failed,
                    "retried": info.retried,
                    "cancelled": info.cancelled,
                    "started": self._started_ms,
                    "seen": now,
                    "functions": ",".join(info.functions),
                },
            )
            # a live worker refreshes this every interval; a dead one vanishes within 3 intervals + 5s,
            # a stopped one stays listed as "stopped" for a minute
            pipe.pexpire(key, 60_000 if self.status == "stopped" else 3 * interval_ms + 5000)
            pipe.zadd(layout.WORKERS_ZSET, {self.worker_id: now})
            pipe.zremrangebyscore(layout.WORKERS_ZSET, "-inf", now - 120_000)
            pipe.pexpire(layout.WORKERS_ZSET, 3_600_000)
            if self._ready_entry:  # still offered (XX: never re-adds an entry a submit took)
                pipe.zadd(
                    self.layout.ready_key(self.taskq_queue), {self._ready_entry: now + self._ready_lapse_ms()}, xx=True
                )
            reg = self.layout.registry_key(self.taskq_queue)
            pipe.hset(reg, mapping=dict.fromkeys(info.functions, now))
            pipe.pexpire(reg, layout.REGISTRY_TTL_MS)
            if self.specs:  # each served function's keyword parameters: submit checks keywords against them
                sigs = self.layout.signatures_key(self.taskq_queue)
                published = {n: layout.encode_params(s.params) for n, s in self.specs.items()}
                published.update({layout.LIMITED + n: "1" for n, s in self.specs.items() if s.limit is not None})
                pipe.hset(sigs, mapping=published)
                pipe.pexpire(sigs, layout.REGISTRY_TTL_MS)
            await pipe.execute()
