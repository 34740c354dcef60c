"""The core of the clients: submit, look up, cancel, retry, list; the rest lives in feature mixins.

:class:`AsyncClientCore` holds the logic; :class:`ClientCore` is its blocking facade. The public
``AsyncClient`` / ``Client`` (in :mod:`taskq_sdk.client`) add batches, service views and
notebook views on top.

Both have the same methods with the same parameters. ``Client`` runs the ``AsyncClient`` on an
event loop in a daemon thread, so it works in scripts, from several threads and inside a running
loop (a Jupyter cell) without patching anything::

    from taskq_sdk import Client
    with Client("redis://localhost:6379/0", tenant="acme", workspace="exp1") as client:
        job = client.submit("add", 1, 2)
        job.result(timeout=30)            # 3

    async with AsyncClient() as client:   # REDIS_* / TASKQ_* from the environment
        job = await client.submit("add", 1, 2)
        await job                          # 3
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, ParamSpec, Protocol, Self, TypeVar, runtime_checkable

from ._backend import layout
from ._backend.connection import broker_errors, make_redis
from ._backend.engine import codec_for
from ._backend.events import EventHub, Subscription
from ._backend.store import JobState, Store, SubmitRow, now_ms
from ._names import DEFAULT_TENANT, DEFAULT_WORKSPACE, check_job_id, check_name, qualify, tenant_of
from ._portal import Portal
from ._redact import call_repr
from .config import Settings
from .errors import (
    ClientClosed,
    ConfigurationError,
    InvalidName,
    JobNotFound,
    PayloadTooLarge,
    TaskqError,
    UnknownJob,
)
from .handles import AsyncJob, Job
from .models import JobInfo, JobStatus, WorkerInfo
from .registry import spec_for

__all__ = ["AsyncClientCore", "ClientCore", "ClientSource"]

T = TypeVar("T")
P = ParamSpec("P")

_OPTIONS = ("_job_id", "_defer_by", "_defer_until", "_expires", "_timeout", "_retries", "_queue")
REGISTRY_CACHE_SECONDS = 5.0
LIVE_WORKER_SECONDS = 10.0


@runtime_checkable
class ClientSource(Protocol):
    """Anything a client can be built from besides a URL - a :class:`~taskq_sdk.LocalCluster`."""

    def client_settings(self) -> Settings: ...


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


def _seconds(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigurationError(f"{what} takes a non-negative number of seconds or a timedelta, not {value!r}")
    return float(value)


def _resolve_settings(
    source: str | ClientSource | None, settings: Settings | None, overrides: dict[str, Any]
) -> Settings:
    if isinstance(source, ClientSource):
        base = source.client_settings()
        return base.model_copy(update=overrides) if overrides else base
    if source is not None and not isinstance(source, str):
        raise ConfigurationError(
            f"Client() takes a redis:// URL or a LocalCluster as its first argument, not {type(source).__name__}"
        )
    if settings is not None:
        base = settings.model_copy(update=overrides) if overrides else settings
    else:
        try:
            base = Settings(**overrides)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
    return base.with_url(source) if source else base


class AsyncClientCore:
    """Submit jobs and follow them from ``async`` code; the implementation behind :class:`Client`.

    ``AsyncClient()`` connects as the environment says (``REDIS_URL`` or ``REDIS_HOST``/``PORT``/
    ``PASSWORD``/``DB``, else ``localhost:6379``); ``AsyncClient(url)`` or ``AsyncClient(cluster)``
    explicitly. ``tenant=`` binds the client: it submits, lists and sees only that tenant's jobs.

    Example::

        async with AsyncClient(cluster, tenant="acme") as client:
            job = await client.submit("add", 1, 2, _timeout=30)
            print(await job.result())
    """

    def __init__(
        self,
        redis_url: str | ClientSource | None = None,
        /,
        *,
        tenant: str | None = None,
        workspace: str | None = None,
        queue: str | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        self._settings = _resolve_settings(redis_url, settings, overrides)
        tenant = tenant if tenant is not None else self._settings.tenant
        workspace = workspace if workspace is not None else self._settings.workspace
        self._tenant = None if tenant is None else check_name(tenant, "tenant")
        self._workspace = None if workspace is None else check_name(workspace, "workspace")
        self._queue = check_name(queue, "queue") if queue is not None else self._settings.queue
        self._codec = codec_for(self._settings)
        self._state = _State.UNOPENED
        self._store: Store | None = None
        self._hub: EventHub | None = None
        #: names this client's reply channels (``taskq:<tenant>:rc:<id>``), where its jobs' events come
        self._client_id = uuid.uuid4().hex
        self._registry: dict[str, tuple[float, dict[str, float]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ properties
    @property
    def settings(self) -> Settings:
        """The resolved settings (explicit arguments, then environment, then defaults)."""
        return self._settings

    @property
    def tenant(self) -> str | None:
        """The tenant this client is bound to, or ``None`` (unbound: submits as ``default``)."""
        return self._tenant

    @property
    def workspace(self) -> str | None:
        """The default workspace of submits and listings (``None``: ``default`` / all)."""
        return self._workspace

    @property
    def queue(self) -> str:
        """The queue submits go to unless ``_queue=`` says otherwise."""
        return self._queue

    @property
    def is_closed(self) -> bool:
        return self._state is _State.CLOSED

    def __repr__(self) -> str:
        bound = f" tenant={self._tenant}" if self._tenant else ""
        ws = f" workspace={self._workspace}" if self._workspace else ""
        return f"<{type(self).__name__} {self._settings.safe_url()}{bound}{ws} {self._state.name.lower()}>"

    # ------------------------------------------------------------------ lifecycle
    def _open(self) -> Store:
        if self._state is _State.CLOSED:
            raise ClientClosed("Cannot use a client once it has been closed; create a new one.")
        if self._store is None:
            self._store = Store(make_redis(self._settings, self._codec), self._codec, self._settings)
            self._state = _State.OPENED
        return self._store

    async def connect(self) -> Self:
        """Open the connection now (it opens on first use otherwise); raises BrokerUnavailable.

        Example::

            client = await AsyncClient(url).connect()
        """
        await self.ping()
        return self

    async def ping(self) -> float:
        """Round-trip time to the server in seconds (raises :class:`BrokerUnavailable`)."""
        store = self._open()
        start = time.perf_counter()
        async with broker_errors(self._settings, "reach"):
            await store.redis.ping()
        return time.perf_counter() - start

    async def close(self) -> None:
        """Close connections and stop pending callbacks (idempotent; jobs are not affected)."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._hub is not None:
            await self._hub.close()
        if self._store is not None:
            try:
                await self._store.redis.aclose(close_connection_pool=True)
            except Exception:
                pass

    async def __aenter__(self) -> Self:
        self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _store_call(self, fn: Callable[[Store], Awaitable[T]], what: str = "reach") -> T:
        store = self._open()
        async with broker_errors(self._settings, what):
            return await fn(store)

    def _store_call_sync(self, fn: Callable[[Store], T]) -> T:
        return fn(self._open())

    async def _event_hub(self) -> EventHub:
        self._open()
        if self._hub is None:
            self._hub = EventHub(self._settings)
        return self._hub

    # ------------------------------------------------------------------ identity
    def _identity(self, tenant: Any, workspace: Any) -> tuple[str, str]:
        if self._tenant is not None:
            if tenant is not None and tenant != self._tenant:
                raise ConfigurationError(
                    f"this client is bound to tenant {self._tenant!r} and cannot act for tenant {tenant!r}; "
                    "use a client bound to that tenant (or an unbound one)"
                )
            t = self._tenant
        else:
            t = DEFAULT_TENANT if tenant is None else check_name(tenant, "tenant")
        ws = check_name(workspace, "workspace") if workspace is not None else (self._workspace or DEFAULT_WORKSPACE)
        return t, ws

    def _resolve_id(self, job_id: Any) -> str | None:
        if not isinstance(job_id, str) or not job_id or len(job_id) > 300:
            raise InvalidName(f"job ids are non-empty strings of at most 300 characters, not {job_id!r}")
        if self._tenant is None:
            return job_id
        owner = tenant_of(job_id)
        if owner == self._tenant:
            return job_id
        if owner != DEFAULT_TENANT:
            return None  # another tenant's id
        return qualify(self._tenant, job_id)

    def _visible(self, state: JobState) -> bool:
        if self._tenant is None:
            return True
        owner = state.info.tenant if state.has_meta else DEFAULT_TENANT
        return owner == self._tenant

    async def _fetch_state(self, job_id: str, *, with_result: bool = False) -> JobState:
        state = await self._store_call(lambda s: s.state(job_id, with_result=with_result))
        if not self._visible(state):
            return JobState(JobStatus.not_found, JobInfo(id=job_id, status=JobStatus.not_found), False, False)
        return state

    # ------------------------------------------------------------------ submit
    async def _known_names(self, queue: str, *, refresh: bool = False) -> dict[str, float]:
        cached = self._registry.get(queue)
        if cached is not None and not refresh and time.monotonic() - cached[0] < REGISTRY_CACHE_SECONDS:
            return cached[1]
        names = await self._store_call(lambda s: s.registry(queue), "submit a job to")
        self._registry[queue] = (time.monotonic(), names)
        return names

    async def _check_known(self, name: str, queue: str) -> None:
        names = await self._known_names(queue)
        if not names or name in names:
            return
        names = await self._known_names(queue, refresh=True)
        if names and name not in names:
            raise UnknownJob(name, list(names), queue)

    def _prepare(
        self,
        fn: str | Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        retry_of: str | None = None,
        batch: str | None = None,
    ) -> SubmitRow:
        options = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("_")}
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise ConfigurationError(
                f"unknown submit option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: keyword arguments "
                f"starting with '_' are reserved for the SDK ({', '.join(_OPTIONS)})"
            )
        if isinstance(fn, str):
            if not fn:
                raise ConfigurationError("the job name must be a non-empty string")
            name = fn
        elif callable(fn):
            name = spec_for(fn).name
        else:
            raise ConfigurationError(f"submit() takes a job name or a function, not {type(fn).__name__}")
        tenant, workspace = self._identity(kwargs.pop("tenant", None), kwargs.pop("workspace", None))
        queue = check_name(options.get("_queue") or self._queue, "queue")
        local_id = check_job_id(options["_job_id"]) if options.get("_job_id") is not None else uuid.uuid4().hex
        job_id = qualify(tenant, local_id)

        defer_by = _seconds(options.get("_defer_by"), "_defer_by")
        defer_until = options.get("_defer_until")
        if defer_until is not None and not isinstance(defer_until, datetime):
            raise ConfigurationError(f"_defer_until takes a datetime, not {type(defer_until).__name__}")
        if defer_by is not None and defer_until is not None:
            raise ConfigurationError("use either _defer_by or _defer_until, not both")
        expires = _seconds(options.get("_expires"), "_expires")
        timeout = _seconds(options.get("_timeout"), "_timeout")
        if timeout is not None and timeout <= 0:
            raise ConfigurationError("_timeout must be a positive number of seconds")
        retries = options.get("_retries")
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int) or retries < 1):
            raise ConfigurationError(
                f"_retries counts attempts in total (like ARQ_MAX_RETRIES); use 1 for no retry, not {retries!r}"
            )

        now = now_ms()
        if defer_until is not None:
            score = int(defer_until.timestamp() * 1000)
        elif defer_by:
            score = now + int(defer_by * 1000)
        else:
            score = now
        job_ttl_ms = int(expires * 1000) if expires else max(0, score - now) + 86_400_000
        envelope = {"t": None, "f": name, "a": list(args), "k": kwargs, "et": now}
        job_bytes = self._codec.serializer(envelope)
        if len(job_bytes) > self._settings.max_payload_bytes:
            raise PayloadTooLarge(len(job_bytes), self._settings.max_payload_bytes)
        return SubmitRow(
            job_id=job_id,
            function=name,
            job_bytes=job_bytes,
            queue=queue,
            workspace=workspace,
            score_ms=score,
            job_ttl_ms=job_ttl_ms,
            timeout=timeout,
            max_tries=retries,
            state="deferred" if score > now else "queued",
            args_repr=call_repr(name, args, kwargs),
            retry_of=retry_of,
            batch=batch,
        )

    async def submit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncJob:
        """Enqueue a job and return its handle; arguments go to the job function.

        SDK options are keyword-only with a leading underscore (as in arq): ``_job_id``,
        ``_defer_by``, ``_defer_until``, ``_expires``, ``_timeout``, ``_retries`` (attempts in total),
        ``_queue``. ``tenant=``/``workspace=`` set the job's tenant and workspace (a bound client
        fills them in) and reach functions that declare them. A ``_job_id`` already taken returns
        the existing job's handle with ``job.created == False``.

        Example::

            job = await client.submit("resize", "cat.png", width=200, _timeout=60, _job_id="cat-200")
        """
        row = self._prepare(fn, args, dict(kwargs))
        await self._check_known(row.function, row.queue)
        # listen for the job's events before it exists, so a wait right after needs no extra round
        # trip: on this client's reply channel (subscribed once, no server work per job), else on
        # the job's own channel
        hub = await self._event_hub()
        channel = layout.job_channel(row.job_id)
        reply_to, epoch = "", None
        presub: Subscription | None = None
        try:
            epoch = await hub.reply_channel(layout.reply_channel(tenant_of(row.job_id), self._client_id))
            if epoch is not None:
                reply_to, presub = self._client_id, hub.expect(channel)
            else:
                presub = await hub.prepare(channel)
        except Exception:
            presub = None
        try:
            created = await self._store_call(
                lambda s: s.submit([row], wake_queue=row.queue, reply_to=reply_to), "submit a job to"
            )
        except BaseException:
            if presub is not None:
                hub.release(presub)
            raise
        job = AsyncJob(self, row.job_id, created=created[0], known=True)
        job._presub = presub
        job._reply_epoch = epoch if reply_to else None
        return job

    async def submit_video(
        self, url: str, *, tenant: str | None = None, workspace: str | None = None, **options: Any
    ) -> AsyncJob:
        """Submit the built-in video job (``process_video_async``) for ``url``; the URL is checked first.

        Example::

            job = await client.submit_video("https://example.com/v.mp4", workspace="exp1")
            probe = await job.result()
        """
        from .jobs._fetch import validate_video_url

        checked = validate_video_url(url, allow_private=self._settings.allow_private_urls)
        if tenant is not None:
            options["tenant"] = tenant
        if workspace is not None:
            options["workspace"] = workspace
        return await self.submit("process_video_async", video_url=checked, **options)

    # ------------------------------------------------------------------ lookups
    async def job(self, job_id: str) -> AsyncJob:
        """Re-attach to a job by id (also from another process); raises :class:`JobNotFound`.

        Example::

            job = await client.job("3f2a9c...")
            await job.status()
        """
        full = self._resolve_id(job_id)
        if full is None:
            raise JobNotFound(job_id)
        state = await self._fetch_state(full)
        if not state.exists:
            raise JobNotFound(job_id)
        handle = AsyncJob(self, full, known=True)
        handle._last = state
        return handle

    async def jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        workspace: str | None = None,
        tenant: str | None = None,
        limit: int = 100,
    ) -> list[JobInfo]:
        """Recent jobs of this client's tenant, newest first, optionally by workspace and status.

        Example::

            [j.id for j in await client.jobs(status="failed", workspace="exp1")]
        """
        t, _ = self._identity(tenant, None)
        ws = check_name(workspace, "workspace") if workspace is not None else self._workspace
        wanted = JobStatus(status) if status is not None else None
        if limit < 1:
            raise ConfigurationError("limit must be at least 1")
        out: list[JobInfo] = []
        offset = 0
        page = max(limit, 100) if wanted is not None else limit
        while len(out) < limit:
            ids = await self._store_call(lambda s, o=offset: s.job_ids(t, ws, limit=page, offset=o))  # type: ignore[misc]
            if not ids:
                break
            states = await self._store_call(lambda s, i=ids: s.states(i))  # type: ignore[misc]
            for st in states:
                if st.exists and (wanted is None or st.status is wanted):
                    out.append(st.info)
            offset += page
            if len(ids) < page:
                break
        return out[:limit]

    async def workers(self) -> list[WorkerInfo]:
        """Workers with a recent heartbeat (and, for a minute, ones that stopped gracefully)."""
        return await self._store_call(lambda s: s.workers())

    async def queue_depth(self, queue: str | None = None) -> int:
        """Jobs waiting (or running) in a queue."""
        q = check_name(queue or self._queue, "queue")
        return await self._store_call(lambda s: s.queue_depth(q))

    async def registered_jobs(self, queue: str | None = None) -> list[str]:
        """Job names workers have served on a queue (what ``submit`` accepts)."""
        q = check_name(queue or self._queue, "queue")
        return sorted(await self._known_names(q, refresh=True))

    # ------------------------------------------------------------------ job operations
    async def _cancel(self, job_id: str) -> bool:
        state = await self._fetch_state(job_id)
        if not state.exists:
            return False
        queue = state.info.queue
        outcome = await self._store_call(lambda s: s.cancel(job_id, queue))
        return outcome in ("cancelled", "running")

    async def _retry(self, job_id: str, **overrides: Any) -> AsyncJob:
        state = await self._fetch_state(job_id)
        if not state.exists:
            raise JobNotFound(job_id)
        if not state.status.finished:
            raise TaskqError(f"job {job_id} is still {state.status.value}; wait for it or cancel it before retrying")
        definition = await self._store_call(lambda s: s.job_definition(job_id))
        if definition is None:
            raise JobNotFound(job_id, "its arguments are no longer stored, so it cannot be retried")
        function, args, kwargs = definition
        kwargs = dict(kwargs)
        info = state.info
        kwargs.setdefault("tenant", info.tenant)
        kwargs.setdefault("workspace", info.workspace)
        opts = {"_queue": info.queue}
        if info.timeout is not None:
            opts["_timeout"] = info.timeout  # type: ignore[assignment]
        if info.max_tries is not None:
            opts["_retries"] = info.max_tries  # type: ignore[assignment]
        opts.update(overrides)
        # tenant/workspace are identity (``_prepare`` takes them out of the job's arguments)
        row = self._prepare(function, tuple(args), {**kwargs, **opts}, retry_of=job_id)
        created = await self._store_call(lambda s: s.submit([row], wake_queue=row.queue), "submit a job to")
        return AsyncJob(self, row.job_id, created=created[0], known=True)

    async def _liveness_note(self, info: JobInfo) -> str:
        try:
            workers = await self.workers()
        except TaskqError:
            return "The server could not be asked about workers."
        now = time.time()
        live = [
            w
            for w in workers
            if w.status in ("running", "draining")
            and w.last_seen is not None
            and now - w.last_seen.timestamp() < LIVE_WORKER_SECONDS
        ]
        on_queue = [w for w in live if w.queue == info.queue]
        if not live:
            return (
                "No live worker was seen (no heartbeat in the last "
                f"{LIVE_WORKER_SECONDS:g}s): start one with `python -m taskq_sdk.worker` or LocalCluster()."
            )
        if info.function and not any(info.function in w.functions for w in on_queue):
            return (
                f"No live worker serves {info.function!r} on queue {info.queue!r} "
                f"({len(live)} live worker{'s' if len(live) != 1 else ''} elsewhere)."
            )
        busy = sum(w.ongoing for w in on_queue)
        return f"{len(on_queue)} live worker(s) serve queue {info.queue!r} ({busy} jobs running)."


def _start_client(cls: type[AsyncClientCore], *args: Any, **kwargs: Any) -> Coroutine[Any, Any, AsyncClientCore]:
    async def make() -> AsyncClientCore:
        return cls(*args, **kwargs)

    return make()


def _shutdown(portal: Portal, aclient: AsyncClientCore, pool: concurrent.futures.ThreadPoolExecutor | None) -> None:
    if portal.running:
        try:
            portal.submit(aclient.close()).result(timeout=5)
        except Exception:
            pass
        portal.stop()
    if pool is not None:
        pool.shutdown(wait=False)


class ClientCore:
    """The blocking client: every :class:`AsyncClient` method, each call waiting for its answer.

    Works in scripts, from several threads and inside Jupyter's running loop. Ctrl-C (the stop
    button) interrupts a wait and leaves the client usable and the job running.

    Example::

        client = Client()                          # REDIS_* / TASKQ_* from the environment
        job = client.submit("add", 1, 2)
        print(job.result(timeout=30))
        client.close()
    """

    #: the async class this facade drives (the full ``AsyncClient`` in :mod:`taskq_sdk.client`)
    _async_cls: type[AsyncClientCore] = AsyncClientCore

    def __init__(
        self,
        redis_url: str | ClientSource | None = None,
        /,
        *,
        tenant: str | None = None,
        workspace: str | None = None,
        queue: str | None = None,
        settings: Settings | None = None,
        **overrides: Any,
    ) -> None:
        self._portal = Portal("taskq-client")
        try:
            self._async = self._portal.call(
                _start_client,
                self._async_cls,
                redis_url,
                tenant=tenant,
                workspace=workspace,
                queue=queue,
                settings=settings,
                **overrides,
            )
        except BaseException:
            self._portal.stop()
            raise
        self._callback_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._finalizer = weakref.finalize(self, _shutdown, self._portal, self._async, None)

    # ------------------------------------------------------------------ plumbing
    def _call(self, fn: Callable[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> T:
        return self._portal.call(fn, *args, **kwargs)

    def _wrap(self, ajob: AsyncJob) -> Job:
        return Job(ajob, self)

    def _on_done(self, job: Job, fn: Callable[[Job], Any]) -> None:
        if self._callback_pool is None:
            self._callback_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="taskq-callbacks")
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _shutdown, self._portal, self._async, self._callback_pool)
        pool = self._callback_pool
        self._portal.call_soon(job.async_job.add_done_callback, lambda _aj: pool.submit(fn, job))

    # ------------------------------------------------------------------ properties
    @property
    def async_client(self) -> AsyncClientCore:
        """The :class:`AsyncClient` doing the work (lives on this client's event-loop thread)."""
        return self._async

    @property
    def settings(self) -> Settings:
        return self._async.settings

    @property
    def tenant(self) -> str | None:
        return self._async.tenant

    @property
    def workspace(self) -> str | None:
        return self._async.workspace

    @property
    def queue(self) -> str:
        return self._async.queue

    @property
    def is_closed(self) -> bool:
        return self._async.is_closed

    def __repr__(self) -> str:
        return repr(self._async).replace("<AsyncClient", "<Client", 1)

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> Self:
        self._call(self._async.connect)
        return self

    def ping(self) -> float:
        return self._call(self._async.ping)

    def close(self) -> None:
        """Close connections and stop the client's thread (idempotent; jobs are not affected)."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the API
    def submit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job:
        return self._wrap(self._call(self._async.submit, fn, *args, **kwargs))

    def submit_video(self, url: str, *, tenant: str | None = None, workspace: str | None = None, **options: Any) -> Job:
        return self._wrap(self._call(self._async.submit_video, url, tenant=tenant, workspace=workspace, **options))

    def job(self, job_id: str) -> Job:
        return self._wrap(self._call(self._async.job, job_id))

    def jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        workspace: str | None = None,
        tenant: str | None = None,
        limit: int = 100,
    ) -> list[JobInfo]:
        return self._call(self._async.jobs, status=status, workspace=workspace, tenant=tenant, limit=limit)

    def workers(self) -> list[WorkerInfo]:
        return self._call(self._async.workers)

    def queue_depth(self, queue: str | None = None) -> int:
        return self._call(self._async.queue_depth, queue)

    def registered_jobs(self, queue: str | None = None) -> list[str]:
        return self._call(self._async.registered_jobs, queue)
