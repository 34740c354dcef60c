"""The result cache: what a cache hit costs next to a run, and a 100,000-row re-run with 100 changed rows.

    python -m bench.cache            # --n 300 --rows 100000 --changed 100

One embedded server and one worker process, in one run:

- ``submit->result``: a trivial job submitted and waited for (it runs) vs the same call again with
  ``_cache=True`` after its first run (a hit: no job, the stored result);
- ``submit``: the submit call alone (the enqueue vs the hit's claim round trip plus one state read);
- raw arq 0.28 (worker and result polling at 5 ms) running the same trivial call, measured in the same
  run: what a hit costs next to the plain queue without a cache;
- fan-out: ``df.taskq.apply(fn, column="x", cache=True)``, first run vs a re-run where ``--changed``
  rows differ (computes those only), and a run without the cache for reference; ``fn`` is a trivial
  ``inc`` over ``--rows`` rows (the cache's own cost shows) and a ~0.2 ms/row ``score`` over
  ``--score-rows`` rows (what a cache saves).

Compare ratios from one run; the machine's speed drifts.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import pandas as pd

from taskq_sdk import Client
from taskq_sdk import pandas as tpd

from ._harness import arq_worker, flush, percentile, server, table, taskq_worker
from .latency import raw_arq


def _timed(n: int, call: object) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)  # type: ignore[operator]
        out.append(time.perf_counter() - t0)
    return out


def latency(client: Client, n: int, arq_runs: list[float]) -> list[list[str]]:
    runs = _timed(n, lambda i: client.submit("inc", 10_000 + i).result(timeout=30))
    for i in range(n):  # fill the cache
        client.submit("inc", i, _cache=True).result(timeout=30)
    hits = _timed(n, lambda i: client.submit("inc", i, _cache=True).result(timeout=30))
    hit_submit = _timed(n, lambda i: client.submit("inc", i, _cache=True))
    enqueue = _timed(n, lambda i: client.submit("inc", 20_000 + i))  # last: the worker then runs these
    rows = []
    base = percentile(runs, 0.5)
    for name, samples in (
        ("submit->result, raw arq (5 ms polls)", arq_runs),
        ("submit->result, runs", runs),
        ("submit->result, cache hit", hits),
        ("submit only, enqueue", enqueue),
        ("submit only, cache hit", hit_submit),
    ):
        p50 = percentile(samples, 0.5)
        rows.append([name, f"{p50 * 1000:.2f}", f"{percentile(samples, 0.95) * 1000:.2f}", f"{base / p50:.1f}x"])
    print(f"FIGURE cache_hit_result_ms={percentile(hits, 0.5) * 1000:.2f}")
    print(f"FIGURE cache_hit_vs_run_speedup={base / percentile(hits, 0.5):.1f}")
    print(f"FIGURE cache_hit_vs_raw_arq_speedup={percentile(arq_runs, 0.5) / percentile(hits, 0.5):.1f}")
    return rows


def fanout(client: Client, fn: str, n_rows: int, changed: int) -> tuple[list[list[str]], float]:
    df = pd.DataFrame({"x": np.arange(n_rows, dtype=np.int64)})
    how: dict[str, Any] = {"column": "x", "chunk_size": 2000, "client": client, "progress": False}
    t0 = time.perf_counter()
    tpd.apply(df, fn, **how)
    plain_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    first = tpd.apply(df, fn, cache=True, **how)
    first_s = time.perf_counter() - t0
    edited = df.copy()
    spots = np.linspace(0, n_rows - 1, changed).astype(int)
    edited.loc[spots, "x"] = -edited.loc[spots, "x"] - 1
    t0 = time.perf_counter()
    rerun = tpd.apply(edited, fn, cache=True, **how)
    rerun_s = time.perf_counter() - t0
    assert first.taskq_status.eq("complete").all()
    assert rerun.taskq_status.eq("complete").all()
    assert rerun.attrs["taskq"]["computed_rows"] == changed
    assert (rerun[fn].to_numpy()[spots] != first[fn].to_numpy()[spots]).any()
    rows = [
        [f"{fn}: {n_rows:,} rows, no cache", f"{plain_s:.2f}", f"{n_rows:,}", "1.0x"],
        [f"{fn}: {n_rows:,} rows, cache, first run", f"{first_s:.2f}", f"{n_rows:,}", f"{plain_s / first_s:.2f}x"],
        [f"{fn}: re-run, {changed} rows changed", f"{rerun_s:.2f}", str(changed), f"{plain_s / rerun_s:.2f}x"],
    ]
    return rows, first_s / rerun_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--score-rows", type=int, default=20_000, help="rows for the ~0.2 ms/row function")
    parser.add_argument("--changed", type=int, default=100)
    args = parser.parse_args()
    with server() as srv:
        flush(srv.url)
        with arq_worker(srv.url, "bench.arq_baseline.Fast"):
            arq_runs = raw_arq(srv.url, args.n, 0.005)
        flush(srv.url)
        with taskq_worker(srv.url, "bench.jobs", "bench.cache_jobs"), Client(srv.url) as client:
            lat = latency(client, args.n, arq_runs)
            trivial, trivial_ratio = fanout(client, "inc", args.rows, args.changed)
            costly, costly_ratio = fanout(client, "score", args.score_rows, args.changed)
    print(f"FIGURE cache_rows_rerun_vs_first_trivial={trivial_ratio:.1f}")
    print(f"FIGURE cache_rows_rerun_vs_first_costly={costly_ratio:.1f}")
    print(table("cache hits vs runs (one worker)", ["", "p50 ms", "p95 ms", "vs run"], lat))
    print(table("row-level cache on a fan-out", ["", "seconds", "rows computed", "vs no cache"], trivial + costly))


if __name__ == "__main__":
    main()
