"""Log formatting for workers: plain text by default, one JSON object per line with TASKQ_LOG_FORMAT=json.

Example::

    handler.setFormatter(JsonFormatter())
    # {"ts": "2026-11-29T07:40:00.123Z", "level": "INFO", "logger": "taskq_sdk.worker", "msg": "..."}
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

__all__ = ["JsonFormatter"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Formats records as single-line JSON with any ``extra=`` fields (job_id, tenant, ...) included.

    Example::

        logging.getLogger("taskq_sdk").info("done", extra={"job_id": "abc", "duration": 0.2})
    """

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, str | int | float | bool) or value is None else repr(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)
