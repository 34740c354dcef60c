"""Connect the queue with a content pipeline: submit videos and batches with callbacks, webhooks and tracking.

``ContentPipeline`` (blocking; :class:`AsyncContentPipeline` for ``async`` code) submits the
built-in jobs (or any job) and remembers everything it submitted:

* ``on_complete(job, result)`` / ``on_error(job, exception)`` run **in the submitting process**
  once the job finishes - in a helper thread for ``ContentPipeline`` (so they may block), on the
  client's event loop for ``AsyncContentPipeline`` (plain functions or coroutines). They work in a
  notebook too: the kernel keeps running while jobs finish.
* ``webhook="https://..."`` makes the **worker** POST a JSON summary of the finished job to that
  URL (``X-Taskq-Signature: sha256=<HMAC of the body>`` when ``TASKQ_WEBHOOK_SECRET`` is set on
  the worker). The same address rules as the video download apply, checked on the worker after
  DNS: only public addresses in service mode; loopback and private ones only with
  ``TASKQ_ALLOW_PRIVATE_URLS=true`` (local mode). Redirects are not followed. Delivery is retried
  three times on connection errors and 5xx; the outcome shows in ``status()``.
* ``status()`` is a DataFrame of all submitted jobs: status, progress, timings, errors, callback
  and webhook outcomes.

Example::

    from taskq_sdk.pipeline_integration import ContentPipeline

    with ContentPipeline(client, workspace="exp1") as pipe:
        pipe.submit_video(url, on_complete=lambda job, r: print(job.id, r["scene_changes"]))
        pipe.submit_batch(["I love it", "I hate it"], analyzers=["sentiment"], webhook="https://hooks.example.com/t")
        pipe.wait(timeout=300)
        pipe.status()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import hmac
import inspect
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._aio import stop_tasks
from ._names import check_job_id, qualify, tenant_of
from .errors import BlockedDestination, ConfigurationError, InvalidURL, TaskqError

if TYPE_CHECKING:
    from .client import AsyncClient, Client
    from .config import Settings
    from .extensions import FinishedJob
    from .handles import AsyncJob, Job

__all__ = [
    "AsyncContentPipeline",
    "ContentPipeline",
    "WebhookSender",
    "hook_key",
    "hooks_flag",
    "validate_webhook_url",
]

logger = logging.getLogger("taskq_sdk.pipeline")


def hooks_flag(tenant: str) -> str:
    """Set while a tenant has registered webhooks; workers skip the lookups for tenants without one."""
    return f"taskq:{tenant}:hooks"


HOOK_TTL_MS = 8 * 86_400_000
WEBHOOK_ATTEMPTS = 3
MAX_WEBHOOK_RESULT_BYTES = 256 * 1024
MAX_CONCURRENT_WEBHOOKS = 8

Callback = Callable[..., Any]


def hook_key(job_id: str) -> str:
    """The hash holding a job's webhook URL and delivery outcome: ``taskq:<tenant>:hook:<id>``."""
    return f"taskq:{tenant_of(job_id)}:hook:{job_id}"


def validate_webhook_url(url: str) -> str:
    """Check a webhook URL's syntax and scheme (``http``/``https``, no credentials); return it normalised.

    Which addresses may be contacted is decided on the worker, after DNS.

    Example::

        validate_webhook_url("https://hooks.example.com/done")   # 'https://hooks.example.com/done'
        validate_webhook_url("file:///etc/passwd")               # UnsupportedScheme
    """
    from .jobs._fetch import validate_video_url

    try:
        return validate_video_url(url, allow_private=False)
    except InvalidURL as exc:
        text = str(exc).replace("the video URL", "the webhook URL").replace("the video job accepts", "webhooks accept")
        raise type(exc)(text) from None


# ---------------------------------------------------------------------------- worker side
def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else ("" if v is None else str(v))


def webhook_body(job: FinishedJob) -> bytes:
    """The JSON a webhook receives for a finished job (the result only when JSON-able and <= 256 KiB)."""
    payload: dict[str, Any] = {
        "event": "job.finished",
        "job_id": job.job_id,
        "tenant": job.tenant,
        "workspace": job.workspace,
        "function": job.function,
        "state": job.state,
        "attempt": job.attempt,
        "duration_s": round(job.duration, 6),
        "finished_at": datetime.fromtimestamp(job.finished_ms / 1000, tz=UTC).isoformat(),
        "error": None if job.error is None else {"type": job.error.type, "message": job.error.message[:4000]},
        "result": None,
        "result_included": False,
    }
    if job.state == "complete":
        try:
            encoded = json.dumps(job.value, allow_nan=False)
        except (TypeError, ValueError):
            encoded = ""
        if encoded and len(encoded) <= MAX_WEBHOOK_RESULT_BYTES:
            payload["result"] = job.value
            payload["result_included"] = True
    return json.dumps(payload, separators=(",", ":")).encode()


class WebhookSender:
    """The engine extension that POSTs finished jobs to their registered webhooks, off the hot path.

    A finish listener only appends to a list; every 0.2 s a background task looks up, in one
    pipelined round trip (skipped entirely while no client registered any webhook), which of the
    finished jobs have a webhook, and delivers those concurrently through the SSRF guard.

    Example::

        Engine(specs, settings=s, extensions=[WebhookSender(s)])
    """

    def __init__(self, settings: Settings, *, network_backend: Any = None) -> None:
        self.settings = settings
        self.network_backend = network_backend
        self._pending: deque[FinishedJob] = deque()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._redis: Any = None
        self._sem = asyncio.Semaphore(MAX_CONCURRENT_WEBHOOKS)
        self.delivered = 0
        self.failed = 0

    def _on_finish(self, job: FinishedJob) -> None:
        if len(self._pending) < 100_000:
            self._pending.append(job)

    async def start(self, engine: Any) -> None:
        self._redis = engine.pool
        engine.finish_listeners.append(self._on_finish)
        self._task = asyncio.create_task(self._loop(), name="taskq-webhooks")

    async def stop(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._check()  # jobs finished in the last moments
            await stop_tasks([self._task])
            self._task = None
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=5.0)
            for task in self._inflight:
                task.cancel()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            try:
                await self._check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if "NOPERM" in str(exc) or type(exc).__name__ in ("NoPermissionError", "PermissionDenied"):
                    logger.debug("webhooks: no permission to look up registrations (%s); skipped", exc)
                    self._pending.clear()
                else:
                    logger.warning("webhooks: looking up registrations failed (%s); will retry", exc)

    async def _check(self) -> None:
        if not self._pending:
            return
        batch = list(self._pending)
        tenants = sorted({job.tenant for job in batch})
        # keys under the jobs' own tenants only, so this works for per-tenant ACL users too
        async with self._redis.pipeline(transaction=False) as pipe:
            for tenant in tenants:
                pipe.exists(hooks_flag(tenant))
            flags = await pipe.execute()
        with_hooks = {t for t, flag in zip(tenants, flags, strict=True) if flag}
        candidates = [job for job in batch if job.tenant in with_hooks]
        urls: list[Any] = []
        if candidates:
            async with self._redis.pipeline(transaction=False) as pipe:
                for job in candidates:
                    pipe.hget(hook_key(job.job_id), "url")
                urls = await pipe.execute()
        for _ in batch:
            self._pending.popleft()
        for job, url in zip(candidates, urls, strict=True):
            if url:
                task = asyncio.create_task(self._deliver(job, _s(url)), name=f"taskq-webhook-{job.job_id}")
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)

    async def _deliver(self, job: FinishedJob, url: str) -> None:
        body = webhook_body(job)
        headers = [
            (b"Content-Type", b"application/json"),
            (b"User-Agent", b"taskq-sdk-webhook/1"),
            (b"X-Taskq-Event", b"job.finished"),
            (b"X-Taskq-Job-Id", job.job_id.encode("utf-8", "replace")),
        ]
        secret = self.settings.webhook_secret
        if secret is not None:
            key = secret.get_secret_value() if hasattr(secret, "get_secret_value") else str(secret)
            digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
            headers.append((b"X-Taskq-Signature", f"sha256={digest}".encode()))
        outcome: dict[str, Any] = {}
        async with self._sem:
            for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
                try:
                    status = await post(url, body, headers, self.settings, network_backend=self.network_backend)
                except BlockedDestination as exc:
                    message = str(exc).replace("refusing to download from", "refusing to send a webhook to")
                    outcome = {"status": "refused", "error": message[:1000], "attempts": attempt}
                    break
                except (InvalidURL, ConfigurationError) as exc:
                    outcome = {"status": "failed", "error": str(exc)[:1000], "attempts": attempt}
                    break
                except Exception as exc:  # connection errors, timeouts: retried
                    outcome = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:1000], "attempts": attempt}
                else:
                    outcome = {"status": "delivered" if status < 300 else "failed", "code": status, "attempts": attempt}
                    if status < 300:
                        break
                    outcome["error"] = f"the webhook answered HTTP {status}"
                    if status < 500 and status not in (408, 429):
                        break
                if attempt < WEBHOOK_ATTEMPTS:
                    await asyncio.sleep(0.5 * 2 ** (attempt - 1))
        if outcome.get("status") == "delivered":
            self.delivered += 1
        else:
            self.failed += 1
            logger.warning("webhook for job %s not delivered: %s", job.job_id, outcome.get("error"))
        outcome["at"] = int(time.time() * 1000)
        with contextlib.suppress(Exception):
            await self._redis.hset(hook_key(job.job_id), mapping={k: str(v) for k, v in outcome.items()})


async def post(
    url: str, body: bytes, headers: list[tuple[bytes, bytes]], settings: Settings, *, network_backend: Any = None
) -> int:
    """POST ``body`` to ``url`` through the SSRF guard (no redirects, no proxies); return the HTTP status.

    Example::

        status = await post("https://hooks.example.com/x", b"{}", [(b"Content-Type", b"application/json")], s)
    """
    try:
        import anyio  # noqa: F401  (httpcore's asyncio backend)
        import httpcore
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('webhooks need httpcore: pip install "taskq-sdk[video]"') from exc
    from .jobs._fetch import AddressGuard, _request_parts, guarded_backend

    checked = validate_webhook_url(url)
    guard = AddressGuard(allow_private=settings.allow_private_urls, resolve_timeout=settings.webhook_timeout)
    scheme, host, port, target, host_header = _request_parts(checked)
    timeouts = {
        "connect": settings.webhook_timeout,
        "read": settings.webhook_timeout,
        "write": settings.webhook_timeout,
        "pool": settings.webhook_timeout,
    }
    backend = guarded_backend(guard, network_backend)
    async with (
        asyncio.timeout(settings.webhook_timeout * 2),
        httpcore.AsyncConnectionPool(network_backend=backend, retries=0, max_connections=1) as pool,
    ):
        response = await pool.request(
            "POST",
            httpcore.URL(scheme=scheme, host=host.encode("ascii"), port=port, target=target),
            headers=[(b"Host", host_header.encode("ascii")), *headers],
            content=body,
            extensions={"timeout": timeouts},
        )
        return int(response.status)


# ---------------------------------------------------------------------------- client side
@dataclass
class _Record:
    job_id: str
    kind: str
    function: str
    label: str | None
    submitted_at: datetime
    webhook: str | None
    handle: Any
    callback: str = "none"  # none | pending | ran | failed
    callback_error: str | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)


CallbackRunner = Callable[[Callback, "AsyncJob", Any], Any]


class AsyncContentPipeline:
    """Submit content jobs with callbacks and webhooks from ``async`` code, and track them (see the module).

    Example::

        pipe = AsyncContentPipeline(aclient, workspace="exp1")
        job = await pipe.submit_video(url, on_complete=lambda job, result: print(result["duration_s"]))
        await pipe.wait(timeout=120)
        frame = await pipe.status()
    """

    def __init__(
        self,
        client: AsyncClient,
        *,
        tenant: str | None = None,
        workspace: str | None = None,
        webhook: str | None = None,
        runner: CallbackRunner | None = None,
    ) -> None:
        self.client = client
        self.tenant = tenant
        self.workspace = workspace
        self.webhook = None if webhook is None else validate_webhook_url(webhook)
        self._runner = runner
        self._records: list[_Record] = []

    # ------------------------------------------------------------------ submitting
    async def submit(
        self,
        fn: str | Callable[..., Any],
        /,
        *args: Any,
        on_complete: Callback | None = None,
        on_error: Callback | None = None,
        webhook: str | None = None,
        label: str | None = None,
        **kwargs: Any,
    ) -> AsyncJob:
        """Submit any job (``client.submit`` arguments) with optional callbacks, webhook and label.

        Example::

            job = await pipe.submit("keywords", text, top=10, on_complete=store_keywords)
        """
        return await self._submit("job", fn, args, kwargs, on_complete, on_error, webhook, label)

    async def submit_video(
        self,
        url: str,
        *,
        on_complete: Callback | None = None,
        on_error: Callback | None = None,
        webhook: str | None = None,
        label: str | None = None,
        **options: Any,
    ) -> AsyncJob:
        """Submit the built-in video job for ``url`` (checked first); ``options`` as for ``submit_video``.

        Example::

            await pipe.submit_video("https://example.com/a.mp4", thumbnails=4, on_error=alert)
        """
        from .jobs._fetch import validate_video_url

        checked = validate_video_url(url, allow_private=self.client.settings.allow_private_urls)
        return await self._submit(
            "video",
            "process_video_async",
            (),
            {"video_url": checked, **options},
            on_complete,
            on_error,
            webhook,
            label or url,
        )

    async def submit_batch(
        self,
        content_items: Sequence[Any],
        *,
        analyzers: Sequence[str] | None = None,
        on_complete: Callback | None = None,
        on_error: Callback | None = None,
        webhook: str | None = None,
        label: str | None = None,
        **options: Any,
    ) -> AsyncJob:
        """Submit ``batch_analysis_async`` over ``content_items`` (texts or dicts with ``text``).

        Example::

            await pipe.submit_batch(["great", "awful"], analyzers=["sentiment"], on_complete=save)
        """
        if isinstance(content_items, str | bytes) or not isinstance(content_items, Sequence):
            raise ConfigurationError("content_items takes a list of texts or of dicts with a 'text' key")
        kwargs: dict[str, Any] = {"content_items": list(content_items), **options}
        if analyzers is not None:
            kwargs["analyzers"] = list(analyzers)
        return await self._submit(
            "batch",
            "batch_analysis_async",
            (),
            kwargs,
            on_complete,
            on_error,
            webhook,
            label or f"{len(content_items)} items",
        )

    async def _submit(
        self,
        kind: str,
        fn: str | Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        on_complete: Callback | None,
        on_error: Callback | None,
        webhook: str | None,
        label: str | None,
    ) -> AsyncJob:
        for name, cb in (("on_complete", on_complete), ("on_error", on_error)):
            if cb is not None and not callable(cb):
                raise ConfigurationError(f"{name} takes a function, not {type(cb).__name__}")
        kwargs = dict(kwargs)
        if self.tenant is not None:
            kwargs.setdefault("tenant", self.tenant)
        if self.workspace is not None:
            kwargs.setdefault("workspace", self.workspace)
        hook = validate_webhook_url(webhook) if webhook is not None else self.webhook
        if hook is not None:
            local = kwargs.get("_job_id")
            local = check_job_id(local) if local is not None else uuid.uuid4().hex
            kwargs["_job_id"] = local
            tenant, _ = self.client._identity(kwargs.get("tenant"), kwargs.get("workspace"))
            full_id = qualify(tenant, local)
            await self._register_hook(full_id, hook)
        job = await self.client.submit(fn, *args, **kwargs)
        function = fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))
        record = _Record(
            job_id=job.id,
            kind=kind,
            function=function,
            label=label,
            submitted_at=datetime.now(tz=UTC),
            webhook=hook,
            handle=job,
            callback="pending" if (on_complete or on_error) else "none",
        )
        self._records.append(record)
        job.add_done_callback(lambda j: self._on_done(record, j, on_complete, on_error))
        return job

    async def _register_hook(self, job_id: str, url: str) -> None:
        async def write(store: Any) -> None:
            async with store.redis.pipeline(transaction=False) as pipe:
                pipe.hset(hook_key(job_id), mapping={"url": url, "status": "pending"})
                pipe.pexpire(hook_key(job_id), HOOK_TTL_MS)
                pipe.set(hooks_flag(tenant_of(job_id)), 1, px=HOOK_TTL_MS)
                await pipe.execute()

        await self.client._store_call(write, "register a webhook on")

    # ------------------------------------------------------------------ callbacks
    def _on_done(self, record: _Record, job: AsyncJob, on_complete: Callback | None, on_error: Callback | None) -> None:
        task = asyncio.ensure_future(self._dispatch(record, job, on_complete, on_error))
        self.client._track(task)

    async def _dispatch(
        self, record: _Record, job: AsyncJob, on_complete: Callback | None, on_error: Callback | None
    ) -> None:
        try:
            exc = await job.exception()
            value = None if exc is not None else await job.result()
            callback, arg = (on_error, exc) if exc is not None else (on_complete, value)
            if callback is None:
                record.callback = "none" if record.callback == "pending" else record.callback
                return
            try:
                if self._runner is not None:
                    outcome = self._runner(callback, job, arg)
                    if inspect.isawaitable(outcome):
                        await outcome
                else:
                    outcome = callback(job, arg)
                    if inspect.isawaitable(outcome):
                        await outcome
                record.callback = "ran"
            except Exception as err:
                record.callback = "failed"
                record.callback_error = f"{type(err).__name__}: {err}"[:1000]
                logger.exception("pipeline callback %r for job %s raised", callback, job.id)
        except TaskqError as err:  # the job could not be read back (server gone): no callback ran
            record.callback = "failed"
            record.callback_error = f"{type(err).__name__}: {err}"[:1000]
        finally:
            record.settled.set()

    # ------------------------------------------------------------------ tracking
    @property
    def jobs(self) -> list[AsyncJob]:
        """Handles of every job this pipeline submitted, in order."""
        return [r.handle for r in self._records]

    async def wait(self, timeout: float | None = None) -> None:
        """Wait until every submitted job finished and its callback ran; ``WaitTimeout``-like ``TimeoutError``.

        Example::

            await pipe.wait(timeout=600)
        """
        records = list(self._records)
        if not records:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(r.settled.wait() for r in records))
        except TimeoutError:
            left = sum(1 for r in records if not r.settled.is_set())
            raise TimeoutError(
                f"{left} of {len(records)} pipeline jobs had not finished after {timeout:g}s; "
                "they go on running - see pipeline.status()"
            ) from None

    async def status(self) -> Any:
        """A DataFrame with one row per submitted job: status, progress, timings, error, callback, webhook.

        Example::

            frame = await pipe.status()
            frame[frame.status == "failed"][["job_id", "error"]]
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError('pipeline.status() returns a DataFrame: pip install "taskq-sdk[pandas]"') from exc
        records = list(self._records)
        ids = [r.job_id for r in records]
        states = await self.client._store_call(lambda s: s.states(ids)) if ids else []
        hooks: list[Any] = []
        with_hook = [r.job_id for r in records if r.webhook]
        if with_hook:

            async def read(store: Any) -> list[Any]:
                async with store.redis.pipeline(transaction=False) as pipe:
                    for job_id in with_hook:
                        pipe.hgetall(hook_key(job_id))
                    result: list[Any] = await pipe.execute()
                    return result

            hooks = await self.client._store_call(read)
        hook_by_id = {jid: {_s(k): _s(v) for k, v in h.items()} for jid, h in zip(with_hook, hooks, strict=True)}
        rows = []
        for record, state in zip(records, states, strict=True):
            info = state.info
            hook = hook_by_id.get(record.job_id, {})
            rows.append(
                {
                    "job_id": record.job_id,
                    "kind": record.kind,
                    "function": record.function,
                    "label": record.label,
                    "status": state.status.value,
                    "progress": info.progress.fraction,
                    "message": info.progress.message,
                    "attempts": info.attempts,
                    "submitted_at": record.submitted_at,
                    "started_at": info.started_at,
                    "finished_at": info.finished_at,
                    "duration_s": info.duration,
                    "error": info.error,
                    "callback": record.callback,
                    "callback_error": record.callback_error,
                    "webhook": record.webhook,
                    "webhook_status": hook.get("status") if record.webhook else None,
                    "webhook_code": int(hook["code"]) if hook.get("code", "").isdigit() else None,
                    "webhook_error": hook.get("error") or None,
                }
            )
        columns = [
            "job_id",
            "kind",
            "function",
            "label",
            "status",
            "progress",
            "message",
            "attempts",
            "submitted_at",
            "started_at",
            "finished_at",
            "duration_s",
            "error",
            "callback",
            "callback_error",
            "webhook",
            "webhook_status",
            "webhook_code",
            "webhook_error",
        ]
        return pd.DataFrame.from_records(rows, columns=columns)


class ContentPipeline:
    """The blocking content pipeline: :class:`AsyncContentPipeline`'s API; callbacks run in a helper thread.

    ``client`` is a :class:`~taskq_sdk.Client` (or a URL / LocalCluster to build one, closed with the
    pipeline). Callbacks get the blocking :class:`~taskq_sdk.Job` and may block.

    Example::

        with ContentPipeline(cluster, workspace="exp1") as pipe:
            pipe.submit_batch(texts, on_complete=lambda job, r: print(r["summary"]))
            pipe.wait(timeout=60)
            print(pipe.status())
    """

    def __init__(
        self,
        client: Client | Any = None,
        *,
        tenant: str | None = None,
        workspace: str | None = None,
        webhook: str | None = None,
    ) -> None:
        from .client import Client

        self._owns_client = not isinstance(client, Client)
        self.client: Client = client if isinstance(client, Client) else Client(client)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="taskq-pipeline-callbacks")
        self._async = AsyncContentPipeline(
            self.client.async_client, tenant=tenant, workspace=workspace, webhook=webhook, runner=self._run
        )

    def _run(self, callback: Callback, ajob: AsyncJob, arg: Any) -> Any:
        job = self.client._wrap(ajob)
        return asyncio.wrap_future(self._pool.submit(callback, job, arg))

    def submit(
        self,
        fn: str | Callable[..., Any],
        /,
        *args: Any,
        on_complete: Callback | None = None,
        on_error: Callback | None = None,
        webhook: str | None = None,
        label: str | None = None,
        **kwargs: Any,
    ) -> Job:
        """Submit any job with optional callbacks, webhook and label (see :meth:`AsyncContentPipeline.submit`)."""
        return self.client._wrap(
            self.client._call(
                self._async.submit,
                fn,
                *args,
                on_complete=on_complete,
                on_error=on_error,
                webhook=webhook,
                label=label,
                **kwargs,
            )
        )

    def submit_video(
        self,
        url: str,
        *,
        on_complete: Callback | None = None,
        on_error: Callback | None = None,
        webhook: str | None = None,
        label: str | None = None,
        **options: Any,
    ) -> Job:
        """Submit the video job for ``url`` (see :meth:`AsyncContentPipeline.submit_video`)."""
        return self.client._wrap(
            self.client._call(
                self._async.submit_video,
                url,
                on_complete=on_complete,
                on_error=on_error,
                webhook=webhook,
                label=label,
                **options,
            )
        )

    def submit_batch(
        self,
        content_items: Sequence[Any],
        *,
        analyzers: Sequence[str] | None = None,
        on_complete: Callback | None = None,
        on_error: Callback | None = None,
        webhook: str | None = None,
        label: str | None = None,
        **options: Any,
    ) -> Job:
        """Submit a batch analysis (see :meth:`AsyncContentPipeline.submit_batch`)."""
        return self.client._wrap(
            self.client._call(
                self._async.submit_batch,
                content_items,
                analyzers=analyzers,
                on_complete=on_complete,
                on_error=on_error,
                webhook=webhook,
                label=label,
                **options,
            )
        )

    @property
    def jobs(self) -> list[Job]:
        """Handles of every job this pipeline submitted, in order."""
        return [self.client._wrap(j) for j in self._async.jobs]

    def wait(self, timeout: float | None = None) -> None:
        """Wait until every submitted job finished and its callback ran (``TimeoutError`` after ``timeout``)."""
        self.client._call(self._async.wait, timeout)

    def status(self) -> Any:
        """A DataFrame with one row per submitted job (see :meth:`AsyncContentPipeline.status`)."""
        return self.client._call(self._async.status)

    def close(self) -> None:
        """Stop the callback thread (pending callbacks still run) and close a client the pipeline built."""
        self._pool.shutdown(wait=True)
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> ContentPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
