"""How long a high-priority job waits behind a queue of 10,000, with and without ``_priority``.

    python -m bench.priority            # --queued 10000 --workers 2 --rounds 3

A LocalCluster's worker processes drain ``--queued`` trivial jobs submitted at once (``client.map``
with ``chunk_size=1``, one job each); right after, one more job is submitted, once with
``_priority=1`` and once without, and its wait is the time from its submit until it started. Without
a priority it waits for the queue ahead of it (arq's order: due time); with one it starts as soon as
a worker slot frees.
"""

from __future__ import annotations

import argparse
import os
import time

from taskq_sdk import LocalCluster

from ._harness import table


def tick(x: int) -> int:
    """A trivial job."""
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queued", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    waits: dict[str, list[float]] = {"with _priority=1": [], "without": []}
    with LocalCluster(n_workers=args.workers) as cluster:
        client = cluster.client()
        cluster.job(tick)
        assert client.map("tick", list(range(20)), chunk_size=1).results(timeout=120) == list(range(20))
        for _ in range(args.rounds):
            for label, options in (("with _priority=1", {"_priority": 1}), ("without", {})):
                queued = client.map("tick", list(range(args.queued)), chunk_size=1)
                submitted = time.time()
                job = client.submit("tick", -1, **options)
                assert job.result(timeout=600) == -1
                started = job.info().started_at
                assert started is not None
                waits[label].append(started.timestamp() - submitted)
                queued.wait(timeout=600)
    best = {label: min(values) for label, values in waits.items()}
    rows = [[label, f"{best[label] * 1000:.1f}", ", ".join(f"{v * 1000:.0f}" for v in waits[label])] for label in waits]
    title = (
        f"wait of one job submitted behind {args.queued:,} queued trivial jobs, {args.workers} worker processes, "
        f"best of {args.rounds} ({os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f})"
    )
    print(table(title, ["job", "wait ms (best)", "all rounds ms"], rows))
    ratio = best["without"] / max(best["with _priority=1"], 1e-6)
    print(f"\nFIGURE priority_wait_ms={best['with _priority=1'] * 1000:.1f}")
    print(f"FIGURE priority_wait_without_ms={best['without'] * 1000:.1f}")
    print(f"FIGURE priority_wait_ratio={ratio:.0f}")


if __name__ == "__main__":
    main()
