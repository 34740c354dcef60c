"""The clients: :class:`AsyncClient` holds all the logic; :class:`Client` is its blocking facade.

Both have the same methods with the same parameters. ``Client`` runs an ``AsyncClient`` on an
event loop in a daemon thread (a :class:`~taskq_sdk._portal.Portal`), so it works in scripts, from
several threads and inside a running loop (a Jupyter cell) without patching anything; each of its
methods is one blocking call into the ``AsyncClient``::

    from taskq_sdk import Client
    with Client("redis://localhost:6379/0", tenant="acme", workspace="exp1") as client:
        job = client.submit("add", 1, 2)
        job.result(timeout=30)            # 3

    async with AsyncClient() as client:   # REDIS_* / TASKQ_* from the environment
        job = await client.submit("add", 1, 2)
        await job                          # 3

What handles, batches and views need from a client lives in its core (:mod:`taskq_sdk._core`);
the work behind batches, health and metrics lives in :mod:`taskq_sdk.batch`,
:mod:`taskq_sdk.health` and :mod:`taskq_sdk.metrics`. This module is the public API over them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Self

from . import health as _health
from . import metrics as _metrics
from ._backend import limits as _limits
from ._callables import job_target, opened, with_default_priority
from ._core import ClientCore, ClientSource, resolve_settings
from ._names import check_name, tenant_of
from ._portal import Portal, forward_docs
from .batch import AsyncBatch, Batch
from .batch.submit import attach, map_items
from .caching import cache_plan, claim_or_share, function_digest, release_claim
from .config import Settings
from .errors import ConfigurationError, JobNotFound
from .handles import AsyncJob, Job
from .limits import Limit, check_limit_name, chunk_size_for
from .models import HealthSnapshot, JobInfo, JobStatus, WorkerInfo
from .upstream import detach_upstreams, job_kwargs, link_upstreams, make_waiting

if TYPE_CHECKING:
    from .metrics import Metrics
    from .views.dashboard import Dashboard

__all__ = ["AsyncClient", "Client", "ClientSource"]

#: how long a sync client's HTML view may wait for the server's answer before showing what it knows
VIEW_TIMEOUT = 2.0


class AsyncClient:
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
        settings = resolve_settings(redis_url, settings, overrides)
        self._core = ClientCore(settings, tenant=tenant, workspace=workspace, queue=queue)
        self._core.owner = self
        opened(self, redis_url)  # a LocalCluster's client ships callables to its workers (_callables)

    # ------------------------------------------------------------------ properties
    @property
    def settings(self) -> Settings:
        """The resolved settings (explicit arguments, then environment, then defaults)."""
        return self._core.settings

    @property
    def tenant(self) -> str | None:
        """The tenant this client is bound to, or ``None`` (unbound: submits as ``default``)."""
        return self._core.tenant

    @property
    def workspace(self) -> str | None:
        """The default workspace of submits and listings (``None``: ``default`` / all)."""
        return self._core.workspace

    @property
    def queue(self) -> str:
        """The queue submits go to unless ``_queue=`` says otherwise."""
        return self._core.queue

    @property
    def is_closed(self) -> bool:
        """True once :meth:`close` was called (a closed client cannot be reopened: make a new one)."""
        return self._core.is_closed

    @property
    def core(self) -> ClientCore:
        """The connection state handles, batches and views share (see :mod:`taskq_sdk._core`)."""
        return self._core

    def __repr__(self) -> str:
        bound = f" tenant={self.tenant}" if self.tenant else ""
        ws = f" workspace={self.workspace}" if self.workspace else ""
        return f"<{type(self).__name__} {self.settings.safe_url()}{bound}{ws} {self._core.state_name}>"

    def _repr_html_(self) -> str:
        # a repr cannot await: the async client shows its configuration only
        return _card(self, "AsyncClient")

    # ------------------------------------------------------------------ lifecycle
    async def connect(self) -> Self:
        """Open the connection now (it opens on first use otherwise); raises BrokerUnavailable.

        Example::

            client = await AsyncClient(url).connect()
        """
        await self.ping()
        return self

    async def ping(self) -> float:
        """Round-trip time to the server in seconds (raises :class:`BrokerUnavailable`)."""
        return await self._core.ping()

    async def close(self) -> None:
        """Close connections and stop pending callbacks (idempotent; jobs are not affected)."""
        await self._core.close()

    async def __aenter__(self) -> Self:
        self._core.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ submit
    async def submit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> AsyncJob:
        """Enqueue a job and return its handle; arguments go to the job function.

        SDK options are keyword-only with a leading underscore (as in arq): ``_job_id``,
        ``_defer_by``, ``_defer_until``, ``_expires``, ``_timeout``, ``_retries`` (attempts in total),
        ``_queue``, ``_priority`` (0-100: a head start of that many TASKQ_PRIORITY_STEP in the
        queue), ``_durable`` (wait for a replica's acknowledgement, see the README's Sentinel
        section). ``tenant=``/``workspace=`` set the job's tenant and workspace (a bound client
        fills them in) and reach functions that declare them. A ``_job_id`` already taken returns
        the existing job's handle with ``job.created == False``. ``_cache=True`` (or a timedelta;
        the default of functions marked ``@job(cache=True)``) serves a call whose inputs were seen
        before from the job that ran them (``job.cached``; see :mod:`taskq_sdk.caching`).

        Example::

            job = await client.submit("resize", "cat.png", width=200, _timeout=60, _job_id="cat-200")
        """
        core = self._core
        given = fn
        kwargs = with_default_priority(fn, kwargs)
        fn = await job_target(core, fn)  # any callable on a LocalCluster's client (_callables)
        args, kwargs, parents = detach_upstreams(core, args, kwargs)  # job handles as arguments (upstream)
        row = core.prepare(fn, args, job_kwargs(kwargs, parents))
        if parents:
            make_waiting(row, parents, expires=kwargs.get("_expires") is not None, args=args, kwargs=kwargs)
        await core.check_known(row.function, row.queue)
        await core.check_limit_shared(row.limit_key, tenant_of(row.job_id))
        await core.check_arguments(fn, row.function, row.queue, kwargs)
        plan = cache_plan(core, given, row.function, args, kwargs, row.workspace)
        if plan is not None and (shared := await claim_or_share(core, plan, row)) is not None:
            return shared  # an identical call's job serves this one (taskq_sdk.caching)
        try:
            created, follow = await core.submit_followed(row)
        except BaseException:
            if plan is not None:
                await release_claim(core, plan, row)
            raise
        if parents and created:
            await link_upstreams(core, row.job_id, parents)
        submitted = (row.function, JobStatus(row.state)) if created else None
        return AsyncJob(core, row.job_id, created=created, known=True, follow=follow, submitted=submitted)

    async def cache_clear(self, fn: str | Callable[..., Any] | None = None, /, *, tenant: str | None = None) -> int:
        """Forget cached results of ``fn`` (a function or job name), or of every function; returns how many.

        Later submits run again; jobs and results already stored stay until they expire.

        Example::

            await client.cache_clear(embed)   # 3
        """
        core = self._core
        t, _ = core.identity(tenant, None)
        digest = "" if fn is None else function_digest(core, fn)
        return await core.call(lambda s: s.cache.clear(t, digest))

    async def submit_video(
        self, url: str, *, tenant: str | None = None, workspace: str | None = None, **options: Any
    ) -> AsyncJob:
        """Submit the built-in video job (``process_video_async``) for ``url``; the URL is checked first.

        Example::

            job = await client.submit_video("https://example.com/clip.mp4", workspace="exp1")
            probe = await job.result()
        """
        from .jobs._fetch import validate_video_url

        checked = validate_video_url(url, allow_private=self.settings.allow_private_urls)
        if tenant is not None:
            options["tenant"] = tenant
        if workspace is not None:
            options["workspace"] = workspace
        return await self.submit("process_video_async", video_url=checked, **options)

    # ------------------------------------------------------------------ lookups
    async def job(self, job_id: str) -> AsyncJob:
        """Re-attach to a job by id (also from another process); raises :class:`JobNotFound`.

        Example::

            job = await client.job(job_id)   # e.g. "3f2a9c..."
            await job.status()
        """
        full = self._core.resolve_id(job_id)
        if full is None:
            raise JobNotFound(job_id)
        state = await self._core.fetch_state(full)
        if not state.exists:
            raise JobNotFound(job_id)
        return AsyncJob(self._core, full, known=True, state=state)

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
        core = self._core
        t, _ = core.identity(tenant, None)
        ws = check_name(workspace, "workspace") if workspace is not None else core.workspace
        wanted = JobStatus(status) if status is not None else None
        if limit < 1:
            raise ConfigurationError("limit must be at least 1")
        out: list[JobInfo] = []
        offset = 0
        page = max(limit, 100) if wanted is not None else limit
        while len(out) < limit:
            ids = await core.call(lambda s, o=offset: s.job_ids(t, ws, limit=page, offset=o))  # type: ignore[misc]
            if not ids:
                break
            states = await core.call(lambda s, i=ids: s.states(i))  # type: ignore[misc]
            for st in states:
                if st.exists and (wanted is None or st.status is wanted):
                    out.append(st.info)
            offset += page
            if len(ids) < page:
                break
        return out[:limit]

    async def workers(self) -> list[WorkerInfo]:
        """Workers with a recent heartbeat (and, for a minute, ones that stopped gracefully)."""
        return await self._core.workers()

    async def queue_depth(self, queue: str | None = None) -> int:
        """Jobs waiting (or running) in a queue."""
        q = check_name(queue or self.queue, "queue")
        return await self._core.call(lambda s: s.queue_depth(q))

    async def registered_jobs(self, queue: str | None = None) -> list[str]:
        """Job names workers have served on a queue (what ``submit`` accepts)."""
        q = check_name(queue or self.queue, "queue")
        return sorted(await self._core.known_names(q, refresh=True))

    # ------------------------------------------------------------------ batches
    async def map(
        self,
        fn: str | Callable[..., Any],
        items: Iterable[Any],
        /,
        *,
        chunk_size: int | str = "auto",
        key: str | None = None,
        star: bool = False,
        kwargs: dict[str, Any] | None = None,
        tenant: str | None = None,
        workspace: str | None = None,
        timing: bool = False,
        **options: Any,
    ) -> AsyncBatch:
        """Run job ``fn`` once per item, as one batch; returns an :class:`AsyncBatch` (results in input order).

        ``chunk_size="auto"`` (the default) measures how long an item takes (the function's history,
        else a first single-item job per worker) and sizes the jobs to about
        ``TASKQ_TARGET_CHUNK_SECONDS`` each, smaller towards the end so the workers finish together;
        ``batch.chunk_sizes`` shows the choice. ``chunk_size=1`` makes one job per item; an integer
        runs that many items per job. Chunks go through the built-in chunk runner, which catches
        each item's error separately. ``key``
        makes the batch idempotent: its id is the key, and submitting the same items again
        reuses the jobs that exist (finished or running) instead of running them twice.
        ``star=True`` unpacks each item as positional arguments; ``kwargs`` go to every call.
        SDK options as in ``submit``: ``_timeout`` (per job), ``_retries``, ``_queue``, ``_priority``,
        ``_expires``, ``_defer_by``, ``_defer_until``, ``_durable``. ``timing=True`` records when each
        item started, how long it took and where it ran: ``batch.to_frame()`` gains ``taskq_started``,
        ``taskq_duration_s``, ``taskq_worker``, ``taskq_attempts`` and ``batch.timeline()`` its rows.

        Example::

            batch = await client.map("score", texts, chunk_size=100, key="exp1-run", kwargs={"model": "v2"})
            values = await batch.results(timeout=600)
        """
        options = with_default_priority(fn, options)
        chunk_size = chunk_size_for(fn, chunk_size, options)  # a limit counts jobs: one item each
        fn = await job_target(self._core, fn)  # any callable on a LocalCluster's client (_callables)
        chunk_size = await self._core.chunk_size_by_name(fn, chunk_size, options)  # workers say it is limited
        return await map_items(
            self._core,
            fn,
            items,
            chunk_size=chunk_size,
            key=key,
            star=star,
            kwargs=kwargs,
            tenant=tenant,
            workspace=workspace,
            timing=timing,
            **options,
        )

    async def batch(self, batch_id: str) -> AsyncBatch:
        """Re-attach to a batch by id (or key), also from another process or after a kernel restart.

        Raises :class:`JobNotFound` if no such batch is stored for this client's tenant (the
        manifest expires with the batch's jobs).

        Example::

            batch = await client.batch("exp1-run")
            values = await batch.gather(errors="return")
        """
        return await attach(self._core, batch_id)

    async def gather(
        self,
        handles: Iterable[AsyncJob | AsyncBatch],
        /,
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Wait for several jobs and batches together; their results in the order given.

        A job gives its result, a batch the list of its items' results. The first error raises
        at once and the other waits stop (the jobs run on); ``return_exceptions=True`` puts each
        error in its place instead (a batch's failed items inside its list), as ``asyncio.gather``
        does. ``timeout`` bounds the whole wait (:class:`WaitTimeout`; the jobs live on).

        Example::

            a, b = await client.submit("add", 1, 2), await client.submit("add", 3, 4)
            batch = await client.map("double", range(10))
            three, seven, doubled = await client.gather([a, b, batch], timeout=60)
        """
        waits: list[Any] = []
        h: Any  # anything may be passed: a wrong type gets a message, not an AttributeError
        for h in handles:
            if isinstance(h, AsyncJob):
                waits.append(h.result(timeout))
            elif isinstance(h, AsyncBatch):
                waits.append(h.gather("return", timeout) if return_exceptions else h.results(timeout))
            else:
                for w in waits:
                    w.close()
                raise ConfigurationError(
                    f"gather() takes job and batch handles, not {type(h).__name__}; "
                    "for an id, re-attach first with client.job(id) or client.batch(id)"
                )
        tasks = [asyncio.ensure_future(w) for w in waits]
        try:
            return list(await asyncio.gather(*tasks, return_exceptions=return_exceptions))
        finally:
            # the first error ended the gather: stop the other waits (never the jobs), retrieve their outcomes
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------------ service views
    async def health(self, *, refresh: bool = False) -> HealthSnapshot:
        """The system's health: ``status`` (ok / degraded / down), ``reasons`` and the figures behind them.

        Returns the latest snapshot of the scheduled monitoring job with liveness re-checked now
        (server reachable, live workers, ping, snapshot age); ``refresh=True`` (or no snapshot
        yet) measures everything now. An unreachable server gives ``status='down'`` rather than
        an exception. A tenant-bound client sees its own job counts and stuck jobs only.

        Example::

            h = await client.health()
            if h.status != "ok": print(h.reasons)
        """
        return await _health.client_health(self._core, refresh=refresh)

    async def health_history(self, limit: int = 100) -> list[HealthSnapshot]:
        """The newest ``limit`` stored monitoring snapshots, newest first.

        Example::

            [(h.taken_at, h.status) for h in await client.health_history(12)]
        """
        return await _health.health_history(self._core, limit)

    async def results(
        self,
        *,
        tenant: str | None = None,
        workspace: str | None = None,
        since: datetime | timedelta | None = None,
        until: datetime | timedelta | None = None,
        function: str | None = None,
        state: str | None = None,
        limit: int = 100_000,
        cached: bool | None = None,
    ) -> Any:
        """Finished jobs from the results database as a DataFrame, oldest first (the newest ``limit``).

        The database outlives the server's result TTL. It is the SQLite file the workers on this
        machine write (``TASKQ_RESULTS_DB``, default ``TASKQ_DATA_DIR/results.db``); several
        machines need a database server (see :mod:`taskq_sdk.results_db`). ``since``/``until``
        take a datetime or a timedelta (that long ago). A tenant-bound client reads only its
        tenant's rows; an unbound one reads all tenants unless ``tenant=`` narrows it.
        ``cached=True`` lists the jobs whose result serves the result cache (column ``cache_entry``).

        Example::

            df = await client.results(workspace="exp1", since=timedelta(hours=1))
            df.groupby("state").size()
        """
        from .results_db import read_results

        if self.tenant is not None:
            if tenant is not None and tenant != self.tenant:
                raise ConfigurationError(
                    f"this client is bound to tenant {self.tenant!r} and cannot read tenant {tenant!r}'s results"
                )
            tenants: list[str] | None = [self.tenant]
        else:
            tenants = None if tenant is None else [check_name(tenant, "tenant")]
        ws = check_name(workspace, "workspace") if workspace is not None else None
        if state is not None and state not in ("complete", "failed", "cancelled"):
            raise ConfigurationError(f"state is one of complete, failed, cancelled; got {state!r}")
        return await asyncio.to_thread(
            read_results,
            self.settings,
            tenants=tenants,
            workspace=ws,
            function=function,
            state=state,
            since=since,
            until=until,
            limit=limit,
            cached=cached,
        )

    # ------------------------------------------------------------------ observability
    async def metrics(
        self,
        *,
        window: float | None = None,
        workspace: str | None = None,
        function: str | None = None,
        tenant: str | None = None,
    ) -> Metrics:
        """Job counts, failure rate and p50/p95 processing time, per tenant, workspace and function.

        ``window`` is in seconds (up to two hours, minute resolution); ``None`` means all time. A
        client bound to a tenant sees only that tenant; an unbound one sees all tenants unless
        ``tenant=`` narrows it.

        Example::

            m = await client.metrics(window=300, workspace="exp1")
            m.totals.failure_rate, m.totals.p95_seconds, m.queue_depth
        """
        return await _metrics.collect(self._core, window=window, workspace=workspace, function=function, tenant=tenant)

    async def set_limit(
        self,
        key: str,
        *,
        rate: str | None = None,
        concurrency: int | None = None,
        burst: int | None = None,
        tenant: str | None = None,
        share_with: Sequence[str] = (),
    ) -> None:
        """Declare (or change) limit key ``key``: jobs submitted with ``_limit_key=key`` share its budget.

        ``rate`` is ``"50/s"``, ``"3000/min"``...; ``concurrency`` caps the jobs running at once;
        ``burst`` (default a tenth of a second's worth of the rate, at least 1) is how many may
        start at once after a quiet spell. The key belongs to the tenant (each tenant has its own
        ``openai``); every function's jobs of that tenant that name it share it, on every worker.
        ``share_with=["team-b"]`` lets those tenants' jobs use it too, as ``_limit_key="<owner>/openai"``
        (one budget for all); no other tenant can. Declaring it again replaces the list. It applies
        from the next job start.

        Example::

            await client.set_limit("openai", rate="50/s", concurrency=3)
            await client.submit("ask", "hi", _limit_key="openai")
            await client.set_limit("openai", rate="50/s", share_with=["team-b"])   # team-b names it "<tenant>/openai"
        """
        limit = Limit.of(rate=rate, concurrency=concurrency, burst=burst)
        name = check_limit_name(key)
        t, _ = self._core.identity(tenant, None)
        if isinstance(share_with, str):
            raise ConfigurationError(f"share_with takes a list of tenant names, e.g. [{share_with!r}]")
        shared = sorted({check_name(other, "tenant") for other in share_with} - {t})
        await self._core.call(lambda s: _limits.declare(s.redis, t, name, limit, shared), "store a limit on")

    async def remove_limit(self, key: str, *, tenant: str | None = None) -> bool:
        """Drop limit key ``key`` (its jobs then run unlimited); True if it was declared.

        Example::

            await client.remove_limit("openai")
        """
        name = check_limit_name(key)
        t, _ = self._core.identity(tenant, None)
        return await self._core.call(lambda s: _limits.forget(s.redis, t, name), "remove a limit on")

    def dashboard(self, *, workspace: str | None = None, interval: float = 2.0, minutes: int = 15) -> Dashboard:
        """A live notebook dashboard refreshing on this client's loop (call it inside a running loop).

        Example::

            dash = client.dashboard(workspace="exp1")
            dash           # shows the widget; dash.close() stops updating
        """
        from .views.dashboard import Dashboard

        return Dashboard(self, workspace=workspace, interval=interval, minutes=minutes).start()


def _card(client: AsyncClient, kind: str, **live: Any) -> str:
    from .views.html import client_html

    return client_html(
        kind=kind,
        url=client.settings.safe_url(),
        state="closed" if client.is_closed else "open",
        tenant=client.tenant,
        workspace=client.workspace,
        queue=client.queue,
        **live,
    )


async def _live_facts(client: AsyncClient) -> tuple[list[Any], int]:
    workers, depth = await asyncio.gather(client.workers(), client.queue_depth())
    return workers, depth


async def _make_async(*args: Any, **kwargs: Any) -> AsyncClient:
    # built on the portal's loop, so every connection it opens lives there
    return AsyncClient(*args, **kwargs)


def _shutdown(portal: Portal, aclient: AsyncClient) -> None:
    if portal.running:
        try:
            portal.submit(aclient.close()).result(timeout=5)
        except Exception:
            pass
    portal.stop()


@forward_docs(AsyncClient)
class Client:
    """The blocking client: every :class:`AsyncClient` method, each call waiting for its answer.

    Works in scripts, from several threads and inside Jupyter's running loop. Ctrl-C (the stop
    button) interrupts a wait and leaves the client usable and the job running.

    Example::

        client = Client()                          # REDIS_* / TASKQ_* from the environment
        job = client.submit("add", 1, 2)
        print(job.result(timeout=30))
        client.close()
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
        self._portal = Portal("taskq-client")
        try:
            self._async: AsyncClient = self._portal.call(
                _make_async, redis_url, tenant=tenant, workspace=workspace, queue=queue, settings=settings, **overrides
            )
        except BaseException:
            self._portal.stop()
            raise
        self._finalizer = weakref.finalize(self, _shutdown, self._portal, self._async)
        opened(self)  # the default client of df.taskq.apply (_callables)

    # ------------------------------------------------------------------ properties
    @property
    def async_client(self) -> AsyncClient:
        """The :class:`AsyncClient` doing the work (lives on this client's event-loop thread)."""
        return self._async

    @property
    def portal(self) -> Portal:
        """The event-loop thread this client's calls run on (facades over its handles use it too)."""
        return self._portal

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

    def _repr_html_(self) -> str:
        aclient, portal = self._async, self._portal
        if aclient.is_closed or not portal.running or portal.in_portal_thread():
            return _card(aclient, "Client")
        future = portal.submit(_live_facts(aclient))
        try:
            workers, depth = future.result(timeout=VIEW_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return _card(aclient, "Client", error=f"the server did not answer within {VIEW_TIMEOUT:g}s")
        except Exception as exc:
            return _card(aclient, "Client", error=f"{type(exc).__name__}: {exc}")
        return _card(aclient, "Client", workers=workers, depth=depth)

    # ------------------------------------------------------------------ lifecycle
    def connect(self) -> Self:
        self._portal.call(self._async.connect)
        return self

    def ping(self) -> float:
        return self._portal.call(self._async.ping)

    def close(self) -> None:
        """Blocking: also stops the client's event-loop thread."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the API
    def submit(self, fn: str | Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job:
        return Job(self._portal.call(self._async.submit, fn, *args, **kwargs), self)

    def cache_clear(self, fn: str | Callable[..., Any] | None = None, /, *, tenant: str | None = None) -> int:
        return self._portal.call(self._async.cache_clear, fn, tenant=tenant)

    def submit_video(self, url: str, *, tenant: str | None = None, workspace: str | None = None, **options: Any) -> Job:
        return Job(
            self._portal.call(self._async.submit_video, url, tenant=tenant, workspace=workspace, **options), self
        )

    def job(self, job_id: str) -> Job:
        return Job(self._portal.call(self._async.job, job_id), self)

    def jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        workspace: str | None = None,
        tenant: str | None = None,
        limit: int = 100,
    ) -> list[JobInfo]:
        return self._portal.call(self._async.jobs, status=status, workspace=workspace, tenant=tenant, limit=limit)

    def workers(self) -> list[WorkerInfo]:
        return self._portal.call(self._async.workers)

    def queue_depth(self, queue: str | None = None) -> int:
        return self._portal.call(self._async.queue_depth, queue)

    def registered_jobs(self, queue: str | None = None) -> list[str]:
        return self._portal.call(self._async.registered_jobs, queue)

    def map(
        self,
        fn: str | Callable[..., Any],
        items: Iterable[Any],
        /,
        *,
        chunk_size: int | str = "auto",
        key: str | None = None,
        star: bool = False,
        kwargs: dict[str, Any] | None = None,
        tenant: str | None = None,
        workspace: str | None = None,
        timing: bool = False,
        **options: Any,
    ) -> Batch:
        abatch = self._portal.call(
            self._async.map,
            fn,
            items,
            chunk_size=chunk_size,
            key=key,
            star=star,
            kwargs=kwargs,
            tenant=tenant,
            workspace=workspace,
            timing=timing,
            **options,
        )
        return Batch(abatch, self)

    def batch(self, batch_id: str) -> Batch:
        return Batch(self._portal.call(self._async.batch, batch_id), self)

    def gather(
        self,
        handles: Iterable[Job | Batch],
        /,
        *,
        timeout: float | None = None,
        return_exceptions: bool = False,
    ) -> list[Any]:
        inner = [h.async_job if isinstance(h, Job) else h.async_batch if isinstance(h, Batch) else h for h in handles]
        return self._portal.call(self._async.gather, inner, timeout=timeout, return_exceptions=return_exceptions)

    def health(self, *, refresh: bool = False) -> HealthSnapshot:
        return self._portal.call(self._async.health, refresh=refresh)

    def health_history(self, limit: int = 100) -> list[HealthSnapshot]:
        return self._portal.call(self._async.health_history, limit)

    def results(
        self,
        *,
        tenant: str | None = None,
        workspace: str | None = None,
        since: datetime | timedelta | None = None,
        until: datetime | timedelta | None = None,
        function: str | None = None,
        state: str | None = None,
        limit: int = 100_000,
        cached: bool | None = None,
    ) -> Any:
        return self._portal.call(
            self._async.results,
            tenant=tenant,
            workspace=workspace,
            since=since,
            until=until,
            function=function,
            state=state,
            limit=limit,
            cached=cached,
        )

    def metrics(
        self,
        *,
        window: float | None = None,
        workspace: str | None = None,
        function: str | None = None,
        tenant: str | None = None,
    ) -> Metrics:
        return self._portal.call(
            self._async.metrics, window=window, workspace=workspace, function=function, tenant=tenant
        )

    def set_limit(
        self,
        key: str,
        *,
        rate: str | None = None,
        concurrency: int | None = None,
        burst: int | None = None,
        tenant: str | None = None,
        share_with: Sequence[str] = (),
    ) -> None:
        """Declare limit key ``key`` (see :meth:`AsyncClient.set_limit`).

        Example::

            client.set_limit("openai", rate="50/s", concurrency=3)
        """
        self._portal.call(
            self._async.set_limit, key, rate=rate, concurrency=concurrency, burst=burst, tenant=tenant,
            share_with=share_with,
        )  # fmt: skip

    def remove_limit(self, key: str, *, tenant: str | None = None) -> bool:
        """Drop limit key ``key`` (see :meth:`AsyncClient.remove_limit`)."""
        return self._portal.call(self._async.remove_limit, key, tenant=tenant)

    def dashboard(self, *, workspace: str | None = None, interval: float = 2.0, minutes: int = 15) -> Dashboard:
        """Blocking: it refreshes on this client's thread, so it never blocks the kernel."""
        from .views.dashboard import Dashboard

        return Dashboard(
            self._async, workspace=workspace, interval=interval, minutes=minutes, run=self._portal.submit
        ).start()
