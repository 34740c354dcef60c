"""Input limits (issue 18, smaller findings): submit options, query-string passwords, huge video frames, results.db.

Each test drives the real thing - a real server, real clients and worker processes - and checks
that a bad input fails fast with a typed error that names the limit and says what to do.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from taskq_sdk.config import Settings
from taskq_sdk.errors import ConfigurationError

from .conftest import Api, figure

# ------------------------------------------------------------------------------------------------ submit options
#: (option, bad value, words the error must contain)
BAD_OPTIONS: list[tuple[str, Any, str]] = [
    ("_defer_by", math.nan, "_defer_by"),
    ("_defer_by", math.inf, "_defer_by"),
    ("_defer_by", -math.inf, "_defer_by"),
    ("_defer_by", -1, "_defer_by"),
    ("_defer_by", 1e300, "_defer_by"),
    ("_defer_by", timedelta(days=10_000), "_defer_by"),
    ("_defer_until", datetime.now(tz=UTC) + timedelta(days=10_000), "_defer_until"),
    ("_defer_until", datetime(1, 1, 2), "_defer_until"),
    ("_expires", math.nan, "_expires"),
    ("_expires", math.inf, "_expires"),
    ("_expires", -math.inf, "_expires"),
    ("_expires", 1e-9, "_expires"),
    ("_expires", 1e300, "_expires"),
    ("_timeout", math.nan, "_timeout"),
    ("_timeout", math.inf, "_timeout"),
    ("_timeout", -math.inf, "_timeout"),
    ("_timeout", 1e-12, "_timeout"),
    ("_timeout", 1e300, "_timeout"),
    ("_timeout", "30", "_timeout"),
    ("_retries", 10**12, "_retries"),
    ("_retries", 1.5, "_retries"),
    ("_retries", math.nan, "_retries"),
]


def queued(r: redis.Redis) -> int:
    """Jobs written to the server (any queue): the number of job definitions stored."""
    return sum(1 for _ in r.scan_iter(match=b"*job:*", count=1000))


@pytest.mark.badinput
@pytest.mark.parametrize(("option", "value", "named"), BAD_OPTIONS, ids=lambda v: repr(v)[:24])
def test_bad_numeric_submit_options_are_typed(
    api: Api, option: str, value: Any, named: str, sync_redis: redis.Redis
) -> None:
    client = api.client()
    with pytest.raises(ConfigurationError) as info:
        api(client.submit("add", 1, 2, **{option: value}))
    message = str(info.value)
    assert named in message, message
    assert "between" in message or "from" in message or "within" in message or "at most" in message, message
    with pytest.raises(ConfigurationError):
        api(client.map("add", [(1, 2)], star=True, **{option: value}))
    assert queued(sync_redis) == 0


@pytest.mark.badinput
def test_expires_shorter_than_the_deferral_is_refused(api: Api, sync_redis: redis.Redis) -> None:
    client = api.client()
    with pytest.raises(ConfigurationError, match="_expires"):
        api(client.submit("add", 1, 2, _defer_by=60, _expires=10))
    assert queued(sync_redis) == 0


@pytest.mark.badinput
def test_dataframe_apply_checks_options_too(settings: Settings, sync_redis: redis.Redis) -> None:
    pd = pytest.importorskip("pandas")
    import taskq_sdk.pandas  # noqa: F401  (registers df.taskq)
    from taskq_sdk import Client

    df = pd.DataFrame({"a": [1, 2], "b": [3, 4]})
    with Client(settings=settings) as client:
        for option, value in (("_timeout", math.nan), ("_expires", math.inf), ("_defer_by", math.nan)):
            with pytest.raises(ConfigurationError, match=option):
                df.taskq.apply("add", columns=["a", "b"], client=client, progress=False, timeout=5, **{option: value})
    assert queued(sync_redis) == 0


@pytest.mark.badinput
def test_good_numeric_submit_options_still_work(api: Api, start_worker: Any) -> None:
    start_worker()
    client = api.client()
    job = api(
        client.submit(
            "add", 1, 2, _timeout=timedelta(seconds=5), _expires=30.0, _retries=2, _defer_until=datetime.now(tz=UTC)
        )
    )
    assert api(job.result(timeout=10)) == 3
    job = api(client.submit("add", 2, 2, _defer_by=0.1, _timeout=0.5, _expires=60))
    assert api(job.result(timeout=10)) == 4
    figure("submit_option_cases_refused", len(BAD_OPTIONS))
