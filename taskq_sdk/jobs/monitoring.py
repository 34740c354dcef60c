"""The built-in monitoring job: a health snapshot of server, queues, workers and jobs, kept as a short history.

Every taskq worker runs a scheduler (:mod:`taskq_sdk.scheduler`) that submits
``scheduled_monitoring_async`` on ``TASKQ_MONITORING_CRON`` (default every five minutes), once per
slot however many workers run. Each run measures and judges a snapshot (:mod:`taskq_sdk.health`:
what it holds and the status rules), stores it at the head of a capped history
(``TASKQ_MONITORING_HISTORY`` entries, kept 7 days) and returns it. ``client.health()`` reads the
latest one (re-checking liveness now)::

    h = client.health()
    h.status, h.reasons        # 'degraded', ['failure rate 40% over the last 300 s (12 of 30 jobs)']
"""

from __future__ import annotations

from typing import Any

from .._backend.layout import HISTORY_KEY
from .._backend.store import Store
from ..config import Settings
from ..health import collect_health, store_snapshot
from ..registry import job
from ..serialization import codec_for

__all__ = ["HISTORY_KEY", "scheduled_monitoring_async"]


@job(name="scheduled_monitoring_async", timeout=120, retries=1)
async def scheduled_monitoring_async(ctx: dict[str, Any]) -> dict[str, Any]:
    """Collect a health snapshot, store it in the capped history and return it as plain data.

    Submitted by the workers' scheduler on ``TASKQ_MONITORING_CRON``; it can also be submitted by hand.

    Example::

        from taskq_sdk.models import HealthSnapshot
        snap = HealthSnapshot.model_validate(client.submit("scheduled_monitoring_async").result())
        snap.status, snap.reasons
    """
    raw_settings = ctx.get("settings")
    settings = raw_settings if isinstance(raw_settings, Settings) else Settings()
    store = ctx.get("taskq_store")
    if store is None:  # a worker that did not provide one: its arq connection then
        store = Store(ctx["redis"], codec_for(settings), settings)
    resolve = ctx.get("taskq_resolve")

    def timeout_for(function: str) -> float | None:
        spec = resolve(function) if callable(resolve) else None
        return None if spec is None else spec.timeout

    snapshot = await collect_health(
        store,
        settings,
        source="scheduled",
        job_id=str(ctx.get("job_id") or "") or None,
        timeout_for=timeout_for,
    )
    await store_snapshot(store, snapshot, settings.monitoring_history)
    return snapshot.model_dump(mode="json")
