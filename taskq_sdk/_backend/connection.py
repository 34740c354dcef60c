"""Opening connections to the Redis-compatible server, and turning connection failures into taskq errors.

Example::

    redis = make_redis(settings)                 # a redis.asyncio.Redis with timeouts and retries set
    async with broker_errors(settings):          # redis-py connection errors -> BrokerUnavailable
        await redis.ping()
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, NoPermissionError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import Settings
from ..errors import BrokerUnavailable, ConfigurationError, PermissionDenied
from ..serialization import Codec
from .autopipe import run_scripts_piped
from .cluster import is_cluster_url, make_cluster_redis, make_node_redis, make_sync_cluster_redis

R = TypeVar("R", bound=Redis)

__all__ = ["CONNECTION_ERRORS", "broker_error", "broker_errors", "is_connection_error", "make_redis"]

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means "the server could not be reached or did not answer in time"."""
    return isinstance(exc, CONNECTION_ERRORS) and not isinstance(exc, AuthenticationError)


#: error replies that say "not now" rather than "never": a script of another client is running
#: (BUSY), the server is a replica now (READONLY, in a failover), loading its data, out of memory...
TRANSIENT_REPLIES = ("BUSY", "READONLY", "LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "NOREPLICAS", "OOM")


#: why a server refuses a call for now, and what to do, by error reply (see :func:`broker_error`)
_REFUSED_FOR_NOW = {
    "BUSY": "is busy running another client's script and answers nothing else until it ends",
    "LOADING": "is still loading its data after a restart",
    "READONLY": "is a read-only replica now (demoted in a failover?)",
    "OOM": "is out of memory (maxmemory reached) and refuses writes",
    "MASTERDOWN": "lost its primary",
    "NOREPLICAS": "has too few replicas in reach for a write (min-replicas-to-write)",
}
_WHAT_TO_DO = {
    "BUSY": "Try again in a moment; an operator can stop a runaway script with SCRIPT KILL.",
    "READONLY": "Connect to the new primary, or through Sentinel (redis+sentinel://...), which follows failovers.",
    "OOM": "Free memory: keep results for less time (TASKQ_KEEP_RESULT), remove old jobs, or raise maxmemory.",
}


def is_transient_reply(exc: BaseException) -> bool:
    """Whether ``exc`` is an error reply worth retrying later (see ``TRANSIENT_REPLIES``).

    Example::

        is_transient_reply(ResponseError("BUSY Redis is busy running a script"))   # True
    """
    return reply_kind(exc) in TRANSIENT_REPLIES or is_moving_slot(exc)


def is_moving_slot(exc: BaseException) -> bool:
    """Whether a script met a key already moved to another shard (a Redis Cluster moving a queue's slot).

    The script stopped at that command, before it wrote anything, so the same call may be sent again.

    Example::

        is_moving_slot(ResponseError("Script attempted to access a non local key in a cluster node"))   # True
    """
    return "access a non local key" in str(exc)


def reply_kind(exc: BaseException) -> str | None:
    """The error code of an error reply (``BUSY``, ``READONLY``, ``WRONGTYPE``...), None for other errors.

    redis-py strips the code from some replies it maps to classes (``ReadOnlyError``, ``OutOfMemoryError``).

    Example::

        reply_kind(ResponseError("WRONGTYPE Operation against a key"))   # 'WRONGTYPE'
    """
    from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

    refused = getattr(exc, "refused_reply", None)  # a BrokerUnavailable that stands for an error reply
    if isinstance(refused, str):
        return refused

    if isinstance(exc, ReadOnlyError):
        return "READONLY"
    if isinstance(exc, OutOfMemoryError):
        return "OOM"
    if not isinstance(exc, ResponseError):
        return None
    return str(exc).split(" ", 1)[0]


def _tls_kwargs(settings: Settings, url: str) -> dict[str, Any]:
    if not url.startswith("rediss://"):
        return {}
    kwargs: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": settings.tls_check_hostname}
    if settings.tls_ca_certs:
        kwargs["ssl_ca_certs"] = settings.tls_ca_certs
    return kwargs


def make_sync_redis(settings: Settings) -> Any:
    """A blocking redis-py client with the same URL, TLS options and timeouts as :func:`make_redis`.

    Example::

        client = make_sync_redis(settings)   # for threads that must not depend on the event loop
    """
    import redis as sync_redis

    timeouts = {
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.socket_timeout,
        "socket_keepalive": True,
    }
    address = settings.sentinel()
    if address is not None:
        from .sentinel import make_sync_sentinel_redis

        return make_sync_sentinel_redis(address, settings, timeouts)
    url = settings.url()
    if is_cluster_url(url):
        return make_sync_cluster_redis(settings, dict(timeouts))
    return sync_redis.Redis.from_url(url, **timeouts, **_tls_kwargs(settings, url))


def make_redis(
    settings: Settings,
    codec: Codec | None = None,
    *,
    for_pubsub: bool = False,
    redis_class: type[R] = Redis,  # type: ignore[assignment]
) -> R:
    """A ``redis.asyncio.Redis`` for ``settings`` (connects lazily, on first command).

    ``for_pubsub`` drops the per-call socket timeout, since a subscriber waits for messages.
    ``redis_class``: the worker engine passes arq's ``ArqRedis`` (clients never import arq); with
    ``codec`` its job (de)serializers are set too.

    Example::

        redis = make_redis(Settings(redis_url="redis://localhost:6379/0"))
    """
    url = settings.url()
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": None if for_pubsub else settings.socket_timeout,
        "socket_keepalive": True,
        "retry": RedisRetry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError, ConnectionResetError],
        "health_check_interval": 0 if for_pubsub else 30,
        "decode_responses": False,
    }
    address = settings.sentinel()
    if address is not None:  # redis+sentinel:// or REDIS_SENTINELS: the primary the sentinels name
        from .sentinel import make_sentinel_redis

        primary = make_sentinel_redis(address, settings, kwargs, redis_class)
        _set_codec(primary, codec)
        return primary
    kwargs.update(_tls_kwargs(settings, url))
    if is_cluster_url(url):  # a Redis Cluster: redis-py's cluster client, or one node for pub/sub
        return make_node_redis(settings, kwargs) if for_pubsub else make_cluster_redis(settings, kwargs)  # type: ignore[no-any-return]
    try:
        redis: R = redis_class.from_url(url, **kwargs)
    except ValueError as exc:
        raise ConfigurationError(f"invalid server URL {settings.safe_url()}: {exc}") from None
    _set_codec(redis, codec)
    return redis


def _set_codec(redis: Redis, codec: Codec | None) -> None:
    if codec is not None and hasattr(redis, "job_serializer"):  # arq's ArqRedis
        setattr(redis, "job_serializer", codec.serializer)  # noqa: B010
        setattr(redis, "job_deserializer", codec.deserializer)  # noqa: B010


async def close_redis(redis: Any) -> None:
    """Close a client made by :func:`make_redis` and its connections (a cluster client has one pool per node).

    Example::

        await close_redis(redis)
    """
    if type(redis).__name__ == "RedisCluster":
        await redis.aclose()
    else:
        await redis.aclose(close_connection_pool=True)


def describe(exc: BaseException) -> str:
    """A short, password-free description of a connection failure."""
    text = str(exc) or type(exc).__name__
    return text.split("\n", 1)[0][:300]


@asynccontextmanager
async def broker_errors(settings: Settings, what: str = "reach") -> AsyncIterator[None]:
    """Turn redis-py connection/timeout/auth failures inside the block into :class:`BrokerUnavailable`.

    Example::

        async with broker_errors(settings, "submit a job to"):
            await redis.ping()
    """
    try:
        yield
    except Exception as exc:
        translated = broker_error(exc, settings, what)
        if translated is None:
            raise
        raise translated from None


def broker_error(exc: Exception, settings: Settings, what: str = "reach") -> Exception | None:
    """The SDK's error for a redis-py failure (refused credentials or user, no server), or None to re-raise it.

    What :func:`broker_errors` raises, for a hot path that catches the exception itself (a ``try``
    costs nothing until it raises; a context manager costs a generator per call).

    Example::

        try:
            await redis.ping()
        except Exception as exc:
            raise (broker_error(exc, settings) or exc) from None
    """
    if isinstance(exc, AuthenticationError):
        return BrokerUnavailable(
            f"The server at {settings.safe_url()} refused the credentials ({describe(exc)}). "
            "Check REDIS_PASSWORD / REDIS_URL."
        )
    if isinstance(exc, NoPermissionError):
        return PermissionDenied(
            f"The server at {settings.safe_url()} refused this user ({describe(exc)}). Its ACL confines it to "
            "one tenant's keys: use a client bound to that tenant and its queue (tenant=..., queue=...)."
        )
    if isinstance(exc, ResponseError):
        if "NOPERM" in str(exc) or "ACL failure" in str(exc):
            return PermissionDenied(
                f"The server at {settings.safe_url()} refused this user ({describe(exc)}). Its ACL confines it "
                "to one tenant's keys: use a client bound to that tenant and its queue (tenant=..., queue=...)."
            )
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            return BrokerUnavailable(
                f"The server at {settings.safe_url()} needs a password ({describe(exc)}). "
                "Set REDIS_PASSWORD or put it in REDIS_URL."
            )
        kind = reply_kind(exc)
        if kind in TRANSIENT_REPLIES:  # refused for now: typed, with what to do (and still seen as transient)
            why = _REFUSED_FOR_NOW.get(kind or "", "refused the call for now")
            refused = BrokerUnavailable(
                f"The server at {settings.safe_url()} {why} ({describe(exc)}); the call was refused. "
                f"{_WHAT_TO_DO.get(kind or '', 'Try again in a moment.')}"
            )
            refused.refused_reply = kind
            return refused
        return None
    if isinstance(exc, CONNECTION_ERRORS):
        return BrokerUnavailable(
            f"Could not {what} the server at {settings.safe_url()} ({type(exc).__name__}: {describe(exc)}) "
            f"within {settings.connect_timeout:g}s connect / {settings.socket_timeout:g}s call timeouts. "
            "Is it running? For a local one: LocalCluster() in Python, or `taskq local` in a shell."
        )
    return None


async def run_scripts(
    redis: Redis, calls: list[tuple[Any, list[Any]]], keys: list[str] | None = None, *, auto: Any = None
) -> list[Any]:
    """Run several registered Lua scripts in one pipelined round trip; returns their results in order.

    redis-py checks a pipeline's scripts with an extra ``SCRIPT EXISTS`` round trip before every
    pipeline; this sends ``EVALSHA`` by digest instead, and loads the scripts only when the server
    says it lacks them (after a restart), then runs again only the calls that were refused: the
    others already ran, and running them twice would apply their writes twice.

    ``keys``: the KEYS of every call (the queue key in the cluster layout: see ``keys.layout_for``).
    ``auto``: an :class:`~.autopipe.AutoPipeline` over ``redis`` (not for a cluster): the calls go out in
    one write on its connection, with none of redis-py's per-pipeline work; a lost connection falls back
    to ``redis``'s pool (its reconnect and retry policy), as redis-py's own retry would send them again.

    Example::

        finish_out, = await run_scripts(redis, [(finish_script, argv)])
    """
    keys = keys or []
    if auto is not None and not keys and auto.usable:
        try:
            if len(calls) == 1:
                return [await auto.evalsha(*calls[0])]
            return await run_scripts_piped(auto, calls)
        except RedisConnectionError as exc:
            if isinstance(exc, AuthenticationError):
                raise
    if len(calls) == 1:
        script, args = calls[0]
        return [await script(keys=keys, args=args)]
    if keys and type(redis).__name__ == "RedisCluster":  # a cluster client: its pipelines refuse scripts
        return await _run_in_turn(calls, keys)  # the Script object handles NOSCRIPT itself
    async with redis.pipeline(transaction=False) as pipe:
        for script, args in calls:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
    refused = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
    if refused:
        for script in {calls[i][0].sha: calls[i][0] for i in refused}.values():
            await redis.script_load(script.script)
        async with redis.pipeline(transaction=False) as pipe:
            for i in refused:
                pipe.evalsha(calls[i][0].sha, len(keys), *keys, *calls[i][1])
            for i, r in zip(refused, await pipe.execute(raise_on_error=False), strict=True):
                results[i] = r
    for r in results:
        if isinstance(r, Exception):
            raise r
    return results


async def _run_in_turn(calls: list[tuple[Any, list[Any]]], keys: list[str]) -> list[Any]:
    """Run script calls one after the other (a round trip each), every one of them even if one fails."""
    results: list[Any] = []
    for script, args in calls:
        try:
            results.append(await script(keys=keys, args=args))
        except Exception as exc:  # raised below, once the later calls ran too (as a pipeline would)
            results.append(exc)
    for r in results:
        if isinstance(r, Exception):
            raise r
    return results
