"""Job metrics: counts, failure rate and processing-time percentiles per tenant, workspace and function.

Workers and clients count atomically in the server as jobs are submitted, retried and finished
(all-time, and per minute for recent windows); this module turns those counters into typed rows::

    m = client.metrics(window=300)          # the last five minutes; window=None: all time
    m.totals.complete, m.totals.p95_seconds
    m.to_frame()                            # one row per tenant/workspace/function (pandas)
    m.plot()                                # jobs per function, a matplotlib Axes (taskq_sdk.plotting)
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from ._backend import limits as _limits
from ._names import check_name
from .errors import ConfigurationError

if TYPE_CHECKING:
    from ._core import ClientCore

__all__ = [
    "MetricRow",
    "Metrics",
    "aggregate",
    "bucket_bounds_ms",
    "collect",
    "minute_totals",
    "per_minute",
    "per_minute_by_function",
]

BUCKETS_PER_DOUBLING = 8
COUNTERS = ("enq", "complete", "failed", "retried", "cancelled")


def bucket_bounds_ms(bucket: int) -> tuple[float, float]:
    """The duration range (ms) histogram bucket ``bucket`` covers (log2 scale, 8 buckets per doubling).

    >>> tuple(round(x, 2) for x in bucket_bounds_ms(8))
    (1.0, 1.18)
    """
    lo = 2 ** (bucket / BUCKETS_PER_DOUBLING) - 1
    hi = 2 ** ((bucket + 1) / BUCKETS_PER_DOUBLING) - 1
    return lo, hi


class MetricRow(BaseModel):
    """Counts and timings of one tenant/workspace/function (or a total over several).

    Example::

        row = client.metrics().totals
        row.complete, row.failure_rate, row.p50_seconds
    """

    model_config = ConfigDict(frozen=True)

    tenant: str = "*"
    workspace: str = "*"
    function: str = "*"
    enqueued: int = 0
    complete: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    finished: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    avg_seconds: float | None = None
    p50_seconds: float | None = None
    p95_seconds: float | None = None

    @property
    def failure_rate(self) -> float:
        """Failed / (complete + failed); 0.0 when nothing finished."""
        done = self.complete + self.failed
        return self.failed / done if done else 0.0


class Metrics(BaseModel):
    """Metrics over a window (or all time), one :class:`MetricRow` per tenant/workspace/function.

    Example::

        m = client.metrics(window=60)
        m.throughput          # jobs finished per second over the window
        m.to_frame()
    """

    model_config = ConfigDict(frozen=True)

    window: float | None = Field(None, description="seconds; None for all time")
    since: datetime | None = None
    until: datetime
    rows: list[MetricRow] = Field(default_factory=list)
    totals: MetricRow = Field(default_factory=MetricRow)
    queue_depth: dict[str, int] = Field(default_factory=dict)
    #: rate and concurrency limits in use: ``name`` (``key:<k>`` or ``fn:<function>``, prefixed
    #: ``<tenant>/`` for tenants other than default) -> limit, running (permits held), passed, waited
    limits: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def throughput(self) -> float | None:
        """Finished jobs per second over the window (None for all-time metrics)."""
        if not self.window:
            return None
        return self.totals.finished / self.window

    def to_frame(self) -> Any:
        """The rows as a pandas DataFrame (needs ``pip install "taskq-sdk[pandas]"``)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError('metrics.to_frame() needs pandas: pip install "taskq-sdk[pandas]"') from exc
        records = [{**r.model_dump(), "failure_rate": r.failure_rate} for r in self.rows]
        columns = [*MetricRow.model_fields, "failure_rate"]
        return pd.DataFrame.from_records(records, columns=columns)

    def plot(self, *, ax: Any = None, **kwargs: Any) -> Any:
        """Finished jobs per function, complete/failed/cancelled stacked; returns the matplotlib ``Axes``.

        Needs ``pip install "taskq-sdk[notebook]"`` (matplotlib, pandas). Example::

            ax = client.metrics(window=600).plot()
            ax.figure.savefig("jobs.png")
        """
        from .plotting import plot_metrics

        return plot_metrics(self, ax=ax, **kwargs)


def _percentile(hist: Mapping[int, int], q: float) -> float | None:
    total = sum(hist.values())
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            lo, hi = bucket_bounds_ms(bucket)
            return math.sqrt((lo + 1) * (hi + 1)) - 1 if lo > 0 else (lo + hi) / 2
    return None  # pragma: no cover


class _Acc:
    def __init__(self) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        self.dur_ms = 0
        self.hist: dict[int, int] = defaultdict(int)

    def add(self, field: str, value: int) -> None:
        if field == "dur":
            self.dur_ms += value
        elif field.startswith("h") and field[1:].lstrip("-").isdigit():
            self.hist[int(field[1:])] += value
        else:
            self.counts[field] += value

    def merge(self, other: _Acc) -> None:
        for name, n in other.counts.items():
            self.counts[name] += n
        self.dur_ms += other.dur_ms
        for bucket, n in other.hist.items():
            self.hist[bucket] += n

    def row(self, tenant: str, workspace: str, function: str) -> MetricRow:
        finished = self.counts["complete"] + self.counts["failed"] + self.counts["cancelled"]
        timed = sum(self.hist.values())
        p50 = _percentile(self.hist, 0.5)
        p95 = _percentile(self.hist, 0.95)
        return MetricRow(
            tenant=tenant,
            workspace=workspace,
            function=function,
            enqueued=self.counts["enq"],
            complete=self.counts["complete"],
            failed=self.counts["failed"],
            retried=self.counts["retried"],
            cancelled=self.counts["cancelled"],
            finished=finished,
            cache_hits=self.counts["cache_hit"],
            cache_misses=self.counts["cache_miss"],
            avg_seconds=(self.dur_ms / timed / 1000.0) if timed else None,
            p50_seconds=None if p50 is None else p50 / 1000.0,
            p95_seconds=None if p95 is None else p95 / 1000.0,
        )


def aggregate(
    hashes: Iterable[tuple[str, Mapping[bytes | str, bytes | str | int]]],
    *,
    workspace: str | None = None,
    function: str | None = None,
) -> tuple[list[MetricRow], MetricRow]:
    """Sum metric hashes ``(tenant, {"<ws>|<fn>|<counter>": n})`` into rows and a total.

    Example::

        rows, total = aggregate([("acme", {"w|f|complete": 3, "w|f|dur": 30, "w|f|h27": 3})])
    """
    groups: dict[tuple[str, str, str], _Acc] = defaultdict(_Acc)
    for tenant, h in hashes:
        for raw_key, raw_value in h.items():
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            parts = key.rsplit("|", 2)
            if len(parts) != 3:
                continue
            ws, fn, field = parts
            if (workspace is not None and ws != workspace) or (function is not None and fn != function):
                continue
            groups[(tenant, ws, fn)].add(field, int(raw_value))
    rows = [acc.row(*key) for key, acc in sorted(groups.items())]
    total = _Acc()
    for acc in groups.values():
        total.merge(acc)
    tenants = {k[0] for k in groups}
    return rows, total.row(
        next(iter(tenants)) if len(tenants) == 1 else "*",
        workspace or "*",
        function or "*",
    )


async def _tenants(core: ClientCore, tenant: str | None) -> list[str]:
    """The tenants a client may see metrics of: its own when bound, else all (or the one asked for)."""
    if core.tenant is not None:
        if tenant is not None and tenant != core.tenant:
            raise ConfigurationError(f"this client is bound to tenant {core.tenant!r}")
        return [core.tenant]
    if tenant is not None:
        return [check_name(tenant, "tenant")]
    return await core.call(lambda s: s.metrics.tenants())


async def collect(
    core: ClientCore,
    *,
    window: float | None = None,
    workspace: str | None = None,
    function: str | None = None,
    tenant: str | None = None,
) -> Metrics:
    """What ``client.metrics(...)`` returns: the counters of the tenants this client may see, aggregated.

    Example::

        m = await collect(core, window=300, workspace="exp1")
    """
    if window is not None and not 0 < window <= 7200:
        raise ConfigurationError("window is in seconds, between 1 and 7200 (two hours), or None for all time")
    ws = check_name(workspace, "workspace") if workspace is not None else None
    tenants = await _tenants(core, tenant)
    now = time.time()
    minutes = None
    if window is not None:
        minutes = range(int((now - window) // 60), int(now // 60) + 1)
    hashes = await core.call(lambda s: s.metrics.hashes(tenants, minutes))
    rows, totals = aggregate(hashes, workspace=ws, function=function)
    # a bound client reports its own queue (an ACL-confined user may not read the others)
    queues = [core.queue] if core.tenant is not None else await core.call(lambda s: s.metrics.queues())
    depth = {q: await core.call(lambda s, q=q: s.queue_depth(q)) for q in queues}  # type: ignore[misc]
    limits: dict[str, dict[str, Any]] = {}
    for t in tenants:
        used = await core.call(lambda s, t=t: _limits.snapshot(s.redis, t))  # type: ignore[misc]
        limits.update({(n if t == "default" else f"{t}/{n}"): v for n, v in used.items()})
    return Metrics(
        window=window,
        since=None if window is None else datetime.fromtimestamp(now - window, tz=UTC),
        until=datetime.fromtimestamp(now, tz=UTC),
        rows=rows,
        totals=totals,
        queue_depth=depth,
        limits=limits,
    )


async def per_minute(core: ClientCore, *, minutes: int, workspace: str | None = None) -> list[tuple[int, int, int]]:
    """``(minute, complete, failed)`` for each of the last ``minutes`` minutes (the dashboard's chart).

    Example::

        series = await per_minute(core, minutes=15)
    """
    return minute_totals(await per_minute_by_function(core, minutes=minutes, workspace=workspace))


#: one minute of the dashboard's chart: the minute (epoch minutes) and ``{function: (complete, failed)}``
MinuteByFunction = tuple[int, dict[str, tuple[int, int]]]


def minute_totals(series: list[MinuteByFunction]) -> list[tuple[int, int, int]]:
    """``(minute, complete, failed)`` summed over the functions of each minute.

    >>> minute_totals([(7, {"a": (2, 1), "b": (3, 0)})])
    [(7, 5, 1)]
    """
    return [(m, sum(c for c, _ in by_fn.values()), sum(f for _, f in by_fn.values())) for m, by_fn in series]


async def per_minute_by_function(
    core: ClientCore, *, minutes: int, workspace: str | None = None
) -> list[MinuteByFunction]:
    """``(minute, {function: (complete, failed)})`` for each of the last ``minutes`` minutes.

    Example::

        series = await per_minute_by_function(core, minutes=15)
    """
    tenants = await _tenants(core, None)
    now_min = int(time.time() // 60)
    wanted = range(now_min - minutes + 1, now_min + 1)
    hashes = await core.call(lambda s: s.metrics.by_minute(tenants, wanted))
    series: list[MinuteByFunction] = []
    for m in wanted:
        rows, _ = aggregate(hashes.get(m, []), workspace=workspace)
        by_fn: dict[str, tuple[int, int]] = {}
        for row in rows:
            complete, failed = by_fn.get(row.function, (0, 0))
            by_fn[row.function] = (complete + row.complete, failed + row.failed)
        series.append((m, by_fn))
    return series
