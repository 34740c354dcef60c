"""Webhooks, worker side: POST each finished job that has a webhook to its URL, off the hot path.

A client registers the URL with the job (``ContentPipeline.submit(..., webhook=...)``, see
:mod:`taskq_sdk.pipeline_integration`); the worker that finishes the job delivers a JSON summary
(``X-Taskq-Signature: sha256=<HMAC of the body>`` when ``TASKQ_WEBHOOK_SECRET`` is set) through
the same address guard as video downloads, and records the outcome for ``pipeline.status()``::

    # not run: worker internals, how python -m taskq_sdk.worker assembles its engine
    Engine(specs, settings=s, extensions=[WebhookSender(s)])   # every worker runs one
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ._aio import stop_tasks
from .errors import BlockedDestination, ConfigurationError, InvalidURL

if TYPE_CHECKING:
    from .config import Settings
    from .extensions import FinishedJob

__all__ = ["WebhookSender", "post", "validate_webhook_url", "webhook_body"]

logger = logging.getLogger("taskq_sdk.pipeline")

WEBHOOK_ATTEMPTS = 3
MAX_WEBHOOK_RESULT_BYTES = 256 * 1024
MAX_CONCURRENT_WEBHOOKS = 8


def validate_webhook_url(url: str) -> str:
    """Check a webhook URL's syntax and scheme (``http``/``https``, no credentials); return it normalised.

    Which addresses may be contacted is decided on the worker, after DNS.

    Example::

        validate_webhook_url("https://hooks.example.com/done")   # 'https://hooks.example.com/done'
        try:
            validate_webhook_url("file:///etc/passwd")
        except UnsupportedScheme as exc:
            print(exc)                                           # file:// URLs are not accepted here ...
    """
    from .jobs._fetch import validate_video_url

    try:
        return validate_video_url(url, allow_private=False)
    except InvalidURL as exc:
        text = str(exc).replace("the video URL", "the webhook URL").replace("the video job accepts", "webhooks accept")
        raise type(exc)(text) from None


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

        # not run: worker internals, how python -m taskq_sdk.worker assembles its engine
        Engine(specs, settings=s, extensions=[WebhookSender(s)])
    """

    def __init__(self, settings: Settings, *, network_backend: Any = None) -> None:
        self.settings = settings
        self.network_backend = network_backend
        self._pending: deque[FinishedJob] = deque()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._hooks: Any = None  # the engine's store.hooks
        self._sem = asyncio.Semaphore(MAX_CONCURRENT_WEBHOOKS)
        self.delivered = 0
        self.failed = 0

    def _on_finish(self, job: FinishedJob) -> None:
        if len(self._pending) < 100_000:
            self._pending.append(job)

    async def start(self, engine: Any) -> None:
        self._hooks = engine.store.hooks
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
        with_hooks = await self._hooks.tenants_with_hooks(tenants)
        candidates = [job for job in batch if job.tenant in with_hooks]
        urls = await self._hooks.urls([job.job_id for job in candidates]) if candidates else []
        for _ in batch:
            self._pending.popleft()
        for job, url in zip(candidates, urls, strict=True):
            if url:
                task = asyncio.create_task(self._deliver(job, url), name=f"taskq-webhook-{job.job_id}")
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
            await self._hooks.record(job.job_id, outcome)


async def post(
    url: str, body: bytes, headers: list[tuple[bytes, bytes]], settings: Settings, *, network_backend: Any = None
) -> int:
    """POST ``body`` to ``url`` through the SSRF guard (no redirects, no proxies); return the HTTP status.

    Example::

        # not run: posts to a real HTTP endpoint
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
