"""Parsing ``redis+sentinel://`` URLs into the sentinels, the primary's name, the database and the credentials.

One URL names a Sentinel-managed primary; the password in it is the data nodes' password, the
sentinels' own (if they have one) rides in the query (``?sentinel_password=``), since deployments
often give them a different one. ``rediss+sentinel://`` speaks TLS to sentinels and data nodes alike::

    >>> a = parse_sentinel_url("redis+sentinel://:pw@s1:26379,s2/mymaster/2?sentinel_password=spw")
    >>> a.sentinels, a.master, a.db, a.password, a.sentinel_password, a.tls
    ((('s1', 26379), ('s2', 26379)), 'mymaster', 2, 'pw', 'spw', False)

Pure standard library: :mod:`taskq_sdk.config` validates with it at settings time.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote

from .errors import ConfigurationError

__all__ = ["SENTINEL_SCHEMES", "SentinelAddress", "is_sentinel_url", "parse_sentinel_hosts", "parse_sentinel_url"]

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
_QUERY_KEYS = ("sentinel_password", "sentinel_username")
_FORM = "redis+sentinel://[:password@]host1:26379,host2:26379/mymaster/0"


@dataclass(frozen=True)
class SentinelAddress:
    """Where a Sentinel-managed primary is found, and how to authenticate to sentinels and data nodes.

    Example::

        SentinelAddress((("s1", 26379),), "mymaster").url()   # 'redis+sentinel://s1:26379/mymaster/0'
    """

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False

    def url(self) -> str:
        """The ``redis+sentinel://`` URL for this address, passwords included (never print it unmasked)."""
        auth = ""
        if self.password is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password, safe='')}@"
        elif self.username:
            auth = f"{quote(self.username, safe='')}@"
        hosts = ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.sentinels)
        query = "&".join(
            f"{k}={quote(v, safe='')}"
            for k, v in (("sentinel_username", self.sentinel_username), ("sentinel_password", self.sentinel_password))
            if v is not None
        )
        scheme = SENTINEL_SCHEMES[1] if self.tls else SENTINEL_SCHEMES[0]
        return f"{scheme}://{auth}{hosts}/{quote(self.master, safe='')}/{self.db}" + (f"?{query}" if query else "")


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` is a ``redis+sentinel://`` or ``rediss+sentinel://`` URL."""
    return url.split("://", 1)[0].lower() in SENTINEL_SCHEMES


def parse_sentinel_hosts(text: str, where: str = "REDIS_SENTINELS") -> tuple[tuple[str, int], ...]:
    """``"s1:26379,s2,[::1]:26380"`` as ``(host, port)`` pairs (port 26379 when left out).

    Example::

        parse_sentinel_hosts("s1:26379, s2")   # (('s1', 26379), ('s2', 26379))
    """
    hosts: list[tuple[str, int]] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else rest
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
        else:
            host, port_text = item, ""
        if not host:
            raise ConfigurationError(f"{where}: sentinel {item!r} has no host name. Expected the form {_FORM}")
        port = DEFAULT_SENTINEL_PORT
        if port_text:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ConfigurationError(
                    f"{where}: sentinel {item!r} has a bad port {port_text!r}: use a number from 1 to 65535 "
                    f"(26379 is Sentinel's default)"
                )
            port = int(port_text)
        hosts.append((host, port))
    if not hosts:
        raise ConfigurationError(f"{where}: no sentinel hosts given. Expected host1:26379,host2:26379 (form: {_FORM})")
    return tuple(hosts)


def parse_sentinel_url(url: str) -> SentinelAddress:
    """The :class:`SentinelAddress` in a ``redis+sentinel://`` URL; :class:`ConfigurationError` says what is wrong.

    Example::

        parse_sentinel_url("redis+sentinel://s1,s2/mymaster")   # master 'mymaster', db 0
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SENTINEL_SCHEMES:
        raise ConfigurationError(f"not a Sentinel URL (scheme {scheme!r}): expected {_FORM}")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts_text = netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
    sentinels = parse_sentinel_hosts(hosts_text, "REDIS_URL")
    parts = [p for p in path.split("/") if p != ""]
    if not parts:
        raise ConfigurationError(
            f"REDIS_URL names no Sentinel primary: after the hosts comes the name the sentinels monitor it under, "
            f"e.g. {_FORM}"
        )
    if len(parts) > 2:
        raise ConfigurationError(f"REDIS_URL path {path!r} has too many parts: expected /<primary name>[/<db>]")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise ConfigurationError(f"REDIS_URL database {parts[1]!r} is not a number: expected /<primary name>/<db>")
        db = int(parts[1])
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - set(_QUERY_KEYS))
    if unknown:
        raise ConfigurationError(
            f"REDIS_URL option(s) {', '.join(unknown)} are not understood for Sentinel URLs; "
            f"known: {', '.join(_QUERY_KEYS)}"
        )
    return SentinelAddress(
        sentinels=sentinels,
        master=unquote(parts[0]),
        db=db,
        username=username,
        password=password,
        sentinel_username=options["sentinel_username"][-1] if "sentinel_username" in options else None,
        sentinel_password=options["sentinel_password"][-1] if "sentinel_password" in options else None,
        tls=scheme.lower() == SENTINEL_SCHEMES[1],
    )
