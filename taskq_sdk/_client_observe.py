"""Observability methods of the clients: job metrics, and the dashboard.

A mixin over the client core, so that this feature lives in its own module::

    client.metrics(window=300).to_frame()
    client.dashboard()            # in a notebook: live queue depth, workers, throughput, recent jobs
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ._backend.metrics_io import metric_tenants, queue_names, read_metric_hashes
from ._client_core import AsyncClientCore, ClientCore
from ._names import check_name
from .errors import ConfigurationError
from .metrics import Metrics, aggregate

if TYPE_CHECKING:
    from .dashboard import Dashboard

__all__ = ["AsyncObserveMethods", "ObserveFacade"]


class AsyncObserveMethods(AsyncClientCore):
    """Observability methods of :class:`~taskq_sdk.AsyncClient`."""

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
        if window is not None and not 0 < window <= 7200:
            raise ConfigurationError("window is in seconds, between 1 and 7200 (two hours), or None for all time")
        ws = check_name(workspace, "workspace") if workspace is not None else None
        if self.tenant is not None:
            if tenant is not None and tenant != self.tenant:
                raise ConfigurationError(f"this client is bound to tenant {self.tenant!r}")
            tenants = [self.tenant]
        elif tenant is not None:
            tenants = [check_name(tenant, "tenant")]
        else:
            tenants = await self._store_call(lambda s: metric_tenants(s.redis))
        now = time.time()
        minutes = None
        if window is not None:
            last = int(now // 60)
            first = int((now - window) // 60)
            minutes = range(first, last + 1)
        hashes = await self._store_call(lambda s: read_metric_hashes(s.redis, tenants, minutes))
        rows, totals = aggregate(hashes, workspace=ws, function=function)
        # a bound client reports its own queue (an ACL-confined user may not read the others)
        queues = [self.queue] if self.tenant is not None else await self._store_call(lambda s: queue_names(s.redis))
        depth = {q: await self.queue_depth(q) for q in queues}
        return Metrics(
            window=window,
            since=None if window is None else datetime.fromtimestamp(now - window, tz=UTC),
            until=datetime.fromtimestamp(now, tz=UTC),
            rows=rows,
            totals=totals,
            queue_depth=depth,
        )

    def dashboard(self, *, workspace: str | None = None, interval: float = 2.0, minutes: int = 15) -> Dashboard:
        """A live notebook dashboard refreshing on this client's loop (call it inside a running loop).

        Example::

            dash = client.dashboard(workspace="exp1")
            dash           # shows the widget; dash.close() stops updating
        """
        from .dashboard import Dashboard

        return Dashboard(self, workspace=workspace, interval=interval, minutes=minutes).start()


class ObserveFacade(ClientCore):
    """Blocking observability methods of :class:`~taskq_sdk.Client`."""

    def metrics(
        self,
        *,
        window: float | None = None,
        workspace: str | None = None,
        function: str | None = None,
        tenant: str | None = None,
    ) -> Metrics:
        return self._call(self._observe.metrics, window=window, workspace=workspace, function=function, tenant=tenant)

    def dashboard(self, *, workspace: str | None = None, interval: float = 2.0, minutes: int = 15) -> Dashboard:
        from .dashboard import Dashboard

        return Dashboard(
            self._observe, workspace=workspace, interval=interval, minutes=minutes, run=self._portal.submit
        ).start()

    @property
    def _observe(self) -> AsyncObserveMethods:
        assert isinstance(self._async, AsyncObserveMethods)
        return self._async
