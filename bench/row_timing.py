"""What per-row timing (``timing=True``) costs, measured against the same fan-out without it.

    python -m bench.row_timing            # --rows 100000 --rounds 3 --workers 2
    python -m bench.row_timing --quick    # the in-process part only

In process: the chunk runner's loop over ``--rows`` calls of a trivial function and of a ~50 us
one, timing off vs on (the runner reads one clock per item and packs the durations), and the
bytes the timing adds to a chunk's result. On a LocalCluster: ``df.taskq.apply`` of the ~50 us
function over ``--rows`` rows, timing off vs on (the client also reads the jobs' states for the
worker and attempts columns). Best of ``--rounds``: other processes only ever make a round slower.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import pandas as pd

from taskq_sdk import LocalCluster
from taskq_sdk.jobs.mapping import _Calls, _run_sync, row_timing
from taskq_sdk.serialization import default_codec

from ._harness import table
from .cpu_fanout import burn, calibrate


def trivial(x: int) -> int:
    return x


def _loop(fn: Any, calls: list[Any], timed: bool) -> float:
    start = time.perf_counter()
    marks: list[int] | None = [] if timed else None
    wall, base = time.time_ns(), time.perf_counter_ns()
    _run_sync(_Calls(fn, (), calls, True, {}), 0.0, marks)
    if marks is not None:
        row_timing(wall, base, marks)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="only the in-process loop")
    args = ap.parse_args()
    n_small = calibrate(0.05)
    rows = []
    figures = []
    for label, fn, calls in (
        ("trivial function", trivial, list(range(args.rows))),
        ("~50 us function", burn, [n_small] * args.rows),
    ):
        took: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.rounds + 2):  # off and on alternate, so a busy moment hits both alike
            for timed in (False, True):
                took[timed].append(_loop(fn, calls, timed))
        off, on = min(took[False]), min(took[True])
        per_item_ns = (on - off) / args.rows * 1e9
        rows.append(
            [f"chunk runner loop, {label}", f"{off:.3f}", f"{on:.3f}", f"{per_item_ns:+.0f} ns", f"{on / off:.3f}"]
        )
        figures.append(f"FIGURE row_timing_loop_ratio_{'trivial' if fn is trivial else '50us'}={on / off:.3f}")
    codec = default_codec()
    marks = [0]
    for _ in range(4000):
        marks.append(marks[-1] + 200_000)  # 4,000 rows of ~0.2 ms: one chunk of ~0.8 s
    packed = len(codec.dumps({"t": row_timing(time.time_ns(), 0, marks)}))
    print(f"bytes the timing adds to a chunk result: {packed / 4000:.1f} per row (4,000 rows of ~0.2 ms)")
    figures.append(f"FIGURE row_timing_bytes_per_row={packed / 4000:.1f}")
    if not args.quick:
        df = pd.DataFrame({"n": [n_small] * args.rows})
        with LocalCluster(n_workers=args.workers) as cluster:
            client = cluster.client()
            cluster.job(burn)
            client.map("burn", [n_small] * 20).results(timeout=120)  # warm: every worker loaded it
            took = {False: [], True: []}
            for _ in range(args.rounds):
                for timed in (False, True):
                    start = time.perf_counter()
                    out = df.taskq.apply(burn, column="n", client=client, progress=False, timing=timed)
                    took[timed].append(time.perf_counter() - start)
                    assert len(out) == args.rows
                    assert ("taskq_started" in out) == timed
            off, on = min(took[False]), min(took[True])
            rows.append(
                [f"df.taskq.apply, {args.rows:,} rows, {args.workers} workers", f"{off:.3f}", f"{on:.3f}",
                 f"{(on - off) / args.rows * 1e9:+.0f} ns", f"{on / off:.3f}"]
            )  # fmt: skip
            figures.append(f"FIGURE row_timing_apply_ratio={on / off:.3f}")
    title = (
        f"Per-row timing: {args.rows:,} calls, best of {args.rounds}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(table(title, ["what", "timing off s", "timing on s", "per row", "on / off"], rows))
    print()
    for line in figures:
        print(line)


if __name__ == "__main__":
    main()
