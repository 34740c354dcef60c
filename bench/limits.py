"""Rate limit across workers: 4 worker processes x ARQ_MAX_JOBS=20 run 2,000 jobs under one 100/s limit.

    python -m bench.limits                # --n 2000 --workers 4 --max-jobs 20

Prints the highest number of job starts in any 1 s window (the limit is 100/s with the default
burst of 10: at most 110), the total time against the ideal (n - burst) / rate, whether every
job ran exactly once and how many were lost (submitted, never ran). Starts are read from what each
job recorded in the server (tests/limit_jobs.py). Then ``--conc-n`` 10 ms jobs share a key of 3
permits on the same workers: the jobs running at once, sampled every 10 ms (never 4), and the most
spans open at one instant.
"""

from __future__ import annotations

import argparse
import bisect
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import redis

from taskq_sdk import Client
from taskq_sdk.limits import default_burst, parse_rate

from ._harness import flush, server, table, taskq_worker

RATE = "100/s"  # the rate of tests.limit_jobs.hundred_per_second
SPANS = "limtest:spans"
RUNNING = "limtest:running"  # jobs of tests.limit_jobs inside their function right now


def max_in_window(starts: list[float], window: float = 1.0) -> int:
    """The most starts in any half-open window [t, t + window) that begins at a start."""
    starts = sorted(starts)
    return max((bisect.bisect_left(starts, s + window) - i for i, s in enumerate(starts)), default=0)


@contextmanager
def workers_running(url: str, r: Any, workers: int, max_jobs: int) -> Iterator[None]:
    """``workers`` worker processes serving tests.limit_jobs, all heartbeating, for the block."""
    with ExitStack() as stack:
        for _ in range(workers):
            stack.enter_context(taskq_worker(url, "tests.limit_jobs", ARQ_MAX_JOBS=str(max_jobs)))
        deadline = time.monotonic() + 60
        while r.zcard("taskq:workers") < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        yield


def run(url: str, n: int, workers: int, max_jobs: int) -> dict[str, float]:
    flush(url)
    r: Any = redis.Redis.from_url(url)
    with workers_running(url, r, workers, max_jobs), Client(url) as client:
        t0 = time.time()
        batch = client.map("hundred_per_second", [f"b{i}" for i in range(n)], chunk_size=1)
        results = batch.results(timeout=600)
        t1 = time.time()
        limits = client.metrics().limits
    spans = [x.decode().split() for x in r.lrange(SPANS, 0, -1)]
    # when each job was admitted: the claim that ran it (its meta's 'started', set by the server script)
    pipe = r.pipeline(transaction=False)
    for key in r.scan_iter(match="taskq:t:default:job:*", count=1000):
        pipe.hget(key, "started")
    admitted = [int(v) / 1000 for v in pipe.execute() if v]
    r.close()
    starts = [float(s[0]) for s in spans]
    rate = parse_rate(RATE)
    burst = default_burst(rate)
    ideal = (n - burst) / rate.per_second
    return {
        "n": n,
        "results": len(results),
        "ran": len(spans),
        "once": len({s[3] for s in spans}) == len(spans) == n and all(s[2] == "1" for s in spans),
        "lost": n - len({s[3] for s in spans}),
        "peak": max_in_window(starts),
        "admitted_peak": max_in_window(admitted),
        "total": t1 - t0,
        "first_to_last": max(starts) - min(starts),
        "ideal": ideal,
        "burst": burst,
        "waited": limits.get("fn:hundred_per_second", {}).get("waited", 0),
    }


def max_overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def run_concurrency(url: str, n: int, workers: int, max_jobs: int, permits: int) -> dict[str, float]:
    """``n`` 10 ms jobs sharing one key of ``permits`` permits: the most running at once, the time."""
    flush(url)
    r: Any = redis.Redis.from_url(url)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:  # the jobs inside their function, every 10 ms
        sampler: Any = redis.Redis.from_url(url)
        while not stop.wait(0.01):
            samples.append(int(sampler.get(RUNNING) or 0))
        sampler.close()

    with workers_running(url, r, workers, max_jobs), Client(url) as client:
        client.set_limit("bench", concurrency=permits)
        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        t0 = time.time()
        items = [f"c{i}" for i in range(n)]
        batch = client.map("limited_call", items, kwargs={"seconds": 0.01}, _limit_key="bench", chunk_size=1)
        results = batch.results(timeout=600)
        took = time.time() - t0
        stop.set()
        watcher.join(5)
        waited = client.metrics().limits.get("key:bench", {}).get("waited", 0)
    spans = [x.decode().split() for x in r.lrange(SPANS, 0, -1)]
    r.close()
    return {
        "results": len(results),
        "sampled_peak": max(samples, default=0),
        "samples": len(samples),
        "peak": max_overlap([(float(s[0]), float(s[1])) for s in spans]),
        "took": took,
        "ideal": n * 0.01 / permits,
        "waited": waited,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--max-jobs", type=int, default=20)
    p.add_argument("--conc-n", type=int, default=300, help="jobs in the concurrency run (0: skip it)")
    args = p.parse_args()
    with server() as srv:
        f = run(srv.url, args.n, args.workers, args.max_jobs)
        c = run_concurrency(srv.url, args.conc_n, args.workers, args.max_jobs, 3) if args.conc_n else None
    rows = [
        ["jobs submitted / results / runs", f"{f['n']} / {f['results']} / {f['ran']}"],
        ["every job ran exactly once, first attempt", "yes" if f["once"] else "NO"],
        ["lost (submitted, never ran)", f"{f['lost']}"],
        [
            f"most admissions (claims that ran) in any 1 s window (limit {RATE} + burst {f['burst']})",
            f"{f['admitted_peak']}",
        ],
        [f"most starts in any 1 s window (limit {RATE} + burst {f['burst']})", f"{f['peak']}"],
        ["total time, submit to last result (s)", f"{f['total']:.2f}"],
        ["first start to last start (s)", f"{f['first_to_last']:.2f}"],
        ["ideal (n - burst) / rate (s)", f"{f['ideal']:.2f}"],
        ["total / ideal", f"{f['total'] / f['ideal']:.3f}x"],
        ["times a job was put back to wait", f"{f['waited']}"],
    ]
    print(
        table(
            f"Rate limit {RATE}: {args.workers} workers x ARQ_MAX_JOBS={args.max_jobs}, {args.n} jobs",
            ["figure", "value"],
            rows,
        )
    )
    print(f"FIGURE limits_peak_1s_window {f['peak']}")
    print(f"FIGURE limits_admitted_peak_1s_window {f['admitted_peak']}")
    print(f"FIGURE limits_total_vs_ideal {f['total'] / f['ideal']:.3f}")
    print(f"FIGURE limits_lost {f['lost']}")
    if c is None:
        return
    rows = [
        ["jobs / results", f"{args.conc_n} / {c['results']}"],
        ["most running at once, sampled every 10 ms (limit 3)", f"{c['sampled_peak']} ({c['samples']} samples)"],
        ["most spans open at one instant (limit 3)", f"{c['peak']}"],
        ["total time (s)", f"{c['took']:.2f}"],
        ["ideal n x 10 ms / 3 (s)", f"{c['ideal']:.2f}"],
        ["times a job was put back to wait", f"{c['waited']}"],
    ]
    print()
    print(
        table(
            f"Concurrency key of 3: {args.workers} workers x ARQ_MAX_JOBS={args.max_jobs}, 10 ms jobs",
            ["figure", "value"],
            rows,
        )
    )
    print(f"FIGURE limits_concurrency_peak {c['peak']}")
    print(f"FIGURE limits_concurrency_sampled_peak {c['sampled_peak']}")


if __name__ == "__main__":
    main()
