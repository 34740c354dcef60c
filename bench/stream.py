"""Jobs that stream: how soon a yielded item reaches a reader, and items/s next to one plain result.

    python -m bench.stream            # --n 200 --gap 0.01 --items 100000

One embedded server and one worker process, in one run:

- item latency: an async generator yields ``--n`` timestamps ``--gap`` s apart; the reader
  (``for item in job.stream()``) measures now - stamp for each (same machine, same clock);
- throughput: ``--items`` small ints yielded by a sync and an async generator, read with
  ``job.stream()`` from submit to the last item, vs a plain job returning the same list
  (submit -> ``result()``), and vs ``result()`` of the streaming job (its items as a list).

Compare ratios from one run; the machine's speed drifts.
"""

from __future__ import annotations

import argparse
import time

from taskq_sdk import Client

from ._harness import flush, percentile, server, table, taskq_worker


def item_latency(client: Client, n: int, gap: float) -> list[float]:
    lags = []
    for stamp in client.submit("stamped", n, gap).stream():
        lags.append(time.time() - stamp)
    return lags


def timed_stream(client: Client, fn: str, n: int) -> float:
    t0 = time.perf_counter()
    count = sum(1 for _ in client.submit(fn, n).stream())
    assert count == n, (fn, count)
    return time.perf_counter() - t0


def timed_result(client: Client, fn: str, n: int) -> float:
    t0 = time.perf_counter()
    assert len(client.submit(fn, n).result(timeout=300)) == n
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.01)
    parser.add_argument("--items", type=int, default=100_000)
    args = parser.parse_args()
    with server() as srv:
        flush(srv.url)
        with taskq_worker(srv.url, "bench.jobs", "bench.stream_jobs"), Client(srv.url) as client:
            client.submit("numbers_list", 10).result(timeout=60)  # warm up
            lags = item_latency(client, args.n, args.gap)
            plain = timed_result(client, "numbers_list", args.items)
            rows = [["plain job, result() of the list", f"{plain:.2f}", f"{args.items / plain:,.0f}", "1.00x"]]
            for label, fn, how in (
                ("sync generator, stream()", "numbers", timed_stream),
                ("async generator, stream()", "numbers_async", timed_stream),
                ("sync generator, result()", "numbers", timed_result),
            ):
                s = how(client, fn, args.items)
                rows.append([label, f"{s:.2f}", f"{args.items / s:,.0f}", f"{plain / s:.2f}x"])
    p50, p95 = percentile(lags, 0.5) * 1000, percentile(lags, 0.95) * 1000
    stream_s = float(rows[1][1])
    print(f"FIGURE stream_item_latency_p50_ms={p50:.2f}")
    print(f"FIGURE stream_items_per_s={args.items / stream_s:.0f}")
    print(f"FIGURE stream_vs_plain_result_time={stream_s / plain:.2f}")
    print(
        table(
            "yield -> reader",
            ["", "p50 ms", "p95 ms"],
            [[f"{args.n} items, {args.gap}s apart", f"{p50:.2f}", f"{p95:.2f}"]],
        )
    )
    print(table(f"{args.items:,} items", ["", "seconds", "items/s", "vs plain"], rows))


if __name__ == "__main__":
    main()
