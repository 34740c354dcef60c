"""Connections to a Sentinel-managed primary: discovered through the sentinels, followed across failovers.

:func:`~taskq_sdk._backend.connection.make_redis` comes here for ``redis+sentinel://`` URLs and
``REDIS_SENTINELS``. Every new connection asks the sentinels where the primary is; a connection that
finds itself talking to a demoted primary (a ``READONLY`` reply) is dropped and the command retried
on the new one, as for a lost connection (redis-py's ``SentinelManagedConnection`` does both). When
the primary's address changes, the process logs it once::

    WARNING taskq_sdk: Sentinel: primary 'mymaster' moved from 127.0.0.1:7001 to 127.0.0.1:7002 (a failover)

Example::

    redis = make_sentinel_redis(settings.sentinel(), settings, connection_kwargs)
    await redis.ping()     # on whichever server the sentinels call primary now
"""

from __future__ import annotations

import logging
import threading
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from .._sentinel_url import SentinelAddress
from ..config import Settings

__all__ = ["make_sentinel_redis", "make_sync_sentinel_redis", "sentinel_tls_kwargs"]

logger = logging.getLogger("taskq_sdk")
R = TypeVar("R", bound=Redis)

_known_primary: dict[tuple[tuple[tuple[str, int], ...], str], tuple[str, int]] = {}
_known_lock = threading.Lock()


def note_primary(address: SentinelAddress, primary: tuple[Any, Any]) -> None:
    """Remember where ``address``'s primary is; log once per process when it moved.

    Example::

        note_primary(address, ("10.0.0.2", 6379))   # logs "primary 'mymaster' moved from ... to ..." on a change
    """
    host = primary[0].decode() if isinstance(primary[0], bytes) else str(primary[0])
    now = (host, int(primary[1]))
    key = (address.sentinels, address.master)
    with _known_lock:
        before = _known_primary.get(key)
        _known_primary[key] = now
    if before is None:
        logger.debug("Sentinel: primary %r is at %s:%s", address.master, *now)
    elif before != now:
        logger.warning(
            "Sentinel: primary %r moved from %s:%s to %s:%s (a failover); following it",
            address.master,
            *before,
            *now,
        )


class _FollowingPool(SentinelConnectionPool):
    """A sentinel pool that reports primary moves through :func:`note_primary`."""

    def __init__(self, service_name: str, sentinel_manager: Any, **kwargs: Any) -> None:
        self.taskq_address: SentinelAddress = kwargs.pop("taskq_address")
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]

    async def get_master_address(self) -> Any:
        primary = await super().get_master_address()  # type: ignore[no-untyped-call]
        note_primary(self.taskq_address, primary)
        return primary

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:  # the client is closing: its connections to the sentinels go too
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.connection_pool.disconnect()


def sentinel_tls_kwargs(address: SentinelAddress, settings: Settings) -> dict[str, Any]:
    """TLS options for ``rediss+sentinel://``: they apply to the sentinels and the data nodes alike."""
    if not address.tls:
        return {}
    kwargs: dict[str, Any] = {
        "ssl": True,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": settings.tls_check_hostname,
    }
    if settings.tls_ca_certs:
        kwargs["ssl_ca_certs"] = settings.tls_ca_certs
    return kwargs


def _sentinel_kwargs(address: SentinelAddress, settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": settings.connect_timeout,
        "socket_timeout": settings.socket_timeout,
        "socket_keepalive": True,
        **sentinel_tls_kwargs(address, settings),
    }
    if address.sentinel_password is not None:
        kwargs["password"] = address.sentinel_password
    if address.sentinel_username:
        kwargs["username"] = address.sentinel_username
    return kwargs


def _data_kwargs(address: SentinelAddress, settings: Settings, connection_kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs = {**connection_kwargs, **sentinel_tls_kwargs(address, settings), "db": address.db}
    if address.password is not None:
        kwargs["password"] = address.password
    if address.username:
        kwargs["username"] = address.username
    return kwargs


def make_sentinel_redis(
    address: SentinelAddress,
    settings: Settings,
    connection_kwargs: dict[str, Any],
    redis_class: type[R] = Redis,  # type: ignore[assignment]
) -> R:
    """A ``redis.asyncio.Redis`` (or ``redis_class``) on the primary the sentinels name, following failovers.

    ``connection_kwargs`` are the data-node options :func:`make_redis` uses for plain URLs (timeouts,
    retries); the sentinels get the same timeouts and TLS, and their own credentials.

    Example::

        redis = make_sentinel_redis(settings.sentinel(), settings, {"socket_timeout": 5.0})
    """
    sentinel = Sentinel(list(address.sentinels), sentinel_kwargs=_sentinel_kwargs(address, settings))  # type: ignore[no-untyped-call]
    redis: R = sentinel.master_for(
        address.master,
        redis_class=redis_class,
        connection_pool_class=_FollowingPool,
        taskq_address=address,
        **_data_kwargs(address, settings, connection_kwargs),
    )
    return redis


def make_sync_sentinel_redis(address: SentinelAddress, settings: Settings, connection_kwargs: dict[str, Any]) -> Any:
    """The blocking redis-py client on the Sentinel-named primary (for threads off the event loop).

    Example::

        client = make_sync_sentinel_redis(settings.sentinel(), settings, {"socket_timeout": 5.0})
    """
    from redis.sentinel import Sentinel as SyncSentinel

    sentinel = SyncSentinel(list(address.sentinels), sentinel_kwargs=_sentinel_kwargs(address, settings))  # type: ignore[no-untyped-call]
    return sentinel.master_for(address.master, **_data_kwargs(address, settings, connection_kwargs))  # type: ignore[no-untyped-call]
