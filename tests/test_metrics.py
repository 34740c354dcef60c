"""Job metrics match the truth: a known mix of outcomes across two worker processes."""

from __future__ import annotations

from typing import Any

import pytest

from taskq_sdk import Client, ConfigurationError
from taskq_sdk.config import Settings
from taskq_sdk.metrics import aggregate, bucket_bounds_ms

from .conftest import figure


def test_metrics_match_a_known_mix(settings: Settings, start_worker_process: Any) -> None:
    start_worker_process()
    start_worker_process()
    with Client(settings=settings, tenant="acme", workspace="exp1") as client:
        ok = [client.submit("add", i, i) for i in range(10)]
        bad = [client.submit("boom", i) for i in range(4)]
        flaky = [client.submit("flaky", 2) for _ in range(3)]
        timed = [client.submit("sleeper", 0.2) for _ in range(4)]
        later = [client.submit("add", 0, 0, _defer_by=600) for _ in range(2)]
        for j in later:
            assert j.cancel()
        for j in ok + bad + flaky + timed:
            j.exception(timeout=30)
        for window in (None, 600):
            m = client.metrics(window=window)
            t = m.totals
            assert (t.enqueued, t.complete, t.failed, t.retried, t.cancelled) == (23, 17, 4, 3, 2), window
            assert t.failure_rate == pytest.approx(4 / 21)
            by_fn = {r.function: r for r in m.rows}
            assert by_fn["add"].complete == 10 and by_fn["add"].cancelled == 2
            assert by_fn["boom"].failed == 4 and by_fn["flaky"].retried == 3
            sl = by_fn["sleeper"]
            assert sl.p50_seconds is not None and 0.18 <= sl.p50_seconds <= 0.26, sl
            assert all(r.tenant == "acme" and r.workspace == "exp1" for r in m.rows)
        figure("metrics_sleeper_p50_seconds", round(by_fn["sleeper"].p50_seconds or 0, 3))
        frame = client.metrics().to_frame()
        assert set(frame["function"]) == {"add", "boom", "flaky", "sleeper"}
    with Client(settings=settings, tenant="globex") as other:
        assert other.metrics().totals.enqueued == 0, "tenants see only their own metrics"
        with pytest.raises(ConfigurationError):
            other.metrics(tenant="acme")
    with Client(settings=settings) as ops:
        assert ops.metrics().totals.enqueued == 23, "an unbound client sees all tenants"
        assert ops.metrics(workspace="nope").totals.enqueued == 0


def test_percentiles_from_the_histogram() -> None:
    durations = [10] * 50 + [100] * 45 + [1000] * 5
    h: dict[str, int] = {}
    import math

    for d in durations:
        b = f"w|f|h{math.floor(math.log(d + 1) / math.log(2) * 8)}"
        h[b] = h.get(b, 0) + 1
    h["w|f|complete"] = len(durations)
    h["w|f|dur"] = sum(durations)
    _, total = aggregate([("t", h)])
    assert total.p50_seconds == pytest.approx(0.010, rel=0.1)
    assert total.p95_seconds == pytest.approx(0.100, rel=0.1)
    assert total.avg_seconds == pytest.approx(sum(durations) / len(durations) / 1000)
    lo, hi = bucket_bounds_ms(40)
    assert lo < hi
