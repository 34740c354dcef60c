"""The clients: :class:`AsyncClient` holds all the logic; :class:`Client` is its blocking facade.

Both have the same methods with the same parameters. ``Client`` runs the ``AsyncClient`` on an
event loop in a daemon thread, so it works in scripts, from several threads and inside a running
loop (a Jupyter cell) without patching anything::

    from taskq_sdk import Client
    with Client("redis://localhost:6379/0", tenant="acme", workspace="exp1") as client:
        job = client.submit("add", 1, 2)
        job.result(timeout=30)            # 3

    async with AsyncClient() as client:   # REDIS_* / TASKQ_* from the environment
        job = await client.submit("add", 1, 2)
        await job                          # 3

Each feature is a mixin in its own module: the core (:mod:`taskq_sdk._client_core`), batches,
service views (health, results), observability (metrics, dashboard) and notebook views.
"""

from __future__ import annotations

from ._client_batches import AsyncBatchMethods, BatchFacade
from ._client_core import ClientSource
from ._client_observe import AsyncObserveMethods, ObserveFacade
from ._client_service import AsyncServiceMethods, ServiceFacade
from ._client_views import AsyncViewMethods, ViewFacade

__all__ = ["AsyncClient", "Client", "ClientSource"]


class AsyncClient(AsyncBatchMethods, AsyncServiceMethods, AsyncObserveMethods, AsyncViewMethods):
    """Submit jobs and follow them from ``async`` code; the implementation behind :class:`Client`.

    ``AsyncClient()`` connects as the environment says (``REDIS_URL`` or ``REDIS_HOST``/``PORT``/
    ``PASSWORD``/``DB``, else ``localhost:6379``); ``AsyncClient(url)`` or ``AsyncClient(cluster)``
    explicitly. ``tenant=`` binds the client: it submits, lists and sees only that tenant's jobs.

    Example::

        async with AsyncClient(cluster, tenant="acme") as client:
            job = await client.submit("add", 1, 2, _timeout=30)
            print(await job.result())
    """


class Client(BatchFacade, ServiceFacade, ObserveFacade, ViewFacade):
    """The blocking client: every :class:`AsyncClient` method, each call waiting for its answer.

    Works in scripts, from several threads and inside Jupyter's running loop. Ctrl-C (the stop
    button) interrupts a wait and leaves the client usable and the job running.

    Example::

        client = Client()                          # REDIS_* / TASKQ_* from the environment
        job = client.submit("add", 1, 2)
        print(job.result(timeout=30))
        client.close()
    """

    _async_cls = AsyncClient

    @property
    def async_client(self) -> AsyncClient:
        """The :class:`AsyncClient` doing the work (lives on this client's event-loop thread)."""
        assert isinstance(self._async, AsyncClient)
        return self._async
