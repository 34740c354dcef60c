"""CPU-bound notebook function: fanned over a LocalCluster's worker processes vs run in this process.

    python -m bench.cpu_fanout            # --calls 400 --ms 5 --workers 2 --rounds 5 --chunk 20
    python -m bench.cpu_fanout --quick    # skip the 100,000-row and the 2 s x 8 cases

The function is defined here, in ``__main__``, as in a notebook cell, and registered with
``@cluster.job``: it travels to the worker subprocesses by value. Each call is a pure-Python loop
of about ``--ms`` milliseconds (the GIL-holding kind a thread pool cannot spread). The in-process
time is the same calls in a loop; the cluster time is submitting them all (``client.map``) until
the last result arrived: one job per call, ``--chunk`` calls per job (which pays the per-job
cost of the queue once per chunk), and no ``chunk_size`` at all (``"auto"``: sizes from measured item
times). Cluster start-up is reported apart, not counted.

One more auto run with ``timing=True`` says where its time went: the busiest worker's computing (and
the milliseconds per call in the workers next to the kernel's) versus the queue, the probe and the
results. On this shared 2-core machine the gap to 2x is mostly the calls themselves running slower in the
workers than in the kernel's loop (other processes on the cores), not the queue.

Two more cases of ``chunk_size="auto"`` in the same run: a ~50 us function over 100,000 rows through
``df.taskq.apply`` vs ``df.apply`` (the difference in seconds), and a 2 s function over 8 items (one
item per job: both workers busy, about 4 rounds of 2 s).
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd

from taskq_sdk import LocalCluster

from ._harness import table


def burn(n: int) -> int:
    """A CPU-bound call: a pure-Python loop (holds the GIL throughout)."""
    total = 0
    for i in range(n):
        total += (i * i) % 7
    return total


def nap(seconds: float) -> float:
    """A slow call that waits (an API call, a model): the 2 s x 8 case."""
    time.sleep(seconds)
    return seconds


def calibrate(ms: float) -> int:
    """Loop length that takes about ``ms`` milliseconds here."""
    n = 10_000
    while True:
        start = time.perf_counter()
        burn(n)
        took = time.perf_counter() - start
        if took > 0.02:
            return max(1, int(n * ms / 1000 / took))
        n *= 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--ms", type=float, default=5.0, help="milliseconds of CPU per call")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-jobs", type=int, default=1, help="jobs at once per worker process")
    ap.add_argument("--chunk", type=int, default=20, help="calls per job in the chunked fan-out")
    ap.add_argument("--rows", type=int, default=100_000, help="rows of the ~50 us df.taskq.apply case")
    ap.add_argument("--quick", action="store_true", help="only the --calls cases")
    args = ap.parse_args()
    n = calibrate(args.ms)
    n_small = calibrate(0.05)
    expected = [burn(n)] * args.calls

    started = time.perf_counter()
    with LocalCluster(n_workers=args.workers, max_jobs=args.max_jobs) as cluster:
        startup = time.perf_counter() - started
        client = cluster.client()
        cluster.job(burn)
        assert client.map("burn", [n] * 20).results(timeout=120) == [expected[0]] * 20  # warm: every worker loaded it

        times: dict[str, list[float]] = {"local": [], "per_call": [], "chunked": [], "auto": []}
        auto_sizes: list[int] = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            assert [burn(n) for _ in range(args.calls)] == expected
            times["local"].append(time.perf_counter() - start)

            start = time.perf_counter()
            assert client.map("burn", [n] * args.calls, chunk_size=1).results(timeout=600) == expected
            times["per_call"].append(time.perf_counter() - start)

            start = time.perf_counter()
            assert client.map("burn", [n] * args.calls, chunk_size=args.chunk).results(timeout=600) == expected
            times["chunked"].append(time.perf_counter() - start)

            start = time.perf_counter()
            batch = client.map("burn", [n] * args.calls)
            assert batch.results(timeout=600) == expected
            times["auto"].append(time.perf_counter() - start)
            auto_sizes = batch.chunk_sizes

        # where the time of an auto run goes, from its own per-row timing (one more run, not counted above)
        start = time.perf_counter()
        timed = client.map("burn", [n] * args.calls, timing=True)
        assert timed.results(timeout=600) == expected
        timed_total = time.perf_counter() - start
        rows = timed.to_frame()
        busiest = rows.groupby("taskq_worker", observed=True)["taskq_duration_s"].sum().max()
        worker_ms = rows["taskq_duration_s"].mean() * 1000
        local_ms = min(times["local"]) / args.calls * 1000
        where = (
            f"where an auto run's {timed_total:.3f}s went (timing=True): the busiest worker computed {busiest:.3f}s "
            f"({worker_ms:.2f} ms per call in the workers vs {local_ms:.2f} ms in the kernel's loop); queue, probe and "
            f"results: {timed_total - busiest:.3f}s"
        )

        extra: list[str] = []
        if not args.quick:
            df = pd.DataFrame({"n": [n_small] * args.rows})
            start = time.perf_counter()
            local_frame = df["n"].apply(burn)
            frame_local = time.perf_counter() - start
            start = time.perf_counter()
            out = df.taskq.apply(burn, column="n", client=client, progress=False)
            frame_taskq = time.perf_counter() - start
            assert out["burn"].tolist() == local_frame.tolist()
            frame_jobs = out.attrs["taskq"].get("chunk_size")
            cluster.job(nap)
            start = time.perf_counter()
            naps = client.map("nap", [2.0] * 8)
            assert naps.results(timeout=120) == [2.0] * 8
            nap_time = time.perf_counter() - start
            extra = [
                f"\n{args.rows:,} calls of a ~50 us function: df.apply {frame_local:.2f}s, df.taskq.apply "
                f"(chunk_size auto, largest chunk {frame_jobs}) {frame_taskq:.2f}s: {frame_taskq - frame_local:+.2f}s",
                f"8 calls of a 2 s function, chunk_size auto: {nap_time:.2f}s = {nap_time / 2:.1f} rounds of 2 s "
                f"(chunk sizes {naps.chunk_sizes})",
                f"FIGURE cpu_fanout_frame_auto_extra_s={frame_taskq - frame_local:.2f}",
                f"FIGURE cpu_fanout_slow8_rounds={nap_time / 2:.1f}",
            ]

    # best of the rounds: other processes on the machine only ever make a round slower
    local, per_call, chunked, auto = (min(times[k]) for k in ("local", "per_call", "chunked", "auto"))
    rows = [
        ["in this process (a loop)", 1, f"{local:.3f}", f"{local / args.calls * 1000:.2f}", "1.00x"],
    ]
    for label, jobs, took in (
        (f"{args.workers} worker processes, one job per call", args.calls, per_call),
        (f"{args.workers} worker processes, {args.chunk} calls per job", -(-args.calls // args.chunk), chunked),
        (f"{args.workers} worker processes, chunk_size auto", len(auto_sizes), auto),
    ):
        rows.append([label, jobs, f"{took:.3f}", f"{took / args.calls * 1000:.2f}", f"{local / took:.2f}x"])
    title = (
        f"{args.calls} calls of a ~{args.ms:g} ms pure-Python notebook function, best of {args.rounds} rounds, "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} (cluster start-up {startup:.2f}s, not counted)"
    )
    print(table(title, ["where", "jobs", "seconds", "ms per call", "speed-up"], rows))
    print(f"auto chunk sizes (last round): {auto_sizes}")
    print(where)
    print(f"\nFIGURE cpu_fanout_speedup_chunked={local / chunked:.2f}")
    print(f"FIGURE cpu_fanout_speedup_per_call={local / per_call:.2f}")
    print(f"FIGURE cpu_fanout_speedup_auto={local / auto:.2f}")
    print(f"FIGURE cpu_fanout_auto_overhead_s={timed_total - busiest:.3f}")
    for line in extra:
        print(line)


if __name__ == "__main__":
    main()
