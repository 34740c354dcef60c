"""Notebook views of the clients: HTML reprs and the dashboard widget.

A mixin over the client core, so that this feature lives in its own module::

    client            # in a notebook: an HTML summary (no secrets)
"""

from __future__ import annotations

from ._client_core import AsyncClientCore, ClientCore

__all__ = ["AsyncViewMethods", "ViewFacade"]


class AsyncViewMethods(AsyncClientCore):
    """Notebook views of :class:`~taskq_sdk.AsyncClient`."""


class ViewFacade(ClientCore):
    """Notebook views of :class:`~taskq_sdk.Client`."""
