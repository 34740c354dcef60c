"""``@cluster.job(rate_limit=..., max_concurrency=...)``: notebook functions on a LocalCluster get
the same limits as ``@taskq_sdk.job``, held across the cluster's worker processes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bench.limits import max_in_window, max_overlap
from taskq_sdk import LocalCluster, Settings
from taskq_sdk.errors import ConfigurationError

from .conftest import FAST


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=2, processes=True, settings=Settings(**FAST)) as c:  # type: ignore[arg-type]
        yield c


def test_a_notebook_function_with_max_concurrency(cluster: LocalCluster) -> None:
    client = cluster.client()

    @cluster.job(max_concurrency=2)
    def nb_pair(i: int) -> tuple[float, float]:
        start = time.time()
        time.sleep(0.1)
        return start, time.time()

    spans = client.map(nb_pair, range(10), chunk_size=1).results(timeout=60)
    assert len(spans) == 10
    assert max_overlap([(s, e) for s, e in spans]) == 2, "two at once across both worker processes"
    limits = client.metrics().limits
    assert limits["fn:nb_pair"]["limit"] == "nb_pair: 2 at once"
    assert limits["fn:nb_pair"]["passed"] == 10


def test_a_notebook_function_with_a_rate_limit(cluster: LocalCluster) -> None:
    client = cluster.client()

    @cluster.job(rate_limit="10/s")
    async def nb_rated(i: int) -> float:
        return time.time()

    starts = client.map(nb_rated, range(25), chunk_size=1).results(timeout=60)
    peak = max_in_window(starts)
    # 10/s with its default burst 1, + 1 for a start crossing a window edge (see test_limits.py)
    assert peak <= 12, f"{peak} starts in one 1 s window under 10/s"
    assert max(starts) - min(starts) >= 1.5, "25 starts at 10/s take over 2 s"
    assert client.metrics().limits["fn:nb_rated"]["passed"] == 25


def test_bad_limits_on_a_notebook_function_are_typed_errors(cluster: LocalCluster) -> None:
    with pytest.raises(ConfigurationError, match="rate limit"):
        cluster.job(rate_limit="fast", name="nb_bad")(lambda: None)
    with pytest.raises(ConfigurationError, match="max_concurrency"):
        cluster.job(max_concurrency=0, name="nb_bad")(lambda: None)


def test_a_dataframe_fan_out_of_a_limited_function_counts_every_row(cluster: LocalCluster) -> None:
    """``df.taskq.apply`` of a rate-limited function: "auto" chunking gives one row per job (a limit
    counts jobs), and the chunk runner's jobs are gated by the function's own limit."""
    pd = pytest.importorskip("pandas")
    client = cluster.client()

    @cluster.job(rate_limit="10/s")
    def nb_row(x: int) -> float:
        return time.time()

    df = pd.DataFrame({"x": range(25)})
    out = df.taskq.apply(nb_row, column="x", client=client, progress=False)
    assert (out["taskq_status"] == "complete").all()
    assert client.batch(out.attrs["taskq"]["batch"]).chunk_sizes == [1] * 25
    peak = max_in_window(list(out["nb_row"]))
    assert peak <= 12, f"{peak} rows started in one 1 s window under 10/s"


def test_an_explicit_chunk_of_a_limited_function_counts_once(cluster: LocalCluster) -> None:
    """An explicit ``chunk_size`` is kept: each chunk job takes the function's one permit, so chunks never overlap."""
    client = cluster.client()

    @cluster.job(max_concurrency=1)
    def nb_chunked(i: int) -> tuple[float, float]:
        start = time.time()
        time.sleep(0.02)
        return start, time.time()

    batch = client.map(nb_chunked, range(20), chunk_size=5)
    spans = batch.results(timeout=60)
    chunks = [(min(s for s, _ in spans[i : i + 5]), max(e for _, e in spans[i : i + 5])) for i in range(0, 20, 5)]
    assert max_overlap(chunks) == 1, "the four chunk jobs held the function's one permit in turn"
    assert client.metrics().limits["fn:nb_chunked"]["passed"] == 4
