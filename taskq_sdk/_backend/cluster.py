"""Connections to a Redis Cluster: ``redis+cluster://[user:password@]host:port[,host:port...][/0]``.

Commands go through redis-py's own cluster clients (``redis.asyncio.cluster.RedisCluster`` and,
for the worker's claim-renewal thread, ``redis.cluster.RedisCluster``): they are maintained with
redis-py itself, map slots to nodes, follow ``MOVED`` and ``ASK`` redirects, retry ``TRYAGAIN`` and
re-read the slot map when a primary fails over. Only the seed nodes are needed in the URL; the
cluster tells the client the rest::

    redis = make_cluster_redis(settings, kwargs)    # for commands and scripts
    sub = make_node_redis(settings, kwargs)         # for pub/sub: one node (see below)

Pub/sub: the async cluster client of redis-py has none. taskq's scripts ``PUBLISH`` with the
classic command, which a cluster forwards to every node, so a plain connection to any one node
hears every channel; a subscriber that loses its node reconnects to the next seed in the URL.
(Sharded pub/sub would keep each message on its queue's shard, but needs a subscription per
shard that follows slot moves; classic pub/sub costs cluster-bus traffic per message instead,
which is fine for the tens of nodes this layout targets.)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from ..config import Settings
from ..errors import ConfigurationError

__all__ = ["ClusterURL", "is_cluster_url", "make_cluster_redis", "make_node_redis", "make_sync_cluster_redis"]

SCHEME = "redis+cluster://"


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://...``).

    Example::

        is_cluster_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")   # True
    """
    return url.startswith(SCHEME)


@dataclass(frozen=True)
class ClusterURL:
    """The parts of a ``redis+cluster://`` URL: seed nodes and credentials.

    Example::

        ClusterURL.parse("redis+cluster://:pw@a:7000,b:7001/0").nodes   # (('a', 7000), ('b', 7001))
    """

    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> ClusterURL:
        rest = url[len(SCHEME) :]
        rest, _, _query = rest.partition("?")
        netloc, _, path = rest.partition("/")
        if path not in ("", "0"):
            raise ConfigurationError(
                f"a Redis Cluster has only database 0, not {path!r}: drop the '/{path}' from the redis+cluster:// URL"
            )
        userinfo, at, hosts = netloc.rpartition("@")
        if not at:
            userinfo, hosts = "", netloc
        user, colon, password = userinfo.partition(":")
        nodes: list[tuple[str, int]] = []
        for part in hosts.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigurationError(
                    f"cannot read the cluster node {part.strip()!r}: write redis+cluster://[:password@]host:port"
                    "[,host:port...] (every seed node with its port)"
                )
            nodes.append((host.strip("[]"), int(port)))
        return cls(
            nodes=tuple(nodes),
            username=unquote(user) or None,
            password=unquote(password) if colon else None,
        )


def _cluster_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    for unsupported in ("retry_on_error", "health_check_interval"):
        out.pop(unsupported, None)
    return out


def make_cluster_redis(settings: Settings, kwargs: dict[str, Any]) -> Any:
    """A ``redis.asyncio.cluster.RedisCluster`` for the seed nodes of ``settings``' cluster URL.

    ``kwargs``: the timeouts and options :func:`.connection.make_redis` uses for one server.

    Example::

        redis = make_cluster_redis(settings, {"socket_timeout": 5.0})
    """
    from redis.asyncio.cluster import ClusterNode, RedisCluster

    parts = ClusterURL.parse(settings.url())
    opts = _cluster_kwargs(kwargs)
    opts.pop("retry", None)  # the cluster client retries per node itself (connection_error_retry_attempts)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parts.nodes],
        username=parts.username,
        password=parts.password,
        require_full_coverage=False,
        **opts,
    )


def make_sync_cluster_redis(settings: Settings, kwargs: dict[str, Any]) -> Any:
    """A blocking ``redis.cluster.RedisCluster`` (for the worker's claim-renewal thread).

    Example::

        client = make_sync_cluster_redis(settings, {"socket_timeout": 5.0})
    """
    from redis.cluster import ClusterNode, RedisCluster

    parts = ClusterURL.parse(settings.url())
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in parts.nodes],  # type: ignore[no-untyped-call]
        username=parts.username,
        password=parts.password,
        require_full_coverage=False,
        **_cluster_kwargs(kwargs),
    )


_next_seed = itertools.count()


def make_node_redis(settings: Settings, kwargs: dict[str, Any]) -> Any:
    """A plain ``redis.asyncio.Redis`` to one seed node, the next one at each call (for pub/sub).

    Example::

        sub = make_node_redis(settings, {"socket_timeout": None})
    """
    from redis.asyncio import Redis

    parts = ClusterURL.parse(settings.url())
    host, port = parts.nodes[next(_next_seed) % len(parts.nodes)]
    return Redis(host=host, port=port, username=parts.username, password=parts.password, **kwargs)
