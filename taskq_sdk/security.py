"""Per-tenant server users: make tenant isolation a security boundary, not only SDK checks.

On a shared queue, isolation is namespacing plus checks in the SDK. With a queue per tenant and
a server ACL user per tenant confined to that tenant's keys and channels, a tenant's credentials
cannot read, write, cancel or list another tenant's jobs - whatever code holds them::

    # not run: creates ACL users with an admin connection (tests/test_acl.py runs this)
    import redis
    from taskq_sdk.security import create_tenant_user
    admin = redis.Redis.from_url(ADMIN_URL)
    url = create_tenant_user(admin, "acme", password="...", base_url=ADMIN_URL)
    # clients:  Client(url, tenant="acme", queue="acme")
    # workers:  REDIS_URL=<url> TASKQ_QUEUE=acme python -m taskq_sdk.worker mypkg.jobs

The user cannot list what it may not read either: commands that enumerate keys or channels
(``SCAN``, ``RANDOMKEY``, ``PUBSUB CHANNELS``, ``CLIENT TRACKING ... BCAST``, ...) are refused
(:data:`ENUMERATION_DENIED`), and ``client.health()`` of a bound client reads its own keys only.

What the user may still touch, honestly: the shared worker-liveness keys (``taskq:workers``,
``taskq:worker:*``), so a tenant could tamper with the *listing* of workers, never with jobs,
results, cancels or metrics of another tenant; readers skip whatever junk it writes there.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from ._backend import layout
from ._names import check_name

__all__ = ["ENUMERATION_DENIED", "create_tenant_user", "tenant_acl_rules"]


#: commands a tenant user is refused although its categories would allow them: they list or probe
#: keys and channels beyond its own patterns (the server checks key patterns on named keys only),
#: or reach into code every tenant shares. KEYS, SORT, MONITOR, CLIENT LIST, DEBUG and SLOWLOG are
#: already out with ``-@dangerous``; they are named too so that this list says it all. Left allowed,
#: knowingly: ``INFO`` (health reads memory and version from it; its keyspace section shows key
#: counts per database, as DBSIZE would) and ``OBJECT`` / ``MEMORY USAGE`` (checked against the
#: user's key patterns, so only its own keys).
ENUMERATION_DENIED = (
    "-scan",  # key names of every tenant, pattern or not (also from inside EVAL)
    "-keys",
    "-randomkey",
    "-dbsize",
    "-pubsub",  # CHANNELS / NUMSUB / SHARDCHANNELS / SHARDNUMSUB / NUMPAT: who listens to what, live
    "-client|tracking",  # BCAST invalidations name every key written, by anyone
    "-client|list",
    "-monitor",
    "-sort",  # BY / GET patterns read other keys
    "-sort_ro",
    "-debug",
    "-slowlog",
    "-function",  # libraries are shared: listing shows others' code, FLUSH deletes it
    "-fcall",
    "-fcall_ro",
    "-script|flush",  # every tenant's cached scripts
    "-script|kill",  # another tenant's running script
)


def tenant_acl_rules(tenant: str, *, queue: str | None = None) -> list[str]:
    """``ACL SETUSER`` rules confining a user to ``tenant``'s keys and its own ``queue`` (default: the tenant).

    Example::

        # not run: needs an admin connection (tests/test_acl.py runs this)
        admin.execute_command("ACL", "SETUSER", "acme", "on", ">s3cret", *tenant_acl_rules("acme"))
    """
    t = check_name(tenant, "tenant")
    if t == "default":
        raise ValueError(
            "the 'default' tenant cannot get its own ACL user: that name is the server's own default user "
            "(and plain arq jobs belong to it); give the confined tenant another name"
        )
    q = check_name(queue or tenant, "queue")
    if q == "default":
        raise ValueError("a tenant with its own ACL user needs its own queue, not 'default'")
    keys, channels = layout.tenant_acl_patterns(t, q)
    return [
        "resetkeys",
        "resetchannels",
        *[f"~{k}" for k in keys],
        *[f"&{c}" for c in channels],
        "-@all",
        "+@read",
        "+@write",
        "+@pubsub",
        "+@scripting",
        "+@connection",
        "+@transaction",
        "-@dangerous",
        "+info",
        *ENUMERATION_DENIED,
    ]


def create_tenant_user(admin: Any, tenant: str, *, password: str, base_url: str, queue: str | None = None) -> str:
    """Create (or reset) the ACL user for ``tenant`` with an admin connection; returns its connection URL.

    Example::

        # not run: needs an admin connection (tests/test_acl.py runs this)
        url = create_tenant_user(admin, "acme", password="s3cret", base_url="redis://:admin@host:6379/0")
    """
    rules = tenant_acl_rules(tenant, queue=queue)
    admin.execute_command("ACL", "SETUSER", tenant, "reset", "on", f">{password}", *rules)
    parts = urlsplit(base_url)
    host = parts.hostname or "localhost"
    netloc = f"{quote(tenant, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme or "redis", netloc, parts.path, parts.query, parts.fragment))
