"""The client core: what handles, batches, views and the scheduler need from a client, and nothing more.

A :class:`ClientCore` holds one client's connection state - settings, codec, the server
:class:`~taskq_sdk._backend.store.Store`, the event hub, the tasks it started - and the rules every
caller shares: tenant visibility, job-id resolution, and the validation and encoding of a submit.
:class:`~taskq_sdk.AsyncClient` owns one and adds the public API; handles (``AsyncJob(core, id)``),
batches and views take the core, so none of them imports the client::

    core = ClientCore(settings, tenant="acme", workspace=None, queue="default")
    row = core.prepare("add", (1, 2), {"_timeout": 30})     # validated and encoded, nothing written
    created, follow = await core.submit_followed(row)        # written; its events already awaited
    state = await core.fetch_state(row.job_id)               # JobState, as this tenant may see it
    await core.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable

from ._backend.connection import broker_error, broker_errors, make_redis
from ._backend.envelope import ResultRecord, decode_result, encode_job
from ._backend.events import EventHub, Subscription
from ._backend.keys import KeyLayout, layout_for
from ._backend.store import LIMITS_FEATURE, JobState, Store, SubmitRow, now_ms
from ._names import DEFAULT_TENANT, DEFAULT_WORKSPACE, check_job_id, check_name, new_job_id, qualify, tenant_of
from ._redact import call_repr
from .config import Settings
from .errors import (
    BadArguments,
    ClientClosed,
    ConfigurationError,
    InvalidName,
    JobNotFound,
    PayloadTooLarge,
    PermissionDenied,
    TaskqError,
    UnknownJob,
)
from .limits import check_limit_ref, split_limit_ref
from .models import JobInfo, JobStatus, WorkerInfo
from .registry import spec_for
from .serialization import Codec, codec_for

__all__ = [
    "MAX_PRIORITY",
    "SUBMIT_OPTIONS",
    "ClientCore",
    "ClientSource",
    "Follow",
    "WorkerWatch",
    "check_priority",
    "job_name",
    "resolve_settings",
]

logger = logging.getLogger("taskq_sdk")

T = TypeVar("T")

#: the SDK's own submit options (keyword-only, with a leading underscore, as in arq)
SUBMIT_OPTIONS = (
    "_job_id", "_defer_by", "_defer_until", "_expires", "_timeout", "_retries", "_queue", "_priority", "_durable",
    "_cache", "_limit_key",
)  # fmt: skip
_SUBMIT_OPTION_SET = frozenset(SUBMIT_OPTIONS)
#: the highest ``_priority``: a job of priority p queues as if submitted p x TASKQ_PRIORITY_STEP earlier
MAX_PRIORITY = 100
REGISTRY_CACHE_SECONDS = 5.0
#: how long ``retry`` of a running job whose cancel was requested waits for its worker to stop it (s)
RETRY_AFTER_CANCEL_WAIT_S = 5.0
LIVE_WORKER_SECONDS = 10.0


@runtime_checkable
class ClientSource(Protocol):
    """Anything a client can be built from besides a URL - a :class:`~taskq_sdk.LocalCluster`."""

    def client_settings(self) -> Settings: ...


def resolve_settings(
    source: str | ClientSource | None, settings: Settings | None, overrides: dict[str, Any]
) -> Settings:
    """A client's settings: explicit arguments, then the environment, then defaults.

    Example::

        resolve_settings("redis://localhost:6379/0", None, {"socket_timeout": 2})
    """
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


def job_name(fn: str | Callable[..., Any], what: str = "submit()") -> str:
    """The job name of ``fn``: the string itself, or the name a decorated function was registered under."""
    if isinstance(fn, str):
        if not fn:
            raise ConfigurationError("the job name must be a non-empty string")
        return fn
    if callable(fn):
        return spec_for(fn).name
    raise ConfigurationError(f"{what} takes a job name or a function, not {type(fn).__name__}")


#: the longest delay, expiry or time limit a submit accepts: 10 years. Far beyond any real need (a
#: schedule's expiry is one cron period, a leap-day schedule's up to 8 years), small enough that the
#: milliseconds stay exact integers on the server.
MAX_DURATION_SECONDS = 10 * 366 * 86_400.0
#: the shortest ``_timeout``: below 10 ms the limit is shorter than the event loop's own scheduling
MIN_TIMEOUT_SECONDS = 0.01
#: the shortest ``_expires``: a job expiring sooner would be dropped before any worker could start it
MIN_EXPIRES_SECONDS = 1.0
#: the most attempts ``_retries`` accepts (a job that fails 1,000 times will not succeed on the next)
MAX_RETRIES = 1000


def _seconds(value: Any, what: str, *, low: float = 0.0, high: float = MAX_DURATION_SECONDS) -> float | None:
    """``value`` (seconds or a timedelta) as a float in ``[low, high]``; NaN, infinities and others refused."""
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not low <= seconds <= high
    ):
        raise ConfigurationError(
            f"{what} takes a number of seconds (or a timedelta) from {low:g} to {high:,.0f} (10 years), not {value!r}"
        )
    return float(seconds)


def _defer_until_ms(value: Any, now: int) -> int:
    """The epoch milliseconds of a ``_defer_until`` datetime within 10 years of now (past times run at once)."""
    if not isinstance(value, datetime):
        raise ConfigurationError(f"_defer_until takes a datetime within 10 years of now, not {type(value).__name__}")
    try:
        ms = int(value.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        ms = None
    if ms is None or abs(ms - now) > MAX_DURATION_SECONDS * 1000:
        raise ConfigurationError(
            f"_defer_until takes a datetime within 10 years of now (a past one runs at once), not {value!r}; "
            "pass a timezone-aware datetime such as datetime.now(tz=UTC) + timedelta(hours=1)"
        )
    return ms


def _retries(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RETRIES:
        raise ConfigurationError(
            f"_retries counts attempts in total (like ARQ_MAX_RETRIES), an integer from 1 to {MAX_RETRIES}; "
            f"use 1 for no retry, not {value!r}"
        )
    return value


def check_priority(value: Any, what: str = "_priority") -> int:
    """A job priority: an integer from 0 (the default, lowest) to :data:`MAX_PRIORITY`.

    Example::

        check_priority(5)      # 5
    """
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_PRIORITY:
        raise ConfigurationError(
            f"{what} is an integer from 0 (the default, lowest) to {MAX_PRIORITY} (highest), not {value!r}; "
            "a job of priority p goes ahead of jobs queued less than p x TASKQ_PRIORITY_STEP seconds before it"
        )
    return value


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


@dataclass(frozen=True)
class Follow:
    """How a freshly submitted job's events reach its handle without a subscription round trip.

    ``prepared``: the subscription (or reply-channel expectation) made before the submit;
    ``reply_epoch``: the event hub's epoch when the job was submitted with this client's reply
    channel (``None``: it was not, its own channel carries its events).
    """

    prepared: Subscription | None = None
    reply_epoch: int | None = None


class WorkerWatch:
    """Warns once, when a wait has run ``settings.no_worker_notice`` seconds and no live worker serves its job.

    The warning goes to the ``taskq_sdk`` logger and, when the wait shows one, to its progress view
    (``view.notice(text)``); the wait goes on. A view without ``notice`` is left alone.

    Example::

        watch = WorkerWatch(core, "job 3f2a…", view)
        await asyncio.sleep(watch.due_in() or 0)
        if watch.due():
            await watch.check("score", "default")
    """

    def __init__(self, core: ClientCore, what: str, view: Any = None) -> None:
        self.core = core
        self.what = what
        self.view = view
        self.delay = core.settings.no_worker_notice
        self.started = time.monotonic()
        self.checked = self.delay <= 0
        #: the warning given (None: none yet, or a worker serves the job)
        self.warning: str | None = None

    def due_in(self) -> float | None:
        """Seconds until the check is due (cap a sleep with it); None once checked."""
        if self.checked:
            return None
        return max(0.0, self.started + self.delay - time.monotonic())

    def due(self) -> bool:
        return not self.checked and time.monotonic() - self.started >= self.delay

    async def check(self, function: str, queue: str) -> None:
        """Look once for a live worker serving ``function`` on ``queue``; warn if there is none."""
        self.checked = True
        note = await self.core.missing_worker_note(function, queue)
        if note is None:
            return
        waited = time.monotonic() - self.started
        self.warning = f"{self.what} has waited {waited:.0f}s and is still waiting. {note}"
        logger.warning("%s", self.warning)
        notice = getattr(self.view, "notice", None)
        if callable(notice):
            try:
                notice(self.warning)
            except Exception:  # a view's trouble must not end the wait
                logger.debug("progress view %r could not show the notice", self.view, exc_info=True)


class ClientCore:
    """One client's connection state and shared rules (see the module docstring).

    Example::

        core = ClientCore(Settings(), tenant=None, workspace=None, queue="default")
        await core.call(lambda store: store.queue_depth("default"))
    """

    def __init__(self, settings: Settings, *, tenant: str | None, workspace: str | None, queue: str | None) -> None:
        self.settings = settings
        tenant = tenant if tenant is not None else settings.tenant
        workspace = workspace if workspace is not None else settings.workspace
        self.tenant = None if tenant is None else check_name(tenant, "tenant")
        self.workspace = None if workspace is None else check_name(workspace, "workspace")
        self.queue = check_name(queue, "queue") if queue is not None else settings.queue
        #: key and channel names (the layout follows the server: see ``_backend.keys``)
        self.layout: KeyLayout = layout_for(settings, self.queue)
        self.codec: Codec = codec_for(settings)
        #: names this client's reply channel, where its jobs' events come (see ``self.layout.reply_channel``);
        #: 64 random bits (16 hex digits): every job it submits stores it, so short saves server memory
        self.client_id = secrets.token_hex(8)
        #: the event loop the core is used on (set when it is built on one, else at first use)
        self.loop: asyncio.AbstractEventLoop | None = None
        #: the AsyncClient this core belongs to: handles keep it alive (``job.client``), as they always did
        self.owner: Any = None
        self._state = _State.UNOPENED
        self._store: Store | None = None
        self._hub: EventHub | None = None
        self._registry: dict[str, tuple[float, dict[str, float]]] = {}
        self._signatures: dict[str, tuple[float, dict[str, frozenset[str] | None]]] = {}
        self._limited: dict[str, tuple[float, frozenset[str]]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            pass

    # ------------------------------------------------------------------ identity
    @property
    def is_closed(self) -> bool:
        return self._state is _State.CLOSED

    @property
    def state_name(self) -> str:
        """``unopened``, ``opened`` or ``closed``."""
        return self._state.name.lower()

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> Store:
        """The server store, connected lazily on first use; raises :class:`ClientClosed` once closed."""
        if self._state is _State.CLOSED:
            raise ClientClosed("Cannot use a client once it has been closed; create a new one.")
        if self._store is None:
            self._store = Store(
                make_redis(self.settings, self.codec), self.codec, self.settings, self.queue, pipelined=True
            )
            self._state = _State.OPENED
            if self.loop is None:
                try:
                    self.loop = asyncio.get_running_loop()
                except RuntimeError:
                    pass
        return self._store

    async def close(self) -> None:
        """Close connections and stop the tasks this client started (idempotent; jobs are not affected)."""
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
                await self._store.close()
            except Exception:
                pass

    async def ping(self) -> float:
        """Round-trip time to the server in seconds (raises :class:`BrokerUnavailable`)."""
        store = self.open()
        start = time.perf_counter()
        async with broker_errors(self.settings, "reach"):
            await store.ping()
        return time.perf_counter() - start

    # ------------------------------------------------------------------ plumbing
    async def call(self, fn: Callable[[Store], Awaitable[T]], what: str = "reach") -> T:
        """Run ``fn(store)``; connection failures become :class:`BrokerUnavailable` ("could not {what} ...")."""
        store = self.open()
        try:
            return await fn(store)
        except Exception as exc:  # a try, not broker_errors: no generator per call on the hot path
            translated = broker_error(exc, self.settings, what)
            if translated is None:
                raise
            raise translated from None

    def decode_result(self, blob: bytes) -> ResultRecord:
        """Decode a result envelope (no I/O)."""
        return decode_result(self.codec, blob)

    async def events(self) -> EventHub:
        """The client's event hub (one pub/sub connection shared by every waiter)."""
        self.open()
        if self._hub is None:
            self._hub = EventHub(self.settings, self.layout)
        return self._hub

    @contextlib.asynccontextmanager
    async def job_events(self, job_id: str) -> AsyncIterator[Subscription]:
        """Events of one job (started, progress, retrying, done) while the block runs.

        Example::

            async with core.job_events(job_id) as sub:
                event = await sub.get(timeout=1.0)     # {"e": "progress", "p": 0.5, ...} or None
        """
        hub = await self.events()
        async with hub.subscribe(self.layout.job_channel(job_id)) as sub:
            yield sub

    @contextlib.asynccontextmanager
    async def batch_events(self, tenant: str, batch_id: str) -> AsyncIterator[Subscription]:
        """Events of a batch's jobs (started, complete, failed, cancelled, retried) while the block runs."""
        hub = await self.events()
        async with hub.subscribe(self.layout.batch_channel(tenant, batch_id)) as sub:
            yield sub

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep ``task`` until it ends; :meth:`close` cancels it."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        """The tasks still running for this client (callbacks, widgets, views)."""
        return frozenset(self._tasks)

    # ------------------------------------------------------------------ tenancy
    def identity(self, tenant: Any, workspace: Any) -> tuple[str, str]:
        """The tenant and workspace a submit or listing acts for (a bound client refuses another tenant)."""
        if self.tenant is not None:
            if tenant is not None and tenant != self.tenant:
                raise ConfigurationError(
                    f"this client is bound to tenant {self.tenant!r} and cannot act for tenant {tenant!r}; "
                    "use a client bound to that tenant (or an unbound one)"
                )
            t = self.tenant
        else:
            t = DEFAULT_TENANT if tenant is None else check_name(tenant, "tenant")
        ws = check_name(workspace, "workspace") if workspace is not None else (self.workspace or DEFAULT_WORKSPACE)
        return t, ws

    def resolve_id(self, job_id: Any) -> str | None:
        """The full id ``job_id`` names for this client, or ``None`` if it names another tenant's job."""
        if not isinstance(job_id, str) or not job_id or len(job_id) > 300:
            raise InvalidName(f"job ids are non-empty strings of at most 300 characters, not {job_id!r}")
        if self.tenant is None:
            return job_id
        owner = tenant_of(job_id)
        if owner == self.tenant:
            return job_id
        if owner != DEFAULT_TENANT:
            return None  # another tenant's id
        return qualify(self.tenant, job_id)

    def visible(self, state: JobState) -> bool:
        """Whether this client may see a job (a bound client sees its own tenant's jobs only)."""
        if self.tenant is None:
            return True
        owner = state.info.tenant if state.has_meta else DEFAULT_TENANT
        return owner == self.tenant

    async def fetch_state(self, job_id: str, *, with_result: bool = False) -> JobState:
        """A job's state as this client may see it (another tenant's job reads as not found)."""
        state = await self.call(lambda s: s.state(job_id, with_result=with_result))
        if not self.visible(state):
            return JobState(JobStatus.not_found, JobInfo(id=job_id, status=JobStatus.not_found), False, False)
        return state

    # ------------------------------------------------------------------ submitting
    async def known_names(self, queue: str, *, refresh: bool = False) -> dict[str, float]:
        """Job names workers have served on ``queue`` (cached for a few seconds)."""
        cached = self._registry.get(queue)
        if cached is not None and not refresh and time.monotonic() - cached[0] < REGISTRY_CACHE_SECONDS:
            return cached[1]
        names = await self.call(lambda s: s.registry(queue), "submit a job to")
        self._registry[queue] = (time.monotonic(), names)
        return names

    async def check_limit_shared(self, limit_key: str | None, tenant: str) -> None:
        """Raise :class:`PermissionDenied` if ``limit_key`` names another tenant's key not shared with ``tenant``.

        Unreadable (a tenant's ACL user may not read another tenant's keys): the worker decides, and
        refuses the job the same way.
        """
        owner, key = split_limit_ref(limit_key or "")
        if owner is None:
            return
        from ._backend import limits

        shared = await self.call(lambda s: limits.shared_with(s.redis, owner, key, tenant), "check a limit on")
        if shared is False:
            raise PermissionDenied(
                f"limit key {owner}/{key} is not shared with tenant {tenant}: its owner shares it with "
                f"client.set_limit({key!r}, ..., share_with=[{tenant!r}])"
            )

    async def check_known(self, name: str, queue: str) -> None:
        """Raise :class:`UnknownJob` if workers served names on ``queue`` but never ``name``."""
        names = await self.known_names(queue)
        if not names or name in names:
            return
        names = await self.known_names(queue, refresh=True)
        if names and name not in names:
            raise UnknownJob(name, list(names), queue)

    async def chunk_size_by_name(self, fn: object, chunk_size: int | str, options: Mapping[str, Any]) -> int | str:
        """``chunk_size="auto"`` of a function named by a string becomes 1 when its workers published a limit
        for it (a limit counts calls; the worker's gate also counts each item of a chunk). Example::

            await core.chunk_size_by_name("call_api", "auto", {})   # 1 if call_api has @job(rate_limit=...)
        """
        if chunk_size != "auto" or not isinstance(fn, str):
            return chunk_size
        queue = options.get("_queue") or self.queue
        cached = self._limited.get(queue)
        if cached is None or time.monotonic() - cached[0] >= REGISTRY_CACHE_SECONDS:
            try:
                cached = (time.monotonic(), await self.call(lambda s: s.limited_functions(queue), "submit a job to"))
            except TaskqError:
                cached = (time.monotonic(), frozenset())  # unreadable: the worker's gate still counts every item
            self._limited[queue] = cached
        return 1 if fn in cached[1] else chunk_size

    async def published_params(self, queue: str, *, refresh: bool = False) -> dict[str, frozenset[str] | None]:
        """Keyword parameters workers published per function on ``queue`` (cached; {} when unknown or unreadable)."""
        cached = self._signatures.get(queue)
        if cached is not None and not refresh and time.monotonic() - cached[0] < REGISTRY_CACHE_SECONDS:
            return cached[1]
        try:
            sigs = await self.call(lambda s: s.signatures(queue), "submit a job to")
        except TaskqError:
            sigs = {}  # an older ACL without the signatures key, say: unknown, which never blocks a submit
        self._signatures[queue] = (time.monotonic(), sigs)
        return sigs

    async def check_arguments(
        self,
        fn: str | Callable[..., Any],
        name: str,
        queue: str,
        kwargs: dict[str, Any],
        *,
        wait_hint: str | None = "job.result(timeout=...)",
    ) -> None:
        """Raise :class:`BadArguments` for keywords the function does not take, and for a wait's ``timeout=``.

        The signature is the callable's own when ``fn`` is one, else what the queue's workers
        published; an unknown signature (old workers, none started) blocks nothing but ``timeout=``.
        ``wait_hint`` names the wait a ``timeout=`` was probably meant for (``None``: the keywords
        were given explicitly for the function, as ``map(kwargs=...)``, so ``timeout`` is just a keyword).
        """
        names = {k for k in kwargs if not k.startswith("_") and k not in ("tenant", "workspace")}
        if not names:
            return
        if callable(fn) and not isinstance(fn, str):
            params, known, source = spec_for(fn).params, True, "its signature"
        else:
            sigs = await self.published_params(queue)
            if name in sigs and (sigs[name] is None or names <= (sigs[name] or frozenset())):
                params, known = sigs[name], True
            else:  # not published, or a keyword it lacks: maybe a worker with a newer version just started
                sigs = await self.published_params(queue, refresh=True)
                params, known = sigs.get(name), name in sigs
            source = "the signature its workers published"
        if wait_hint is not None and "timeout" in names and not (known and params is not None and "timeout" in params):
            raise BadArguments.timeout_is_a_wait(
                name, kwargs["timeout"], wait_hint.replace("...", repr(kwargs["timeout"]))
            )
        if not known or params is None:
            return
        unexpected = sorted(names - params)
        if unexpected:
            takes = ", ".join(sorted(params)) or "no keyword arguments"
            raise BadArguments(
                f"{name}() takes no keyword argument{'s' if len(unexpected) > 1 else ''} "
                f"{', '.join(repr(u) for u in unexpected)} (checked against {source}). It takes: {takes}. "
                "Check the spelling; SDK options start with '_' (_timeout, _retries, ...).",
                function=name,
                unexpected=unexpected,
            )

    def prepare(
        self,
        fn: str | Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        retry_of: str | None = None,
        batch: str | None = None,
    ) -> SubmitRow:
        """Validate a submit's options, identity and payload and encode the job; nothing is written.

        ``kwargs`` holds the function's keyword arguments plus the SDK options (``_timeout``, ...)
        and ``tenant``/``workspace``; it is consumed.
        """
        options = {k: kwargs.pop(k) for k in list(kwargs) if k.startswith("_")}
        unknown = sorted(options.keys() - _SUBMIT_OPTION_SET) if options else None
        if unknown:
            raise ConfigurationError(
                f"unknown submit option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}: keyword arguments "
                f"starting with '_' are reserved for the SDK ({', '.join(SUBMIT_OPTIONS)})"
            )
        name = job_name(fn)
        tenant, workspace = self.identity(kwargs.pop("tenant", None), kwargs.pop("workspace", None))
        queue = check_name(options.get("_queue") or self.queue, "queue")
        local_id = check_job_id(options["_job_id"]) if options.get("_job_id") is not None else new_job_id()
        job_id = qualify(tenant, local_id)

        now = now_ms()
        defer_by = _seconds(options.get("_defer_by"), "_defer_by")
        defer_until = options.get("_defer_until")
        if defer_by is not None and defer_until is not None:
            raise ConfigurationError("use either _defer_by or _defer_until, not both")
        expires = _seconds(options.get("_expires"), "_expires", low=MIN_EXPIRES_SECONDS)
        timeout = _seconds(options.get("_timeout"), "_timeout", low=MIN_TIMEOUT_SECONDS)
        retries = _retries(options.get("_retries"))
        durable = options.get("_durable")
        if durable is None:
            durable = self.settings.durable_submit
        elif not isinstance(durable, bool):
            raise ConfigurationError(f"_durable takes True or False, not {durable!r}")
        priority = check_priority(options.get("_priority"))
        if priority and (defer_by or defer_until is not None):
            raise ConfigurationError(
                "_priority orders jobs that are due now; a deferred job (_defer_by / _defer_until) starts at its "
                "time: pass one or the other"
            )

        if defer_until is not None:
            score = _defer_until_ms(defer_until, now)
        elif defer_by:
            score = now + int(defer_by * 1000)
        else:
            # priority as a head start in the queue (sorted by due time): it ages, so nothing starves
            score = now - int(priority * self.settings.priority_step * 1000)
        if expires is not None and now + expires * 1000 < score:
            raise ConfigurationError(
                f"_expires={expires:g}s would drop the job before its deferral ends "
                f"({(score - now) / 1000:g}s from now): _expires counts from the submit, so it must be at "
                "least the deferral; raise it or drop it"
            )
        job_ttl_ms = int(expires * 1000) if expires else max(0, score - now) + 86_400_000
        lk = options.get("_limit_key")
        limit_key = check_limit_ref(lk, tenant) if lk is not None else None
        if limit_key is not None:
            self.open().refuse_on_cluster(LIMITS_FEATURE)
        job_bytes = encode_job(self.codec, name, list(args), kwargs, enqueued_ms=now, limit_key=limit_key)
        if len(job_bytes) > self.settings.max_payload_bytes:
            raise PayloadTooLarge(len(job_bytes), self.settings.max_payload_bytes)
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
            durable=durable,
            limit_key=limit_key,
        )

    async def write(self, row: SubmitRow, *, reply_to: str = "") -> bool:
        """Write one prepared job; True if created (False: its id was taken, the existing job stays)."""
        return await self.call(lambda s: s.submit_one(row, reply_to=reply_to), "submit a job to")

    async def submit_followed(self, row: SubmitRow) -> tuple[bool, Follow]:
        """Write one prepared job, listening for its events first, so a wait right after misses none.

        The events come on this client's reply channel (subscribed once, no server work per job),
        else on the job's own channel.
        """
        hub = await self.events()
        channel = self.layout.job_channel(row.job_id)
        reply_to, epoch = "", None
        prepared: Subscription | None = None
        try:
            epoch = await hub.reply_channel(self.layout.reply_channel(tenant_of(row.job_id), self.client_id))
            if epoch is not None:
                reply_to, prepared = self.client_id, hub.expect(channel)
            else:
                prepared = await hub.prepare(channel)
        except Exception:
            prepared = None
        try:
            created = await self.write(row, reply_to=reply_to)
        except BaseException:
            if prepared is not None:
                hub.release(prepared)
            raise
        return created, Follow(prepared, epoch if reply_to else None)

    # ------------------------------------------------------------------ job operations
    async def cancel(self, job_id: str) -> bool:
        """Cancel a visible job: True if it was queued (removed) or running (the worker stops it)."""
        state = await self.fetch_state(job_id)
        if not state.exists:
            return False
        queue = state.info.queue
        outcome = await self.call(lambda s: s.cancel(job_id, queue))
        return outcome in ("cancelled", "running")

    async def stopped_after_cancel(self, job_id: str, state: JobState) -> JobState:
        """The final state of a running job whose cancel was requested, once its worker stopped it.

        Waits on the job's events (at most :data:`RETRY_AFTER_CANCEL_WAIT_S`); a job running or queued
        without a cancel request, or one its worker has not stopped by then, raises :class:`TaskqError`.
        Example::

            state = await core.stopped_after_cancel(job_id, state)   # right after core.cancel(job_id)
        """
        if not await self.call(lambda s: s.cancel_requested(job_id)):
            raise TaskqError(f"job {job_id} is still {state.status.value}; wait for it or cancel it before retrying")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETRY_AFTER_CANCEL_WAIT_S
        async with self.job_events(job_id) as sub:
            while True:
                state = await self.fetch_state(job_id)  # read after subscribing: no event slips in between
                if state.status.finished:
                    return state
                left = deadline - loop.time()
                if left <= 0:
                    raise TaskqError(
                        f"job {job_id} is still {state.status.value}: its cancel was requested, but its worker has "
                        f"not stopped it within {RETRY_AFTER_CANCEL_WAIT_S:g} s (a job that ignores cancellation, "
                        "or a busy or unreachable worker); wait for it to finish before retrying"
                    )
                await sub.get(timeout=left)

    async def resubmit(self, job_id: str, **overrides: Any) -> tuple[str, bool]:
        """Submit a finished job's call again, linked to it; the new job's id and whether it was created."""
        state = await self.fetch_state(job_id)
        if not state.exists:
            raise JobNotFound(job_id)
        if not state.status.finished:
            state = await self.stopped_after_cancel(job_id, state)
        definition = await self.call(lambda s: s.job_definition(job_id))
        if definition is None:
            raise JobNotFound(job_id, "its arguments are no longer stored, so it cannot be retried")
        function, args, kwargs = definition.function, definition.args, dict(definition.kwargs)
        info = state.info
        kwargs.setdefault("tenant", info.tenant)
        kwargs.setdefault("workspace", info.workspace)
        opts: dict[str, Any] = {"_queue": info.queue}
        if info.timeout is not None:
            opts["_timeout"] = info.timeout
        if info.max_tries is not None:
            opts["_retries"] = info.max_tries
        if definition.limit_key:
            opts["_limit_key"] = definition.limit_key  # the retry counts against the same limit
        opts.update(overrides)
        # tenant/workspace are identity (``prepare`` takes them out of the job's arguments)
        row = self.prepare(function, tuple(args), {**kwargs, **opts}, retry_of=job_id)
        created = await self.write(row)
        return row.job_id, created

    async def workers(self) -> list[WorkerInfo]:
        """Workers with a recent heartbeat (and, for a minute, ones that stopped gracefully)."""
        return await self.call(lambda s: s.workers())

    async def missing_worker_note(self, function: str, queue: str) -> str | None:
        """What a long wait warns once: the sentence saying no live worker serves ``function`` on ``queue``, or None.

        Example::

            note = await core.missing_worker_note("score", "default")   # None while a worker serves it
        """
        try:
            workers = await self.workers()
        except TaskqError:
            return None  # cannot tell: say nothing rather than something wrong
        info = JobInfo(id="", status=JobStatus.queued, function=function, queue=queue)
        serving, note = self._liveness(workers, info)
        return None if serving else note

    async def liveness_note(self, info: JobInfo) -> str:
        """One sentence on whether any live worker serves a job's function and queue (for timeouts)."""
        try:
            workers = await self.workers()
        except TaskqError:
            return "The server could not be asked about workers."
        return self._liveness(workers, info)[1]

    @staticmethod
    def _liveness(workers: list[WorkerInfo], info: JobInfo) -> tuple[bool, str]:
        """Whether a live worker serves the job's function on its queue, and one sentence saying so."""
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
            return False, (
                "No live worker was seen (no heartbeat in the last "
                f"{LIVE_WORKER_SECONDS:g}s): start one with `python -m taskq_sdk.worker` or LocalCluster()."
            )
        if info.function and not any(info.function in w.functions for w in on_queue):
            return False, (
                f"No live worker serves {info.function!r} on queue {info.queue!r} "
                f"({len(live)} live worker{'s' if len(live) != 1 else ''} elsewhere)."
            )
        busy = sum(w.ongoing for w in on_queue)
        return bool(on_queue), f"{len(on_queue)} live worker(s) serve queue {info.queue!r} ({busy} jobs running)."
