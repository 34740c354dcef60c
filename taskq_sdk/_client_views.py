"""Notebook views of the clients: HTML reprs (server without its password, identity, live workers).

A mixin over the client core, so that this feature lives in its own module::

    client            # in a notebook: an HTML summary (no secrets)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

from ._client_core import AsyncClientCore, ClientCore

__all__ = ["AsyncViewMethods", "ViewFacade"]

#: how long a sync client's HTML view may wait for the server's answer before showing what it knows
VIEW_TIMEOUT = 2.0


async def _live_facts(client: AsyncClientCore) -> tuple[list[Any], int]:
    workers, depth = await asyncio.gather(client.workers(), client.queue_depth())
    return workers, depth


def _card(client: AsyncClientCore, kind: str, **live: Any) -> str:
    from ._html import client_html

    return client_html(
        kind=kind,
        url=client.settings.safe_url(),
        state="closed" if client.is_closed else "open",
        tenant=client.tenant,
        workspace=client.workspace,
        queue=client.queue,
        **live,
    )


class AsyncViewMethods(AsyncClientCore):
    """Notebook views of :class:`~taskq_sdk.AsyncClient`."""

    def _repr_html_(self) -> str:
        # a repr cannot await: the async client shows its configuration only
        return _card(self, "AsyncClient")


class ViewFacade(ClientCore):
    """Notebook views of :class:`~taskq_sdk.Client`."""

    def _repr_html_(self) -> str:
        aclient = self._async
        if aclient.is_closed or not self._portal.running or self._portal.in_portal_thread():
            return _card(aclient, "Client")
        future = self._portal.submit(_live_facts(aclient))
        try:
            workers, depth = future.result(timeout=VIEW_TIMEOUT)
        except concurrent.futures.TimeoutError:
            future.cancel()
            return _card(aclient, "Client", error=f"the server did not answer within {VIEW_TIMEOUT:g}s")
        except Exception as exc:
            return _card(aclient, "Client", error=f"{type(exc).__name__}: {exc}")
        return _card(aclient, "Client", workers=workers, depth=depth)
