"""Batch methods of the clients (``map``, ``batch``): fan many jobs out and gather them.

A mixin over the client core, so that this feature lives in its own module::

    batch = client.map("score", texts, chunk_size=500)
"""

from __future__ import annotations

from ._client_core import AsyncClientCore, ClientCore

__all__ = ["AsyncBatchMethods", "BatchFacade"]


class AsyncBatchMethods(AsyncClientCore):
    """Batch methods of :class:`~taskq_sdk.AsyncClient`."""


class BatchFacade(ClientCore):
    """Blocking batch methods of :class:`~taskq_sdk.Client` (one line each, into the async ones)."""
