"""Rate and concurrency limits that hold across every worker: their specs, parsed and checked.

A rate is ``"<count>/<unit>"`` with unit ``s``, ``min``, ``h`` (or ``sec``, ``second``, ``minute``,
``hour``, ``m``); a limit also allows a *burst*: that many jobs may start at once after a quiet
spell. The burst defaults to a tenth of a second's worth of the rate, at least 1, so in any 1 s
window at most ``rate + burst`` jobs are admitted (see :mod:`taskq_sdk._backend.limits`). A job
over a limit goes back to its queue
until its turn: it takes no worker slot, does not fail and uses no attempt. Example::

    @taskq_sdk.job(rate_limit="50/s", max_concurrency=4)
    async def call_api(prompt: str) -> str: ...

    client.set_limit("openai", rate="3000/min", concurrency=3)
    client.submit(call_api, "hi", _limit_key="openai")

A key belongs to its tenant. Its owner may share it: ``set_limit("openai", rate="50/s",
share_with=["team-b"])``; tenant ``team-b`` then names it ``_limit_key="acme/openai"`` (owner, a
slash, the key) and its jobs count against acme's budget. Any other tenant naming it gets
:class:`~taskq_sdk.errors.PermissionDenied` (at submit, and from the worker if the check was skipped).

    parse_rate("3000/min")   # Rate(count=3000, per_s=60.0)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._names import NAME_RE
from .errors import ConfigurationError

__all__ = [
    "Limit",
    "Rate",
    "check_limit_name",
    "check_limit_ref",
    "chunk_size_for",
    "default_burst",
    "parse_rate",
    "split_limit_ref",
]

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d*)\s*([a-z]+)\s*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Rate:
    """A rate: ``count`` job starts per ``per_s`` seconds.

    Example::

        Rate(50, 1.0).per_second   # 50.0
    """

    count: float
    per_s: float

    @property
    def per_second(self) -> float:
        return self.count / self.per_s

    def __str__(self) -> str:
        for unit, secs in (("s", 1.0), ("min", 60.0), ("h", 3600.0)):
            if self.per_s == secs:
                return f"{self.count:g}/{unit}"
        return f"{self.count:g}/{self.per_s:g}s"


def parse_rate(spec: str | Rate) -> Rate:
    """A rate from text like ``"50/s"``, ``"3000/min"``, ``"10/h"`` or ``"5/10s"``; raises ConfigurationError.

    Example::

        parse_rate("50/s")   # Rate(count=50.0, per_s=1.0)
    """
    if isinstance(spec, Rate):
        return spec
    if not isinstance(spec, str):
        raise ConfigurationError(f"a rate limit is text like '50/s' or '3000/min', not {type(spec).__name__} {spec!r}")
    m = _RATE.match(spec.lower())
    if m is None or m.group(3) not in _UNITS:
        raise ConfigurationError(
            f"rate limit {spec!r} is not '<count>/<unit>': write e.g. '50/s', '3000/min' or '10/h' "
            f"(units: {', '.join(sorted(_UNITS))})"
        )
    count = float(m.group(1))
    mult = float(m.group(2)) if m.group(2) else 1.0
    if count <= 0 or mult <= 0 or not math.isfinite(count):
        raise ConfigurationError(f"rate limit {spec!r} must allow at least some jobs: the count must be above 0")
    return Rate(count, mult * _UNITS[m.group(3)])


def default_burst(rate: Rate) -> int:
    """The default burst of a rate: a tenth of a second's worth, at least 1.

    Example::

        default_burst(parse_rate("100/s"))   # 10
    """
    return max(1, int(rate.per_second / 10))


def check_limit_name(name: object) -> str:
    """A limit key's name, checked: letters, digits, ``_ . -``, up to 100 characters.

    Example::

        check_limit_name("openai")   # 'openai'
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigurationError(
            f"limit key {name!r} must be 1-100 letters, digits, '_', '.' or '-' (starting with a letter or digit)"
        )
    return name


def check_limit_ref(ref: object, tenant: str) -> str:
    """A ``_limit_key`` as a job carries it: ``"openai"`` (the tenant's own key) or ``"acme/openai"`` (a key
    tenant ``acme`` shares). ``"<own tenant>/openai"`` is the same as ``"openai"``.

    Example::

        check_limit_ref("acme/openai", "team-b")   # 'acme/openai'
        check_limit_ref("acme/openai", "acme")     # 'openai'
    """
    if isinstance(ref, str) and "/" in ref:
        owner, _, key = ref.partition("/")
        if not NAME_RE.fullmatch(owner) or not _NAME.match(key):
            raise ConfigurationError(
                f"limit key {ref!r}: a shared key is '<owner tenant>/<key>', e.g. 'acme/openai' (tenant: a-z, 0-9, "
                "'_', '-'; key: letters, digits, '_', '.', '-')"
            )
        return key if owner == tenant else ref
    return check_limit_name(ref)


def split_limit_ref(ref: str) -> tuple[str | None, str]:
    """The owner (None: the job's own tenant) and the key of a checked ``_limit_key``.

    Example::

        split_limit_ref("acme/openai")   # ('acme', 'openai')
    """
    owner, sep, key = ref.partition("/")
    return (owner, key) if sep else (None, ref)


def chunk_size_for(fn: object, chunk_size: int | str, options: Mapping[str, Any]) -> int | str:
    """The chunk size a map or apply of ``fn`` uses: ``"auto"`` becomes 1 when a limit applies.

    A limit counts jobs, and a chunk of rows is one job: so with ``chunk_size="auto"`` a function
    marked ``@job(rate_limit=..., max_concurrency=...)`` (passed as the function itself) or a
    ``_limit_key=`` gets one item per job, and every call counts. An explicit size is kept (the
    worker's gate takes one rate slot per item of a chunk; a function named by a string is looked up
    in what its workers publish: ``ClientCore.chunk_size_by_name``). Example::

        from taskq_sdk import job

        @job(rate_limit="50/s")
        def call_api(prompt: str) -> str: ...

        chunk_size_for(call_api, "auto", {})   # 1
    """
    if chunk_size != "auto":
        return chunk_size
    spec = getattr(fn, "__taskq_job__", None)
    if options.get("_limit_key") is not None or getattr(spec, "limit", None) is not None:
        return 1
    return chunk_size


def _positive_int(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{what} must be a whole number of at least 1 (or None for no limit), not {value!r}")
    return value


@dataclass(frozen=True)
class Limit:
    """One limit: a rate (with its burst) and/or a cap on jobs running at once.

    Example::

        Limit.of(rate="50/s", concurrency=3).describe("openai")   # 'openai: 50/s, 3 at once'
    """

    rate: Rate | None = None
    burst: int = 0
    concurrency: int = 0

    @classmethod
    def of(cls, *, rate: str | Rate | None = None, burst: int | None = None, concurrency: int | None = None) -> Limit:
        parsed = parse_rate(rate) if rate is not None else None
        conc = _positive_int(concurrency, "max_concurrency")
        b = _positive_int(burst, "burst")
        if parsed is None and conc is None:
            raise ConfigurationError("a limit needs a rate ('50/s') or a concurrency (a number of jobs at once)")
        if b is not None and parsed is None:
            raise ConfigurationError("burst only applies to a rate limit: give rate= too")
        return cls(parsed, (b or default_burst(parsed)) if parsed else 0, conc or 0)

    def describe(self, name: str) -> str:
        parts = []
        if self.rate is not None:
            parts.append(str(self.rate))
        if self.concurrency:
            parts.append(f"{self.concurrency} at once")
        return f"{name}: {', '.join(parts)}"
