"""What a client does with a function passed to ``submit``/``map``/``apply``, and which client is the default.

On a client of a :class:`~taskq_sdk.LocalCluster` any callable runs: the cluster ships it to its
own workers (see :meth:`LocalCluster.serve_callable`) and the job goes by the name it got. On any
other server code never travels: a function runs only if a worker serves its name, and one that
cannot have a name a worker imports (a lambda) is refused with the two ways to make it run::

    opened(client, source)                 # AsyncClient/Client.__init__: remember it, bind it to a cluster
    fn = await job_target(client.core, fn)   # a name a worker serves, or the (decorated) function itself
    default_client()                       # the most recently opened client, else the newest cluster's
"""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, UnknownJob

if TYPE_CHECKING:
    from ._core import ClientCore
    from .client import AsyncClient, Client
    from .registry import JobSpec

__all__ = [
    "auto_name",
    "cluster_created",
    "default_async_client",
    "default_client",
    "display_name",
    "job_target",
    "opened",
    "registered_spec",
    "short_name",
    "with_default_priority",
]

#: client core -> the LocalCluster it was built from (cluster clients may ship code; others never do)
_CLUSTERS: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
#: open clients, oldest first: the most recent open one is the default for ``df.taskq.apply``
_RECENT: list[weakref.ref[Any]] = []


def opened(client: Any, source: Any = None) -> None:
    """Remember a new client (the default for ``df.taskq``) and, if ``source`` is a cluster, bind its core to it.

    Example::

        opened(self, redis_url)   # in AsyncClient.__init__ and Client.__init__
    """
    if callable(getattr(source, "serve_callable", None)):
        core = getattr(client, "core", None)
        if core is not None:
            _CLUSTERS[core] = source
    _RECENT[:] = [r for r in _RECENT if r() is not None]
    inner = getattr(client, "async_client", None)
    if inner is not None:  # a Client: its AsyncClient lives on the Client's own loop, not the caller's
        _RECENT[:] = [r for r in _RECENT if r() is not inner]
    _RECENT.append(weakref.ref(client))


def with_default_priority(fn: Any, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``_priority`` from ``@job(priority=...)`` when ``fn`` is such a function and none is given.

    Example::

        with_default_priority(urgent_fn, {})     # {'_priority': 10} for @job(priority=10)
    """
    spec = getattr(fn, "__taskq_job__", None)
    priority = getattr(spec, "priority", 0)
    if priority and options.get("_priority") is None:
        return {**options, "_priority": priority}
    return options


async def job_target(core: ClientCore, fn: Any) -> Any:
    """``fn`` as ``submit`` should name it: shipped on a cluster's client, checked against a shared server.

    Example::

        fn = await job_target(core, lambda x: x * 2)   # 'lambda@5e0c1a9b2f' on a LocalCluster client
    """
    if isinstance(fn, str) or not callable(fn):
        return fn
    cluster = _CLUSTERS.get(core)
    if cluster is not None:
        # served before (the same function object): no thread hop; else shipped once, off the loop
        served = getattr(cluster, "served_name", None)
        known = served(fn) if callable(served) else None
        return known or await asyncio.to_thread(cluster.serve_callable, fn)
    if getattr(fn, "__taskq_job__", None) is not None:
        return fn
    name = getattr(inspect.unwrap(fn), "__name__", None)
    if not name or name == "<lambda>":
        shown = "a lambda" if name == "<lambda>" else f"{type(fn).__name__} object {fn!r}"
        raise UnknownJob(
            "<lambda>" if name else type(fn).__name__,
            list(await core.known_names(core.queue)),
            core.queue,
            reason=(
                f"{shown} has no name a worker on a shared server could import; code is never sent to a "
                "shared server's workers."
            ),
        )
    return fn


def registered_spec(core: ClientCore, name: str) -> JobSpec | None:
    """The function a client's LocalCluster registered or shipped under ``name`` (None: none, or no cluster).

    Example::

        registered_spec(core, "score")   # JobSpec(name='score', ...) after @cluster.job def score
    """
    cluster = _CLUSTERS.get(core)
    functions = getattr(cluster, "_functions", None)
    spec = functions.get(name) if isinstance(functions, dict) else None
    if spec is None:  # no cluster, or not its function: the usual submit ends here, with no import
        return None
    from .registry import JobSpec as Spec

    return spec if isinstance(spec, Spec) else None


def _newest(blocking: bool) -> Any:
    for ref in reversed(_RECENT):
        client = ref()
        # a Client has a portal (its loop thread); an AsyncClient runs on the caller's loop
        if client is not None and hasattr(client, "portal") == blocking and not getattr(client, "is_closed", True):
            return client
    return None


#: LocalClusters, oldest first (LocalCluster.__init__ adds itself): the newest running one serves df.taskq
_CLUSTER_LIST: list[weakref.ref[Any]] = []


def cluster_created(cluster: Any) -> None:
    """Remember a new LocalCluster, so ``df.taskq.apply`` can default to its client.

    Example::

        cluster_created(self)   # in LocalCluster.__init__
    """
    _CLUSTER_LIST[:] = [r for r in _CLUSTER_LIST if r() is not None]
    _CLUSTER_LIST.append(weakref.ref(cluster))


def _newest_cluster() -> Any:
    for ref in reversed(_CLUSTER_LIST):
        cluster = ref()
        if cluster is not None and not cluster._closed and cluster._started:
            return cluster
    return None


_NO_CLIENT = (
    "no taskq client is open to run this on. Start one first: cluster = taskq_sdk.LocalCluster(); "
    "client = cluster.client() (or client = taskq_sdk.Client(url) for a shared server), or pass client=."
)


def default_client(what: str = "df.taskq.apply()") -> Client:
    """The most recently opened :class:`~taskq_sdk.Client`, else one of the newest running LocalCluster.

    Example::

        client = default_client()   # ConfigurationError saying how to get one if there is none
    """
    client = _newest(blocking=True)
    if client is None:
        cluster = _newest_cluster()
        if cluster is not None:
            client = cluster.client()
    if client is None:
        raise ConfigurationError(f"{what}: {_NO_CLIENT}")
    result: Client = client
    return result


def default_async_client(what: str = "apply_async()") -> AsyncClient:
    """The most recently opened :class:`~taskq_sdk.AsyncClient` (not one inside a Client), else a cluster's.

    Example::

        aclient = default_async_client()
    """
    client = _newest(blocking=False)
    if client is None:
        cluster = _newest_cluster()
        if cluster is not None:
            client = cluster.async_client()
    if client is None:
        raise ConfigurationError(f"{what}: {_NO_CLIENT.replace('cluster.client()', 'cluster.async_client()')}")
    result: AsyncClient = client
    return result


def display_name(fn: str | Callable[..., Any]) -> str:
    """The name result columns get by default: the job name, or a plain function's own ``__name__``."""
    from .registry import spec_for

    if isinstance(fn, str):
        return fn
    if getattr(fn, "__taskq_job__", None) is not None:
        return spec_for(fn).name
    return short_name(fn)


def short_name(fn: Callable[..., Any]) -> str:
    """A readable name of any callable: its ``__name__`` (``lambda`` for lambdas), else its type's name.

    Example::

        short_name(lambda x: x)   # 'lambda'
    """
    target = inspect.unwrap(fn)
    name = getattr(target, "__name__", None) or type(target).__name__
    return str(name).replace("<lambda>", "lambda").replace("<", "").replace(">", "")


def auto_name(fn: Callable[..., Any], digest: str) -> str:
    """The job name a cluster gives a callable it ships by itself: qualified name, ``@``, code digest.

    Example::

        auto_name(score, fingerprint(score))   # 'score@3f2a9c1b0d'
    """
    target = inspect.unwrap(fn)
    qual = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(target).__qualname__
    qual = str(qual).replace("<lambda>", "lambda").replace("<locals>", "locals").replace("<", "").replace(">", "")
    return f"{qual}@{digest[:10]}"
