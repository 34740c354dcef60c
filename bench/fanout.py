"""DataFrame fan-out: 100,000 trivial rows vs ``df.apply``, and 1,000,000 rows with the client's peak memory.

    python -m bench.fanout                 # --rows 100000 --big-rows 1000000 --workers 2 --rounds 3

A warm ``LocalCluster`` (worker processes serving ``bench.jobs``; run from the repo root) and the
same trivial function ``inc(x) = x + 1`` both ways. "Adds" is taskq's end-to-end time (submit,
run, gather into the result frame) minus ``df["x"].apply(inc)`` in this process. The million-row
run is timed without tracing, then repeated under ``tracemalloc`` for the client's peak Python
memory (numpy buffers included); the peak RSS growth (``/proc/self/status`` VmHWM, reset before
the run) is shown too. Result frame size: ``memory_usage(deep=True)``, and the buffers alone.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc
from typing import Any

import numpy as np
import pandas as pd

import taskq_sdk.pandas  # noqa: F401  (registers df.taskq)
from taskq_sdk import LocalCluster

from ._harness import median, table
from .jobs import inc


def rss_peak_reset() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def vm(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def frame_sizes(out: pd.DataFrame) -> tuple[int, int]:
    deep = int(out.memory_usage(deep=True).sum())
    shallow = int(out.memory_usage(deep=False).sum())
    return deep, shallow


def fan_out(client: Any, df: pd.DataFrame, chunk_size: int) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    out = df.taskq.apply("inc", column="x", client=client, chunk_size=chunk_size, progress=False)
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--big-rows", type=int, default=1_000_000)
    ap.add_argument("--chunk-sizes", default="500,2000,10000")
    ap.add_argument("--big-chunk-size", type=int, default=500)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    chunk_sizes = [int(c) for c in args.chunk_sizes.split(",")]

    df = pd.DataFrame({"x": np.arange(args.rows, dtype=np.int64)}, index=pd.Index([f"r{i}" for i in range(args.rows)]))
    started = time.perf_counter()
    with LocalCluster(n_workers=args.workers, jobs=["bench.jobs"]) as cluster:
        startup = time.perf_counter() - started
        client = cluster.client()
        fan_out(client, df.iloc[:5000], 500)  # warm: workers import pandas and the job module
        local_runs: list[float] = []
        taskq_runs: dict[int, list[float]] = {c: [] for c in chunk_sizes}
        for _ in range(args.rounds):
            t = time.perf_counter()
            expected = df["x"].apply(inc)
            local_runs.append(time.perf_counter() - t)
            for c in chunk_sizes:
                took, out = fan_out(client, df, c)
                assert out["inc"].equals(expected)
                assert out.index.equals(df.index)
                taskq_runs[c].append(took)
        local = median(local_runs)
        rows = [["`df['x'].apply(inc)` in this process", f"{local * 1000:,.0f} ms", f"{args.rows / local:,.0f}", "—"]]
        for c in chunk_sizes:
            took = median(taskq_runs[c])
            rows.append(
                [
                    f"`df.taskq.apply('inc', column='x', chunk_size={c})`, {args.workers} workers",
                    f"{took * 1000:,.0f} ms",
                    f"{args.rows / took:,.0f}",
                    f"{(took - local) * 1000:+,.0f} ms",
                ]
            )
        print(
            table(
                f"Fan-out of {args.rows:,} rows of a trivial function (median of {args.rounds}; warm LocalCluster, "
                f"start-up {startup:.1f}s not counted)",
                ["how", "end to end", "rows/s", "adds over df.apply"],
                rows,
            )
        )
        best = min(median(v) for v in taskq_runs.values())
        default = median(taskq_runs[500]) if 500 in taskq_runs else best
        print(
            f"\ntarget: adds <= 1 s -> {'met' if default - local <= 1.0 else 'MISSED'} at chunk_size=500 "
            f"({(default - local):+.2f}s); best {(best - local):+.2f}s"
        )

        # ------------------------------------------------------------ a million rows
        n = args.big_rows
        big = pd.DataFrame({"x": np.arange(n, dtype=np.int64)})
        gc.collect()
        took, out = fan_out(client, big, args.big_chunk_size)
        assert out["inc"].equals(big["x"] + 1)
        assert (out["taskq_status"] == "complete").all()
        deep, shallow = frame_sizes(out)
        del out
        gc.collect()
        base_rss = vm("VmRSS")
        reset = rss_peak_reset()
        tracemalloc.start()
        _, out = fan_out(client, big, args.big_chunk_size)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_growth = vm("VmHWM") - base_rss if reset else None
        print()
        print(
            table(
                f"{n:,} rows, chunk_size={args.big_chunk_size} ({-(-n // args.big_chunk_size):,} jobs), "
                f"{args.workers} workers",
                ["figure", "value"],
                [
                    ["end to end (untraced)", f"{took:.2f} s ({n / took:,.0f} rows/s)"],
                    ["result frame, memory_usage(deep=True)", f"{deep / 1e6:,.1f} MB"],
                    ["result frame, buffers only (deep=False)", f"{shallow / 1e6:,.1f} MB"],
                    [
                        "client peak, tracemalloc",
                        f"{peak / 1e6:,.1f} MB = {peak / deep:.2f}x deep, {peak / shallow:.2f}x buffers",
                    ],
                    ["client peak RSS growth (VmHWM)", "n/a" if rss_growth is None else f"{rss_growth / 1e6:,.1f} MB"],
                ],
            )
        )
        print(
            f"\ntarget: client peak < 3x the result frame -> {'met' if peak < 3 * deep else 'MISSED'} (deep), "
            f"{'met' if peak < 3 * shallow else 'missed'} (buffers only)"
        )
        del out


if __name__ == "__main__":
    os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
