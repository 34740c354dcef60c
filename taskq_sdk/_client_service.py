"""Service methods of the clients: health, metrics and stored results.

A mixin over the client core, so that these features live in their own module::

    client.health()
"""

from __future__ import annotations

from ._client_core import AsyncClientCore, ClientCore

__all__ = ["AsyncServiceMethods", "ServiceFacade"]


class AsyncServiceMethods(AsyncClientCore):
    """Service methods of :class:`~taskq_sdk.AsyncClient`."""


class ServiceFacade(ClientCore):
    """Blocking service methods of :class:`~taskq_sdk.Client` (one line each, into the async ones)."""
