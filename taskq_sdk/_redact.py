"""Short, secret-free reprs of job calls for info, listings, logs and the dashboard.

Arguments named like secrets (``password``, ``token``, ``secret``, ``key``, ...) show as ``'***'``,
also inside nested dicts::

    >>> call_repr("login", ("bob",), {"password": "hunter2", "opts": {"api_key": "x"}})
    "login('bob', password='***', opts={'api_key': '***'})"
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["REDACTED", "call_repr", "is_secret_name", "redact"]

REDACTED = "***"
_SECRET = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|private[_-]?key|(^|[_-])key$|^key|credential|auth|cookie|session)",
    re.IGNORECASE,
)


def is_secret_name(name: object) -> bool:
    """Whether an argument or dict key name looks like it holds a secret.

    >>> is_secret_name("db_password"), is_secret_name("keyword")
    (True, False)
    """
    return isinstance(name, str) and bool(_SECRET.search(name))


def redact(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with secret-named dict entries replaced by ``'***'`` (3 levels deep)."""
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
