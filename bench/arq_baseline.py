"""Raw arq worker settings for the baselines: arq's defaults, and arq with worker polling at 5 ms.

Both use the SDK's msgpack codec (so payloads are the same size) and the server URL from REDIS_URL::

    arq bench.arq_baseline.Default      # poll_delay 0.5 s (arq's default)
    arq bench.arq_baseline.Fast         # poll_delay 5 ms
"""

from __future__ import annotations

import os

from arq.connections import RedisSettings

from taskq_sdk.serialization import Codec

from .noop_jobs import arq_noop

_codec = Codec()
_redis = RedisSettings.from_dsn(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
_max_jobs = int(os.environ.get("ARQ_MAX_JOBS", "10"))


def _settings(poll_delay: float) -> dict[str, object]:
    # arq reads only a settings class's own __dict__, so each variant is built whole
    return {
        "functions": [arq_noop],
        "redis_settings": _redis,
        "job_serializer": _codec.serializer,
        "job_deserializer": _codec.deserializer,
        "max_jobs": _max_jobs,
        "poll_delay": poll_delay,
        "keep_result": 3600,
    }


Default = _settings(0.5)
Fast = _settings(0.005)
