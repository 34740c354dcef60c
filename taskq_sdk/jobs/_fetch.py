"""Fetching the video job's input: URL validation, the SSRF guard, and a bounded streaming download.

Two layers, used at two moments:

* :func:`validate_video_url` runs on the **client** at submit time: syntax and scheme only, no DNS.
* :func:`fetch_source` runs on the **worker**: it re-validates, then downloads ``http(s)://`` URLs
  (or, where private sources are allowed, opens a local path / ``file://`` URL in place) under a
  size limit and connect/read/total deadlines.

The SSRF guard lives in the connection layer, not in a pre-flight check. Downloads go through
httpcore with a custom network backend (:func:`guarded_backend`) whose ``connect_tcp(host, port)``
resolves ``host`` itself (through the replaceable :data:`resolve` seam), rejects the connection
if *any* resolved address is not public (:func:`check_address`), and then connects to one of the
vetted IP addresses. The address that was checked is the address that is connected to, so a DNS
rebinding between check and connect cannot happen, and every redirect hop (and every new
connection) is checked the same way. The URL keeps its host name, so the ``Host`` header, TLS SNI
and certificate verification all use the original name. Proxies from the environment are never
used (httpcore ignores ``HTTP_PROXY``), since a proxy would connect on our behalf unchecked.

Example::

    url = validate_video_url("https://example.com/clip.mp4")          # at submit
    source = await fetch_source(url, tmp_dir, FetchLimits.from_settings(settings),
                                AddressGuard(allow_private=settings.allow_private_urls))
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urljoin, urlsplit

from ..errors import (
    BlockedDestination,
    DownloadFailed,
    DownloadTimeout,
    DownloadTooLarge,
    InvalidURL,
    UnsupportedScheme,
)

if TYPE_CHECKING:
    import httpcore

    from ..config import Settings

__all__ = [
    "MAX_REDIRECTS",
    "MAX_URL_LENGTH",
    "AddressGuard",
    "DownloadConnectionFailed",
    "FetchLimits",
    "Source",
    "check_address",
    "fetch_source",
    "guarded_backend",
    "parse_ip_host",
    "resolve",
    "system_resolve",
    "validate_video_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``resolve(host, port) -> ["93.184.216.34", ...]``: the DNS seam (blocking; run in a thread)
Resolver = Callable[[str, int], list[str]]

MAX_URL_LENGTH = 2048
MAX_REDIRECTS = 5
CHUNK_SIZE = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_ALLOW_HINT = "set TASKQ_ALLOW_PRIVATE_URLS=true to allow private and loopback addresses (local mode does this for you)"
_HOST_RE = re.compile(r"[A-Za-z0-9_.-]{1,253}")
_NUMERIC_PART_RE = re.compile(r"0[xX][0-9A-Fa-f]*|[0-9]+")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_ACCEPTED = "http:// and https:// URLs"
_ACCEPTED_LOCAL = "http:// and https:// URLs, file:// URLs and local paths"


class DownloadConnectionFailed(DownloadFailed, ConnectionError):
    """The video's server could not be reached (refused, reset, DNS failure); retried like network errors.

    Example::

        except DownloadConnectionFailed as exc: print(exc)   # ... connection refused ...
    """


# ---------------------------------------------------------------------------- URL validation
def validate_video_url(url: str, *, allow_private: bool = False) -> str:
    """Check a video URL's syntax and scheme (no DNS) and return it normalised; raise ``InvalidURL``.

    Accepts ``http://`` and ``https://``; with ``allow_private`` also ``file://`` URLs and local paths.
    The host is IDNA-encoded and non-ASCII path characters are percent-encoded; surrounding
    whitespace is stripped. Which *addresses* may be fetched is decided later, on the worker.

    Example::

        validate_video_url("https://example.com/a b.mp4")   # InvalidURL: contains whitespace
        validate_video_url("ftp://host/v.mp4")               # UnsupportedScheme
        validate_video_url("/data/v.mp4", allow_private=True)  # '/data/v.mp4'
    """
    accepted = _ACCEPTED_LOCAL if allow_private else _ACCEPTED
    if not isinstance(url, str):
        raise InvalidURL(f"the video URL must be a string, got {type(url).__name__}; pass {accepted}")
    text = url.strip()
    if not text:
        raise InvalidURL(f"the video URL is empty; pass {accepted}, e.g. https://example.com/clip.mp4")
    if len(text) > MAX_URL_LENGTH:
        raise InvalidURL(
            f"the video URL is {len(text):,} characters long, over the limit of {MAX_URL_LENGTH}; "
            "host the file somewhere with a shorter URL"
        )
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidURL(
            f"the video URL {_shown(text)} contains whitespace or control characters; percent-encode spaces as %20"
        )
    scheme, sep, _ = text.partition(":")
    has_scheme = bool(sep) and bool(_SCHEME_RE.fullmatch(scheme)) and len(scheme) > 1  # 'C:' is a drive
    if not has_scheme:
        if allow_private:
            return text
        raise UnsupportedScheme(
            f"{_shown(text)} is not a URL: the video job accepts {_ACCEPTED} here. Local paths and "
            "file:// URLs work only where private sources are allowed (TASKQ_ALLOW_PRIVATE_URLS=true, "
            "as in local mode)"
        )
    scheme = scheme.lower()
    if scheme == "file":
        if not allow_private:
            raise UnsupportedScheme(
                f"file:// URLs are not accepted here ({_shown(text)}): the video job accepts {_ACCEPTED}. "
                "Local files work only where private sources are allowed (TASKQ_ALLOW_PRIVATE_URLS=true, "
                "as in local mode)"
            )
        _file_url_path(text)  # raises InvalidURL when malformed
        return text
    if scheme not in ("http", "https"):
        raise UnsupportedScheme(
            f"URL scheme {scheme + ':'!r} is not supported ({_shown(text)}): the video job accepts {accepted}"
        )
    return _normalise_http_url(text)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 100 else text[:100] + "…")


def _shown_url(url: str) -> str:
    """A URL for messages: the query (often a signature or token) is replaced by ``?…``."""
    base, sep, _ = url.partition("?")
    return _shown(base + ("?…" if sep else ""))


def _normalise_http_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"the video URL {_shown(text)} is malformed: {exc}") from exc
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidURL(
            f"the video URL {_shown(text)} carries credentials (user@host); they are not supported — "
            "use a URL that needs no login, e.g. a pre-signed link"
        )
    host = parts.hostname or ""
    if not host:
        raise InvalidURL(f"the video URL {_shown(text)} has no host; write it as https://host/path")
    if port == 0:
        raise InvalidURL(f"the video URL {_shown(text)} has port 0; use a port from 1 to 65535")
    bracketed = parts.netloc.rpartition("@")[2].startswith("[")
    if bracketed:
        try:
            ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError as exc:
            raise InvalidURL(f"the video URL {_shown(text)} has an invalid IPv6 address: {exc}") from exc
        if "%" in host:
            raise InvalidURL(f"the video URL {_shown(text)} has an IPv6 zone id, which is not supported")
        host_out = f"[{host}]"
    else:
        try:
            host_ascii = host.encode("idna").decode("ascii") if not host.isascii() else host
        except UnicodeError as exc:
            raise InvalidURL(f"the video URL {_shown(text)} has an invalid host name: {exc}") from exc
        if not _HOST_RE.fullmatch(host_ascii) or ".." in host_ascii or host_ascii.startswith("."):
            raise InvalidURL(
                f"the video URL {_shown(text)} has an invalid host {host!r}; use a DNS name or an IP address"
            )
        if _looks_numeric(host_ascii) and parse_ip_host(host_ascii) is None:
            raise InvalidURL(
                f"the video URL {_shown(text)} has host {host!r}: it looks like an IP address but is not one"
            )
        host_out = host_ascii.lower()
    netloc = host_out if port is None else f"{host_out}:{port}"
    path = quote(parts.path, safe="/%:@!$&'()*+,;=-._~")
    query = quote(parts.query, safe="/%:@!$&'()*+,;=-._~?")
    return f"{parts.scheme.lower()}://{netloc}{path or '/'}" + (f"?{query}" if query else "")


def _file_url_path(text: str) -> Path:
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise InvalidURL(f"the file URL {_shown(text)} is malformed: {exc}") from exc
    if parts.netloc not in ("", "localhost"):
        raise InvalidURL(
            f"the file URL {_shown(text)} names host {parts.netloc!r}; use file:///absolute/path "
            "(only files on the worker's own machine can be read)"
        )
    if not parts.path:
        raise InvalidURL(f"the file URL {_shown(text)} has no path; use file:///absolute/path")
    return Path(unquote(parts.path))


# ---------------------------------------------------------------------------- address policy
def _looks_numeric(host: str) -> bool:
    parts = host.rstrip(".").split(".") if host not in (".", "") else [""]
    return all(_NUMERIC_PART_RE.fullmatch(p) for p in parts)


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """inet_aton() spellings: ``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMERIC_PART_RE.fullmatch(p) for p in parts):
        return None
    values: list[int] = []
    for part in parts:
        try:
            if part[:2].lower() == "0x":
                values.append(int(part[2:] or "0", 16))
            elif len(part) > 1 and part.startswith("0"):
                values.append(int(part, 8))
            else:
                values.append(int(part, 10))
        except ValueError:
            return None  # e.g. '08': invalid octal
    *head, last = values
    if any(v > 255 for v in head) or last >= 1 << (8 * (5 - len(values))):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


def parse_ip_host(host: str) -> IPAddress | None:
    """Return the IP address a URL host spells (any IPv4 spelling, IPv6 with or without brackets), else None.

    Example::

        parse_ip_host("0x7f000001")   # IPv4Address('127.0.0.1')
        parse_ip_host("[::1]")        # IPv6Address('::1')
        parse_ip_host("example.com")  # None
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]  # IPv6 zone id
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    return _legacy_ipv4(text)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in ipaddress.IPv6Network("64:ff9b::/96") or ip in ipaddress.IPv6Network("::/96"):  # NAT64, compat
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _why_not_public(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None:
            reason = _why_not_public(inner)
            return f"embeds {inner}, {reason}" if reason else None
        if ip.is_site_local:
            return "a site-local address"
    for attr, label in (
        ("is_unspecified", "the unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address (cloud metadata lives here)"),
        ("is_private", "a private address"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(ip, attr):
            return label
    if not ip.is_global:
        return "not a public address"
    return None


def check_address(ip: str | IPAddress, *, host: str | None = None) -> None:
    """Return None if ``ip`` is a public unicast address; else raise :class:`BlockedDestination`.

    Blocks loopback, private, link-local (169.254.169.254), multicast, reserved, unspecified,
    shared (100.64/10) and IPv6 forms that embed such an IPv4 address (``::ffff:127.0.0.1``, 6to4,
    Teredo, NAT64).

    Example::

        check_address("93.184.216.34")     # None: public
        check_address("169.254.169.254")   # BlockedDestination: ... link-local ...
    """
    try:
        addr = (
            ip
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
            else ipaddress.ip_address(str(ip).split("%", 1)[0])
        )
    except ValueError as exc:
        raise BlockedDestination(f"refusing to connect to {ip!r}: not an IP address") from exc
    reason = _why_not_public(addr)
    if reason is not None:
        target = f"{host!r} resolves to {addr}" if host is not None and host != str(addr) else str(addr)
        raise BlockedDestination(
            f"refusing to download from {target}: {reason}. Only public addresses are fetched in "
            f"service mode; {_ALLOW_HINT}."
        )


def system_resolve(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the system resolver (``getaddrinfo``) to IP address strings.

    Example::

        system_resolve("localhost", 80)   # ['127.0.0.1', '::1'] (order varies)
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[str] = []
    for info in infos:
        addr = str(info[4][0])
        if addr not in out:
            out.append(addr)
    return out


#: The DNS seam: ``resolve(host, port) -> list of IP strings``. Replace it (tests, custom DNS);
#: it is looked up at call time by guards created without an explicit resolver.
resolve: Resolver = system_resolve


@dataclass(frozen=True)
class AddressGuard:
    """Decides which addresses a download may connect to; used by :func:`guarded_backend` on every connect.

    With ``allow_private`` every address is allowed (local mode). Otherwise all resolved addresses
    must be public, except those listed in ``allowed_addresses`` (exact IPs an operator vouches for,
    e.g. an internal mirror — or a loopback test server).

    Example::

        guard = AddressGuard(allow_private=False)
        await guard.vet("example.com", 443)   # ['93.184.216.34'] or BlockedDestination
    """

    allow_private: bool = False
    resolver: Resolver | None = None
    allowed_addresses: frozenset[str] = field(default_factory=frozenset)
    resolve_timeout: float = 10.0

    def _allowed(self) -> frozenset[IPAddress]:
        return frozenset(ipaddress.ip_address(a) for a in self.allowed_addresses)

    def decide(self, host: str, addresses: Iterable[str | IPAddress]) -> list[str]:
        """Check resolved ``addresses`` of ``host``; return them normalised or raise BlockedDestination."""
        parsed: list[IPAddress] = []
        for raw in addresses:
            try:
                addr = raw if not isinstance(raw, str) else ipaddress.ip_address(raw.split("%", 1)[0])
            except ValueError as exc:
                raise BlockedDestination(f"refusing to connect to {host!r}: resolver returned {raw!r}") from exc
            if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped  # connect over IPv4 to what it names
            parsed.append(addr)
        if not parsed:
            raise DownloadConnectionFailed(f"cannot download: host {host!r} resolved to no address")
        if not self.allow_private:
            allowed = self._allowed()
            for addr in parsed:
                if addr not in allowed:
                    check_address(addr, host=host)
        return [str(a) for a in parsed]

    async def vet(self, host: str, port: int) -> list[str]:
        """Resolve ``host`` (IP literals in any spelling need no DNS) and return the addresses to use."""
        literal = parse_ip_host(host)
        if literal is not None:
            return self.decide(host, [literal])
        resolver = self.resolver if self.resolver is not None else resolve
        try:
            async with asyncio.timeout(self.resolve_timeout):
                found = await asyncio.to_thread(resolver, host, port)
        except TimeoutError as exc:
            raise DownloadTimeout(
                f"resolving {host!r} took longer than {self.resolve_timeout:g}s (DNS problem?)"
            ) from exc
        except socket.gaierror as exc:
            if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
                raise DownloadFailed(f"cannot download: host {host!r} does not exist ({exc})") from exc
            raise DownloadConnectionFailed(f"cannot download: resolving {host!r} failed ({exc})") from exc
        return self.decide(host, found)


def guarded_backend(
    guard: AddressGuard, inner: httpcore.AsyncNetworkBackend | None = None
) -> httpcore.AsyncNetworkBackend:
    """An httpcore network backend that vets each ``connect_tcp`` with ``guard``, then dials a vetted IP.

    ``inner`` does the actual connecting (default :data:`inner_backend_factory`, i.e. httpcore's
    automatic backend). TLS is started by httpcore afterwards with the URL's host name, so SNI and
    certificate checks use the original name while the socket goes to the pinned address.

    Example::

        pool = httpcore.AsyncConnectionPool(network_backend=guarded_backend(AddressGuard()))
    """
    backend: httpcore.AsyncNetworkBackend = _backend_class()(
        guard, inner if inner is not None else inner_backend_factory()
    )
    return backend


def _default_inner_backend() -> httpcore.AsyncNetworkBackend:
    import httpcore

    return httpcore.AnyIOBackend()


#: builds the backend that really opens sockets (a seam: tests wrap it in a loopback-only tripwire)
inner_backend_factory: Callable[[], httpcore.AsyncNetworkBackend] = _default_inner_backend

_BACKEND_CLASS: Any = None


def _backend_class() -> Any:
    global _BACKEND_CLASS
    if _BACKEND_CLASS is not None:
        return _BACKEND_CLASS
    import httpcore

    class GuardedBackend(httpcore.AsyncNetworkBackend):
        """Resolve, check every address, then connect to a checked IP (never to the name)."""

        def __init__(self, guard: AddressGuard, inner: httpcore.AsyncNetworkBackend) -> None:
            self.guard = guard
            self.inner = inner

        async def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.AsyncNetworkStream:
            addresses = await self.guard.vet(host, port)
            last: Exception | None = None
            for ip in addresses:
                try:
                    return await self.inner.connect_tcp(
                        ip, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                    )
                except httpcore.ConnectError as exc:  # try the next vetted address
                    last = exc
            assert last is not None
            raise last

        async def connect_unix_socket(
            self,
            path: str,
            timeout: float | None = None,
            socket_options: Iterable[Any] | None = None,
        ) -> httpcore.AsyncNetworkStream:
            raise BlockedDestination("unix sockets are never used for downloads")

        async def sleep(self, seconds: float) -> None:
            await self.inner.sleep(seconds)

    _BACKEND_CLASS = GuardedBackend
    return GuardedBackend


# ---------------------------------------------------------------------------- download
@dataclass(frozen=True)
class FetchLimits:
    """Size and time limits of one download (from ``Settings`` via :meth:`from_settings`).

    Example::

        limits = FetchLimits(max_bytes=10_000_000, connect_timeout=5, read_timeout=10, total_timeout=60)
    """

    max_bytes: int = 2 * 1024**3
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 900.0

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchLimits:
        """The limits configured by ``TASKQ_MAX_DOWNLOAD_BYTES`` and ``TASKQ_DOWNLOAD_*_TIMEOUT``."""
        return cls(
            max_bytes=settings.max_download_bytes,
            connect_timeout=settings.download_connect_timeout,
            read_timeout=settings.download_read_timeout,
            total_timeout=settings.download_total_timeout,
        )


@dataclass(frozen=True)
class Source:
    """Where the input ended up: ``path``, its size, and whether it is a temp copy (``downloaded``).

    Example::

        source = await fetch_source(url, tmp, limits, guard)
        source.path, source.size, source.final_url
    """

    path: Path
    size: int
    downloaded: bool
    final_url: str


ProgressCallback = Callable[[int, "int | None"], None]


def _too_large(limit: int, what: str) -> DownloadTooLarge:
    return DownloadTooLarge(
        f"the video is larger than the download limit of {limit:,} bytes ({what}); the partial file was "
        "removed. Raise TASKQ_MAX_DOWNLOAD_BYTES or process a smaller file"
    )


async def fetch_source(
    url: str,
    dest_dir: Path,
    limits: FetchLimits,
    guard: AddressGuard,
    *,
    on_progress: ProgressCallback | None = None,
    network_backend: httpcore.AsyncNetworkBackend | None = None,
) -> Source:
    """Download ``url`` into ``dest_dir`` (or, where allowed, open a local file in place) within ``limits``.

    Raises ``InvalidURL``/``UnsupportedScheme``, ``BlockedDestination``, ``DownloadFailed`` (``.status``),
    ``DownloadTooLarge``, ``DownloadTimeout``; a partial download is removed before raising.
    ``on_progress(done_bytes, total_bytes_or_None)`` is called as bytes arrive.

    Example::

        source = await fetch_source("https://example.com/v.mp4", Path(tmp), FetchLimits(), AddressGuard())
    """
    checked = validate_video_url(url, allow_private=guard.allow_private)
    scheme = checked.partition(":")[0].lower()
    if scheme not in ("http", "https"):
        return _local_source(checked, limits)
    target = dest_dir / "source.bin"
    try:
        async with asyncio.timeout(limits.total_timeout):
            return await _download(checked, target, limits, guard, on_progress, network_backend)
    except TimeoutError as exc:
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)
        if isinstance(exc, DownloadTimeout):
            raise
        raise DownloadTimeout(
            f"downloading {_shown_url(checked)} took longer than the total limit of {limits.total_timeout:g}s "
            "(TASKQ_DOWNLOAD_TOTAL_TIMEOUT)"
        ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)
        raise


def _local_source(checked: str, limits: FetchLimits) -> Source:
    path = _file_url_path(checked) if checked.lower().startswith("file:") else Path(checked)
    path = path.expanduser().absolute()
    try:
        st = path.stat()
    except FileNotFoundError as exc:
        raise DownloadFailed(f"the local file {str(path)!r} does not exist") from exc
    except OSError as exc:
        raise DownloadFailed(f"the local file {str(path)!r} cannot be read: {exc}") from exc
    if not path.is_file():
        raise DownloadFailed(f"{str(path)!r} is not a regular file")
    if not os.access(path, os.R_OK):
        raise DownloadFailed(f"the local file {str(path)!r} is not readable")
    if st.st_size > limits.max_bytes:
        raise _too_large(limits.max_bytes, f"the file has {st.st_size:,} bytes")
    return Source(path=path, size=st.st_size, downloaded=False, final_url=checked)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1").strip()
    return None


def _request_parts(url: str) -> tuple[bytes, str, int, str, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    shown_host = f"[{host}]" if ":" in host else host
    host_header = shown_host if port == default else f"{shown_host}:{port}"
    return scheme.encode("ascii"), host, port, target, host_header


async def _download(
    url: str,
    target: Path,
    limits: FetchLimits,
    guard: AddressGuard,
    on_progress: ProgressCallback | None,
    network_backend: httpcore.AsyncNetworkBackend | None,
) -> Source:
    try:
        import anyio  # noqa: F401  (httpcore's asyncio backend)
        import httpcore
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('pip install "taskq-sdk[video]"') from exc

    backend = guarded_backend(guard, network_backend)
    timeouts = {
        "connect": limits.connect_timeout,
        "read": limits.read_timeout,
        "write": limits.read_timeout,
        "pool": limits.connect_timeout,
    }
    current = url
    async with httpcore.AsyncConnectionPool(network_backend=backend, retries=0, max_connections=2) as pool:
        for _hop in range(MAX_REDIRECTS + 1):
            scheme, host, port, path, host_header = _request_parts(current)
            request_url = httpcore.URL(scheme=scheme, host=host.encode("ascii"), port=port, target=path)
            headers = [
                (b"Host", host_header.encode("ascii")),
                (b"User-Agent", b"taskq-sdk-video/1"),
                (b"Accept", b"*/*"),
                (b"Accept-Encoding", b"identity"),
            ]
            try:
                async with pool.stream(
                    "GET", request_url, headers=headers, extensions={"timeout": timeouts}
                ) as response:
                    status = response.status
                    if status in _REDIRECT_STATUSES:
                        location = _header(response.headers, b"location")
                        if not location:
                            raise DownloadFailed(
                                f"{_shown_url(current)} answered HTTP {status} without a Location header",
                                status=status,
                            )
                        current = _redirect_target(current, location)
                        continue
                    if status >= 400:
                        if status >= 500 or status in (408, 429):
                            kind = "retried later"
                        else:
                            kind = "not retried: check the URL and that the file is publicly readable"
                        raise DownloadFailed(
                            f"downloading {_shown_url(current)} failed with HTTP {status} ({kind})", status=status
                        )
                    if not 200 <= status < 300:
                        raise DownloadFailed(
                            f"downloading {_shown_url(current)} got unexpected HTTP {status}", status=status
                        )
                    total = _content_length(response.headers)
                    if total is not None and total > limits.max_bytes:
                        raise _too_large(limits.max_bytes, f"the server announced {total:,} bytes")
                    size = await _stream_body(response, target, limits.max_bytes, total, on_progress)
                    return Source(path=target, size=size, downloaded=True, final_url=current)
            except httpcore.TimeoutException as exc:
                what = (
                    "connecting to"
                    if isinstance(exc, httpcore.ConnectTimeout | httpcore.PoolTimeout)
                    else ("waiting for data from")
                )
                limit = limits.connect_timeout if what == "connecting to" else limits.read_timeout
                setting = "CONNECT" if what == "connecting to" else "READ"
                raise DownloadTimeout(
                    f"timed out {what} {_shown_url(current)} after {limit:g}s (TASKQ_DOWNLOAD_{setting}_TIMEOUT)"
                ) from None
            except (httpcore.NetworkError, httpcore.RemoteProtocolError) as exc:
                raise DownloadConnectionFailed(
                    f"downloading {_shown_url(current)} failed: {type(exc).__name__}: {exc or 'connection lost'}"
                ) from None
            except (httpcore.UnsupportedProtocol, httpcore.LocalProtocolError) as exc:
                raise DownloadFailed(f"cannot download {_shown_url(current)}: {exc}") from None
    raise DownloadFailed(f"downloading {_shown_url(url)} followed more than {MAX_REDIRECTS} redirects; giving up")


def _redirect_target(current: str, location: str) -> str:
    nxt = urljoin(current, location)
    try:
        # every hop must be http(s), whatever the mode: a redirect never reaches file:// or a path
        return validate_video_url(nxt, allow_private=False)
    except InvalidURL as exc:
        raise BlockedDestination(
            f"refusing to follow the redirect from {_shown_url(current)} to {_shown_url(nxt)}: {exc}"
        ) from None


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    value = _header(headers, b"content-length")
    if value is None or not value.isdigit():
        return None
    return int(value)


async def _stream_body(
    response: httpcore.Response,
    target: Path,
    max_bytes: int,
    total: int | None,
    on_progress: ProgressCallback | None,
) -> int:
    done = 0
    last_report = 0.0
    stream = response.aiter_stream()
    with target.open("wb") as fh:
        if on_progress is not None:
            on_progress(0, total)
        async for chunk in stream:
            done += len(chunk)
            if done > max_bytes:
                raise _too_large(max_bytes, f"more than {max_bytes:,} bytes arrived")
            fh.write(chunk)
            now = time.monotonic()
            if on_progress is not None and now - last_report >= 0.05:
                last_report = now
                on_progress(done, total)
    if on_progress is not None:
        on_progress(done, total if total is not None else done)
    return done
