"""The quickstart outside a notebook: a local cluster, progress, a cancel, a failure, a retry.

python examples/quickstart.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # so workers can import examples.jobs

from taskq_sdk import JobCancelled, JobFailed, LocalCluster


def main() -> None:
    with LocalCluster(n_workers=2, jobs=["examples.jobs"]) as cluster:
        client = cluster.client()
        print(cluster)

        print("word_count ->", client.submit("word_count", "the cat saw the other cat").result(timeout=30))

        job = client.submit("crunch", 40)
        print("crunch ->", job.wait(progress=True))
        print("   ", job.info().attempts, "attempt(s) on", job.info().worker)

        doomed = client.submit("crunch", 10_000)
        print("cancel ->", doomed.cancel())
        try:
            doomed.result(timeout=30)
        except JobCancelled as exc:
            print("   ", exc)

        bad = client.submit("word_count", 12345)  # not a str: AttributeError on the worker
        try:
            bad.result(timeout=30)
        except JobFailed as exc:
            print("failure ->", exc.remote_type, "-", exc.remote_message)
            print(exc.remote_traceback.strip().splitlines()[-1])

        retried = client.submit("flaky_fetch", "https://example.com/data")
        print("retries ->", retried.result(timeout=30), f"({retried.info().attempts} attempts)")
        again = bad.retry()
        print("manual retry ->", again.id, "retry_of", again.info().retry_of == bad.id)


if __name__ == "__main__":
    main()
