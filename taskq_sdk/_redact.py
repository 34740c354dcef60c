"""Short, secret-free reprs of job calls and server URLs for info, listings, logs, errors and the dashboard.

Arguments named like secrets (``password``, ``token``, ``secret``, ``key``, ...) show as ``'***'``,
also inside nested dicts; a URL's password shows as ``***`` wherever it is written, a URL passed as an
argument's value included::

    >>> call_repr("login", ("bob",), {"password": "hunter2", "opts": {"api_key": "x"}})
    "login('bob', password='***', opts={'api_key': '***'})"
    >>> redact_url("redis://db:6379/0?password=hunter2")
    'redis://db:6379/0?password=***'
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

__all__ = ["REDACTED", "call_repr", "is_secret_name", "redact", "redact_url"]

REDACTED = "***"
_SECRET = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|(^|[_-])key$|^key([_-]|$)|credential|auth|cookie|session)",
    re.IGNORECASE,
)


def is_secret_name(name: object) -> bool:
    """Whether an argument or dict key name looks like it holds a secret.

    >>> is_secret_name("db_password"), is_secret_name("keyword")
    (True, False)
    """
    return isinstance(name, str) and bool(_SECRET.search(name))


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with secret-named dict entries replaced by ``'***'`` (3 levels deep).

    A string that holds a URL (``scheme://...``) has its password replaced too (:func:`redact_url`).

    >>> redact(["redis://:hunter2@db:6379/0", {"token": "t"}])
    ['redis://:***@db:6379/0', {'token': '***'}]
    """
    if isinstance(value, str):
        return redact_url(value) if "://" in value and _URL_ONLY.match(value) else value
    if depth > 3:
        return value
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret_name(k) else redact(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v, depth + 1) for v in value)
    return value


def _short(value: Any, limit: int) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def call_repr(function: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any], limit: int = 300) -> str:
    """``function(arg, ..., name=value)`` with secrets redacted and each value shortened."""
    parts = [_short(redact(a), 80) for a in args]
    parts += [f"{k}={REDACTED!r}" if is_secret_name(k) else f"{k}={_short(redact(v), 80)}" for k, v in kwargs.items()]
    text = f"{function}({', '.join(parts)})"
    return text if len(text) <= limit else text[: limit - 1] + "…"


_URL_ONLY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")  # a string that is one URL (no spaces)
_URL_HEAD = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:)?(?P<slashes>//)?")


def _redact_pairs(text: str) -> str:
    """``a=1&password=x`` -> ``a=1&password=***``; keys are decoded first, as redis-py's parse_qs does."""
    pieces = []
    for piece in text.split("&"):
        key, eq, _ = piece.partition("=")
        pieces.append(f"{key}={REDACTED}" if eq and is_secret_name(unquote_plus(key)) else piece)
    return "&".join(pieces)


def redact_url(url: str) -> str:
    """``url`` with its password shown as ``***``, wherever it is written.

    Covers the userinfo (``redis://user:pw@host``), secret-named query keys (``?password=``,
    ``?sentinel_password=``, ``?ssl_password=``, also percent-encoded, as redis-py decodes them),
    several hosts (``redis+sentinel://:pw@h1:26379,h2:26379/...``), ``rediss://`` and ``unix://``.
    It parses by hand rather than with ``urlsplit``, which refuses several hosts and bad IPv6
    brackets - a repr must never fail, nor fall back to the raw URL. The user name stays: it is
    not a secret, and names the ACL user an error is about.

    Example::

        >>> redact_url("redis+sentinel://:pw@h1:26379,h2:26379/mymaster?sentinel_password=pw")
        'redis+sentinel://:***@h1:26379,h2:26379/mymaster?sentinel_password=***'
    """
    head = _URL_HEAD.match(url)
    prefix = head.group(0) if head else ""
    rest = url[len(prefix) :]
    rest, hash_mark, fragment = rest.partition("#")
    rest, question, query = rest.partition("?")
    if head is not None and head.group("slashes"):
        cut = rest.find("/")
        netloc, path = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
        userinfo, at, hosts = netloc.rpartition("@")
        if at and ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + REDACTED
        rest = (f"{userinfo}@{hosts}" if at else hosts) + path
    elif "@" in rest:  # no authority: nothing that looks like credentials may pass unmasked
        rest = REDACTED + "@" + rest.rpartition("@")[2]
    text = prefix + rest
    if question:
        text += "?" + _redact_pairs(query)
    if hash_mark:
        text += "#" + _redact_pairs(fragment)
    return text
