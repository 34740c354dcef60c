"""Service methods of the clients: system health and the results database.

A mixin over the client core, so that these features live in their own module::

    client.health()                                   # HealthSnapshot: status ok / degraded / down + reasons
    client.results(workspace="exp1", since=timedelta(hours=1))   # DataFrame of finished jobs
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from ._client_core import AsyncClientCore, ClientCore
from ._names import check_name
from .errors import BrokerUnavailable, ConfigurationError
from .models import HealthSnapshot, JobCounts

__all__ = ["AsyncServiceMethods", "ServiceFacade"]


def _for_tenant(snapshot: HealthSnapshot, tenant: str | None) -> HealthSnapshot:
    """What a tenant-bound client may see: its own job counts and stuck jobs, the shared infrastructure."""
    if tenant is None:
        return snapshot
    return snapshot.model_copy(
        update={
            "jobs": snapshot.jobs_by_tenant.get(tenant, JobCounts()),
            "jobs_by_tenant": {k: v for k, v in snapshot.jobs_by_tenant.items() if k == tenant},
            "stuck": [s for s in snapshot.stuck if s.tenant == tenant],
        }
    )


class AsyncServiceMethods(AsyncClientCore):
    """Service methods of :class:`~taskq_sdk.AsyncClient`."""

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
        from .jobs.monitoring import (
            collect_health,
            evaluate,
            live_seconds,
            read_history,
            window_for,
        )

        now = datetime.now(tz=UTC)
        try:
            ping_s = await self.ping()
        except BrokerUnavailable as exc:
            return HealthSnapshot(
                status="down",
                reasons=[f"the server {self.settings.safe_url()} cannot be reached: {exc}"],
                taken_at=now,
                source="client",
                window_s=window_for(self.settings),
            )
        latest: HealthSnapshot | None = None
        if not refresh:
            found = await self._store_call(lambda s: read_history(s.redis, 1))
            latest = found[0] if found else None
        if latest is None:
            timeouts = _builtin_timeouts()
            snapshot = await self._store_call(
                lambda s: collect_health(s.redis, self.settings, source="client", timeout_for=timeouts.get)
            )
            return _for_tenant(snapshot, self._tenant)
        workers = await self.workers()
        cutoff = now.timestamp() - live_seconds(self.settings)
        live = [
            w
            for w in workers
            if w.status in ("running", "draining") and w.last_seen is not None and w.last_seen.timestamp() >= cutoff
        ]
        queues = [
            q.model_copy(update={"live_workers": sum(1 for w in live if w.queue == q.name)}) for q in latest.queues
        ]
        current = latest.model_copy(
            update={
                "ping_ms": round(ping_s * 1000, 3),
                "live_workers": len(live),
                "workers": sorted(live, key=lambda w: w.id),
                "queues": queues,
            }
        )
        status, reasons = evaluate(current, period_s=window_for(self.settings))
        return _for_tenant(current.model_copy(update={"status": status, "reasons": reasons}), self._tenant)

    async def health_history(self, limit: int = 100) -> list[HealthSnapshot]:
        """The newest ``limit`` stored monitoring snapshots, newest first.

        Example::

            [(h.taken_at, h.status) for h in await client.health_history(12)]
        """
        from .jobs.monitoring import read_history

        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigurationError(f"limit must be a positive integer, got {limit!r}")
        found = await self._store_call(lambda s: read_history(s.redis, limit))
        return [_for_tenant(h, self._tenant) for h in found]

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
    ) -> Any:
        """Finished jobs from the results database as a DataFrame, oldest first (the newest ``limit``).

        The database outlives the server's result TTL. It is the SQLite file the workers on this
        machine write (``TASKQ_RESULTS_DB``, default ``TASKQ_DATA_DIR/results.db``); several
        machines need a database server (see :mod:`taskq_sdk.results_db`). ``since``/``until``
        take a datetime or a timedelta (that long ago). A tenant-bound client reads only its
        tenant's rows; an unbound one reads all tenants unless ``tenant=`` narrows it.

        Example::

            df = await client.results(workspace="exp1", since=timedelta(hours=1))
            df.groupby("state").size()
        """
        from .results_db import read_results

        if self._tenant is not None:
            if tenant is not None and tenant != self._tenant:
                raise ConfigurationError(
                    f"this client is bound to tenant {self._tenant!r} and cannot read tenant {tenant!r}'s results"
                )
            tenants: list[str] | None = [self._tenant]
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
        )


def _builtin_timeouts() -> dict[str, float | None]:
    from .registry import collect_jobs

    return {name: spec.timeout for name, spec in collect_jobs([]).items()}


class ServiceFacade(ClientCore):
    """Blocking service methods of :class:`~taskq_sdk.Client` (one line each, into the async ones)."""

    def health(self, *, refresh: bool = False) -> HealthSnapshot:
        return self._call(self._service.health, refresh=refresh)

    def health_history(self, limit: int = 100) -> list[HealthSnapshot]:
        return self._call(self._service.health_history, limit)

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
    ) -> Any:
        return self._call(
            self._service.results,
            tenant=tenant,
            workspace=workspace,
            since=since,
            until=until,
            function=function,
            state=state,
            limit=limit,
        )

    @property
    def _service(self) -> AsyncServiceMethods:
        assert isinstance(self._async, AsyncServiceMethods)
        return self._async
