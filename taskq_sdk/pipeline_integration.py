"""Connect the queue with a content pipeline: submit videos and batches with callbacks, webhooks and tracking.

``ContentPipeline`` (blocking; :class:`AsyncContentPipeline` for ``async`` code) submits the
built-in jobs (or any job) and remembers everything it submitted:

* ``on_complete(job, result)`` / ``on_error(job, exception)`` run **in the submitting process**
  once the job finishes - in a helper thread for ``ContentPipeline`` (so they may block), on the
  client's event loop for ``AsyncContentPipeline`` (plain functions or coroutines). They work in a
  notebook too: the kernel keeps running while jobs finish.
* ``webhook="https://..."`` makes the **worker** POST a JSON summary of the finished job to that
  URL (``X-Taskq-Signature: sha256=<HMAC of the body>`` when ``TASKQ_WEBHOOK_SECRET`` is set on
  the worker; see :mod:`taskq_sdk.webhooks`). The same address rules as the video download apply,
  checked on the worker after DNS: only public addresses in service mode; loopback and private ones only with
  ``TASKQ_ALLOW_PRIVATE_URLS=true`` (local mode). Redirects are not followed. Delivery is retried
  three times on connection errors and 5xx; the outcome shows in ``status()``. A job's webhook is
  set by the submit that creates it: a submit with the ``_job_id`` of an existing job returns that
  job's handle (``created`` False), leaves its webhook as it was and warns (:class:`WebhookNotChanged`)
  if it asked for another one.
* ``status()`` is a DataFrame of all submitted jobs: status, progress, timings, errors, callback
  and webhook outcomes.

Example::

    from taskq_sdk.pipeline_integration import ContentPipeline

    with ContentPipeline(client, workspace="exp1") as pipe:
        pipe.submit_video("https://example.com/clip.mp4", on_complete=lambda job, r: print(job.id, r["scene_changes"]))
        pipe.submit_batch(["I love it", "I hate it"], analyzers=["sentiment"], webhook="https://hooks.example.com/t")
        pipe.wait(timeout=300)
        pipe.status()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ._names import check_job_id, new_job_id, qualify
from ._portal import forward_docs
from .client import AsyncClient, Client
from .errors import ConfigurationError, TaskqError
from .handles import AsyncJob, Job
from .webhooks import validate_webhook_url

__all__ = ["AsyncContentPipeline", "ContentPipeline", "WebhookNotChanged", "validate_webhook_url"]

logger = logging.getLogger("taskq_sdk.pipeline")

Callback = Callable[..., Any]


class WebhookNotChanged(UserWarning):
    """A pipeline submit named a job that exists already: its webhook was left as it was.

    The submit returns the existing job's handle (``job.created is False``), as ``client.submit``
    does; a job's webhook is set by the submit that creates it, never re-pointed by a later one.

    Example::

        with ContentPipeline(client) as pipe, warnings.catch_warnings():
            warnings.simplefilter("error", WebhookNotChanged)   # make it an error instead
            pipe.submit("report", _job_id="r1", webhook="https://hooks.example.com/old")
            pipe.submit("report", _job_id="r1", webhook="https://hooks.example.com/new")   # WebhookNotChanged
    """


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
        job = await pipe.submit_video("https://example.com/clip.mp4", on_complete=lambda job, r: print(r["duration_s"]))
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
        self._core = client.core
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

            pipe = AsyncContentPipeline(aclient)
            job = await pipe.submit("keywords", "Queues hold jobs.", top=3, on_complete=lambda j, r: print(r["terms"]))
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

            pipe = AsyncContentPipeline(aclient)
            await pipe.submit_video("https://example.com/clip.mp4", thumbnails=4, on_error=lambda job, exc: print(exc))
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

            pipe = AsyncContentPipeline(aclient)
            await pipe.submit_batch(["great", "awful"], analyzers=["sentiment"], on_complete=lambda job, r: print(r))
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
        registered = False
        if hook is not None:
            local = kwargs.get("_job_id")
            local = check_job_id(local) if local is not None else new_job_id()
            kwargs["_job_id"] = local
            tenant, _ = self._core.identity(kwargs.get("tenant"), kwargs.get("workspace"))
            full_id = qualify(tenant, local)
            # before the submit, so that a fast worker finds it; never onto a job that exists already
            registered, standing = await self._register_hook(full_id, hook)
        job = await self.client.submit(fn, *args, **kwargs)
        if hook is not None and job.created is False:
            if registered:  # the id was taken between the registration and the submit
                asked = hook
                await self._core.call(lambda s: s.hooks.unregister(job.id, asked), "register a webhook on")
                standing = (await self._core.call(lambda s: s.hooks.urls([job.id])))[0]
            if standing != hook:
                warnings.warn(
                    f"job {job.id} already exists, so its webhook stays "
                    f"{'unset' if standing is None else 'as it was'}; the handle returned is the existing job's "
                    "(job.created is False). Submit under a new _job_id to have this webhook called.",
                    WebhookNotChanged,
                    stacklevel=3,  # the caller of submit()
                )
            hook = standing
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

    async def _register_hook(self, job_id: str, url: str) -> tuple[bool, str | None]:
        return await self._core.call(lambda s: s.hooks.register_if_new(job_id, url), "register a webhook on")

    # ------------------------------------------------------------------ callbacks
    def _on_done(self, record: _Record, job: AsyncJob, on_complete: Callback | None, on_error: Callback | None) -> None:
        task = asyncio.ensure_future(self._dispatch(record, job, on_complete, on_error))
        self._core.track(task)

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

            pipe = AsyncContentPipeline(aclient)
            await pipe.submit("add", 1, 2)
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

            pipe = AsyncContentPipeline(aclient)
            await pipe.submit("add", 1, 2)
            frame = await pipe.status()
            frame[frame.status == "failed"][["job_id", "error"]]
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError('pipeline.status() returns a DataFrame: pip install "taskq-sdk[pandas]"') from exc
        records = list(self._records)
        ids = [r.job_id for r in records]
        states = await self._core.call(lambda s: s.states(ids)) if ids else []
        with_hook = [r.job_id for r in records if r.webhook]
        hooks = await self._core.call(lambda s: s.hooks.outcomes(with_hook)) if with_hook else []
        hook_by_id = dict(zip(with_hook, hooks, strict=True))
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


@forward_docs(AsyncContentPipeline)
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
        self._owns_client = not isinstance(client, Client)
        self.client: Client = client if isinstance(client, Client) else Client(client)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="taskq-pipeline-callbacks")
        self._async = AsyncContentPipeline(
            self.client.async_client, tenant=tenant, workspace=workspace, webhook=webhook, runner=self._run
        )

    def _run(self, callback: Callback, ajob: AsyncJob, arg: Any) -> Any:
        job = Job(ajob, self.client)
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
        return Job(
            self.client.portal.call(
                self._async.submit,
                fn,
                *args,
                on_complete=on_complete,
                on_error=on_error,
                webhook=webhook,
                label=label,
                **kwargs,
            ),
            self.client,
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
        return Job(
            self.client.portal.call(
                self._async.submit_video,
                url,
                on_complete=on_complete,
                on_error=on_error,
                webhook=webhook,
                label=label,
                **options,
            ),
            self.client,
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
        return Job(
            self.client.portal.call(
                self._async.submit_batch,
                content_items,
                analyzers=analyzers,
                on_complete=on_complete,
                on_error=on_error,
                webhook=webhook,
                label=label,
                **options,
            ),
            self.client,
        )

    @property
    def jobs(self) -> list[Job]:
        return [Job(j, self.client) for j in self._async.jobs]

    def wait(self, timeout: float | None = None) -> None:
        self.client.portal.call(self._async.wait, timeout)

    def status(self) -> Any:
        return self.client.portal.call(self._async.status)

    def close(self) -> None:
        """Stop the callback thread (pending callbacks still run) and close a client the pipeline built."""
        self._pool.shutdown(wait=True)
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> ContentPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
