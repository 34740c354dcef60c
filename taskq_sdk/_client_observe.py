"""Observability methods of the clients: job metrics, and the dashboard.

A mixin over the client core, so that this feature lives in its own module::

    client.metrics(window=300).to_frame()
"""

from __future__ import annotations

from ._client_core import AsyncClientCore, ClientCore

__all__ = ["AsyncObserveMethods", "ObserveFacade"]


class AsyncObserveMethods(AsyncClientCore):
    """Observability methods of :class:`~taskq_sdk.AsyncClient`."""


class ObserveFacade(ClientCore):
    """Blocking observability methods of :class:`~taskq_sdk.Client`."""
