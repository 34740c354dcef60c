"""Validation of tenant, workspace, queue names and job ids, and how ids are qualified by tenant.

A job's *full id* is a single string unique across tenants: ``report-1`` for the ``default``
tenant (so jobs enqueued by plain arq belong to ``default``), ``acme:report-1`` for tenant ``acme``::

    >>> qualify("acme", "report-1")
    'acme:report-1'
    >>> tenant_of("acme:report-1"), tenant_of("report-1")
    ('acme', 'default')
"""

from __future__ import annotations

import binascii
import os
import re
import threading

from .errors import InvalidName

DEFAULT_TENANT = "default"
DEFAULT_WORKSPACE = "default"
DEFAULT_QUEUE = "default"

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# user-chosen job ids: no ':' (that separates the tenant), no whitespace or control characters
JOB_ID_RE = re.compile(r"[A-Za-z0-9_.\-=+@/]{1,200}")


def new_job_id() -> str:
    """A fresh job id: 20 letters and digits from 15 random bytes (~119 bits; a uuid4 has 122).

    Shorter than a uuid's 32 hex digits, which the server holds three times per queued job (its key,
    its queue entry, its listing entry): ~45 B less per job. Letters and digits only, so an id never
    starts with ``-`` (a command-line option) and a double-click selects all of it::

        >>> len(new_job_id()), new_job_id().isalnum()
        (20, True)
    """
    with _RANDOM_LOCK:
        if len(_random_pool) < 15:
            _random_pool[:] = os.urandom(_POOL_BYTES)
        raw = bytes(_random_pool[-15:])
        del _random_pool[-15:]  # each byte is handed out once
    return binascii.b2a_base64(raw, newline=False).translate(_ALNUM_B64).decode()


# Random bytes for ids, read from the OS 4 KiB at a time: one getrandom() call per 273 ids instead
# of one per id (py-spy put ~2-3 us of a submit on that call, a tight loop of it 0.3 us).
# A forked child starts with an empty pool, so parent and child never hand out the same bytes.
_POOL_BYTES = 15 * 273
_ALNUM_B64 = bytes.maketrans(b"+/", b"xz")  # base64's two signs -> letters (a table built once)
_RANDOM_LOCK = threading.Lock()
_random_pool = bytearray()


def _forget_random_pool() -> None:
    global _RANDOM_LOCK
    _RANDOM_LOCK = threading.Lock()  # a thread of the parent may have held it at the fork
    _random_pool.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_random_pool)


def check_name(value: object, what: str) -> str:
    """Return ``value`` if it is a valid tenant/workspace/queue name, else raise :class:`InvalidName`.

    >>> check_name("acme", "tenant")
    'acme'
    """
    if type(value) is str and value in _VALID_NAMES:  # a submit checks its queue (and more) every time
        return value
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80] + "…")
        raise InvalidName(
            f"{what} {shown} is not a valid name: use 1-63 characters from a-z, 0-9, '_' and '-', "
            "starting with a letter or digit (for example 'acme' or 'exp-1')."
        )
    if type(value) is str:
        if len(_VALID_NAMES) >= 1024:  # many tenants or workspaces: the set stays small
            _VALID_NAMES.clear()
        _VALID_NAMES.add(value)
    return value


#: names check_name has passed (plain str only: a subclass could compare equal to a valid name)
_VALID_NAMES: set[str] = set()


def check_job_id(value: object) -> str:
    """Return a user-chosen job id if valid (no ``:``, no spaces, at most 200 characters).

    >>> check_job_id("report-2024.06")
    'report-2024.06'
    """
    if not isinstance(value, str) or not JOB_ID_RE.fullmatch(value):
        raise InvalidName(
            f"job id {value!r} is not valid: use 1-200 characters from letters, digits and _ . - = + @ / "
            "(no ':' and no spaces; the tenant prefix is added for you)."
        )
    return value


def qualify(tenant: str, local_id: str) -> str:
    """The full id of ``local_id`` in ``tenant``."""
    return local_id if tenant == DEFAULT_TENANT else f"{tenant}:{local_id}"


def tenant_of(full_id: str) -> str:
    """The tenant a full id is namespaced under (``default`` when it carries no valid prefix)."""
    head, sep, _ = full_id.partition(":")
    if sep and NAME_RE.fullmatch(head):
        return head
    return DEFAULT_TENANT


def local_part(full_id: str) -> str:
    """The id without its tenant prefix."""
    head, sep, rest = full_id.partition(":")
    if sep and NAME_RE.fullmatch(head):
        return rest
    return full_id
