"""``ARQ_SETTINGS`` as the seed shows it, derived from :class:`~taskq_sdk.config.Settings`.

Read when accessed (not at import), from the environment as it is then::

    from taskq_sdk.arq_config import ARQ_SETTINGS, arq_settings
    ARQ_SETTINGS["max_jobs"]            # ARQ_MAX_JOBS or 10
    arq_settings(Settings(max_jobs=20)) # the same shape for explicit settings
"""

from __future__ import annotations

from typing import Any

from .config import Settings

__all__ = ["arq_settings"]  # plus ARQ_SETTINGS, computed on access


def arq_settings(settings: Settings | None = None) -> dict[str, Any]:
    """The seed's ``ARQ_SETTINGS`` dict: redis_settings, max_jobs, timeout, retry_policy.

    ``redis_settings`` is arq's ``RedisSettings`` (its repr hides the password).

    Example::

        arq_settings()["retry_policy"]   # {'max_retries': 3, 'retry_delay': 60.0, ...}
    """
    from ._backend.stock import redis_settings_for

    s = settings or Settings()
    return {
        "redis_settings": redis_settings_for(s),
        "max_jobs": s.max_jobs,
        "timeout": s.job_timeout,
        "retry_policy": {
            "max_retries": s.max_tries,
            "retry_delay": s.retry_delay,
            "exponential_backoff": True,
            "max_delay": s.retry_max_delay,
        },
    }


def __getattr__(name: str) -> Any:
    if name == "ARQ_SETTINGS":
        return arq_settings()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
