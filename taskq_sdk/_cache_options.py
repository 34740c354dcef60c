"""The checked form of the cache options ``@job(cache=..., version=...)`` and ``submit(..., _cache=...)``.

Example::

    cache_options(timedelta(hours=1), "2")   # {'cache': 3600.0, 'version': '2'}
    cache_setting(True, "_cache")            # True: on, with TASKQ_CACHE_TTL
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from .errors import ConfigurationError

__all__ = ["MAX_CACHE_SECONDS", "cache_options", "cache_setting"]

#: the longest a cache entry may live (as ``_cache=`` or ``@job(cache=...)``): 10 years, as other durations
MAX_CACHE_SECONDS = 10 * 366 * 86_400.0


def cache_setting(value: Any, what: str) -> bool | float:
    """``value`` as False (off), True (on, default TTL) or a TTL in seconds; anything else is refused."""
    if value is None or value is False:
        return False
    if value is True:
        return True
    seconds = value.total_seconds() if isinstance(value, _dt.timedelta) else value
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 < seconds <= MAX_CACHE_SECONDS
    ):
        raise ConfigurationError(
            f"{what} takes True, False, a timedelta or a number of seconds up to 10 years, not {value!r}; "
            "for example cache=timedelta(days=7)"
        )
    return float(seconds)


def cache_options(cache: Any, version: Any) -> dict[str, Any]:
    """The ``JobSpec.extra`` entries ``@job(cache=..., version=...)`` stores, checked.

    Example::

        cache_options(timedelta(hours=1), "2")   # {'cache': 3600.0, 'version': '2'}
    """
    if version is not None and (not isinstance(version, str) or not version or len(version) > 200):
        raise ConfigurationError(f"version= takes a non-empty string of at most 200 characters, not {version!r}")
    out: dict[str, Any] = {"cache": cache_setting(cache, "cache=")}
    if version is not None:
        out["version"] = version
    return out
