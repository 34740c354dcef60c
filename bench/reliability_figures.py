"""Run the reliability, security and bad-input tests and write their figures to docs/RELIABILITY_FIGURES.md.

    python -m bench.reliability_figures            # fast tier (what CI runs)
    python -m bench.reliability_figures --full     # plus the heavy load and crash tests (-m heavy)

Each test prints ``FIGURE name=value`` lines; this collects them into one table, with the headline
numbers (lost jobs, concurrent duplicate executions, workers ended by a server reply, corrupt jobs left
unfailed, cross-tenant leaks, pickle payloads executed, passwords printed, SSRF requests reaching the
target) summed first.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADLINES = {
    # a plain submit acknowledged by a Sentinel primary that dies before its replica got the write is lost
    # by design (asynchronous replication): counted on a line of its own; durable submit stays a lost job
    "lost jobs": re.compile(r"^(?!sentinel_.*_plain_acked_lost$).*(^|_)lost$"),
    "plain submits lost to asynchronous replication (Sentinel failover with lagging replicas)": re.compile(
        r"^sentinel_.*_plain_acked_lost$"
    ),
    "concurrent duplicate executions": re.compile(r"duplicate_executions|_duplicated$|stale_ticks"),
    # an async job keeps running while its worker cannot reach the server (FENCING.md's known limit): the new
    # owner's copy overlaps it until the cut heals; counted apart from the duplicates fencing prevents
    "jobs whose copies overlapped while their worker was cut off (known limit, FENCING.md)": re.compile(
        r"jobs_with_copies_overlapping_during_cut$"
    ),
    "jobs run again after a server outage longer than the claim TTL (at-least-once, FENCING.md)": re.compile(
        r"^partition_server_.*_jobs_run_twice$"
    ),
    "workers ended by a server reply": re.compile(r"dead_workers$"),
    "corrupt jobs left unfailed": re.compile(r"jobs_left_unfailed$"),
    "cross-tenant leaks": re.compile(
        r"cross_tenant_leaks|forged_handle_reads|attacks_allowed|forged_handover_executions|forged_cancels_obeyed"
        r"|readable_by_others"
    ),
    "pickle payloads executed": re.compile(r"pickle_payloads_executed"),
    "passwords printed": re.compile(r"passwords_printed"),
    "SSRF requests reaching the target": re.compile(r"ssrf_requests_reaching_target"),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--full", action="store_true", help="include the heavy tier")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "RELIABILITY_FIGURES.md")
    args = p.parse_args()
    marker = "chaos or security or badinput or sentinel or netns or redis_cluster" + (" or heavy" if args.full else "")
    files = ["tests/test_chaos.py", "tests/test_load.py", "tests/test_tenancy.py", "tests/test_acl.py",
             "tests/test_wire_security.py", "tests/test_secrets.py", "tests/test_tls.py", "tests/test_badinput.py",
             "tests/test_video.py", "tests/test_worker_process.py", "tests/test_isolation.py",
             "tests/test_fencing.py", "tests/test_server_replies.py", "tests/test_tenant_namespace.py",
             "tests/test_tenant_escapes.py", "tests/test_input_limits.py", "tests/test_sentinel.py",
             "tests/test_sentinel_figures.py", "tests/test_hosts.py", "tests/test_partitions.py",
             "tests/test_redis_cluster.py", "tests/test_limits_faults.py", "tests/test_limits_shared.py",
             "tests/test_stream.py", "tests/test_upstream.py", "tests/test_upstream_faults.py",
             "tests/test_cache.py", "tests/test_stream_faults.py", "tests/test_name_collisions.py",
             "tests/test_hot_path.py"]  # fmt: skip
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-m", marker, *files]
    t0 = time.monotonic()
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, errors="replace")
    took = time.monotonic() - t0
    figures: dict[str, str] = {}
    for line in out.stdout.splitlines():
        m = re.search(r"FIGURE (\S+)=(\S+)", line)
        if m:
            figures[m.group(1)] = m.group(2)
    sums: dict[str, int] = defaultdict(int)
    for name, value in figures.items():
        for headline, pattern in HEADLINES.items():
            if pattern.search(name) and value.lstrip("-").isdigit():
                sums[headline] += int(value)
    summary = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "(no output)"
    lines = [
        "# Reliability figures",
        "",
        f"Made by `python -m bench.reliability_figures{' --full' if args.full else ''}` "
        f"({time.strftime('%Y-%m-%d')}, {took:.0f} s): `{summary}`",
        "",
        "| headline | total |",
        "|---|---|",
        *[f"| {h} | {sums.get(h, 0)} |" for h in HEADLINES],
        "",
        "How the fault figures are made: `*_duplicate_executions` and `*_stale_ticks` come from jobs that write",
        "one line per step; a stale tick is a step an older copy wrote after a newer copy started (server",
        "outages longer than the claim TTL, workers frozen with SIGSTOP, frozen idle workers). `*_dead_workers`",
        "count worker processes ended by BUSY, READONLY or corrupt keys (WRONGTYPE, non-numeric counters,",
        "absurd fields); `*_attacks_allowed`, `forged_*` and `*_reads` count what another tenant's",
        "credentials or a hand-published message achieved. What fencing does not cover is written down in",
        "[FENCING.md](FENCING.md).",
        "",
        "`sentinel_*` figures kill a Sentinel-managed primary at 50 % of a drain; `lagging` cuts the replicas' links",
        "0.5 s before, so writes the primary acknowledged never reach the replica that is promoted. A plain submit",
        "can then be lost (asynchronous replication); `_durable=True` waits for a replica (`WAIT`) and loses none.",
        "`ran_twice` jobs finished on the old primary, whose completion was lost with it, and ran again.",
        "`partition_*` figures cut a worker's or the server's host off in a network namespace (a blackhole, not a",
        "reset); `*_stale_finishes_accepted` counts outcomes a cut-off worker wrote over another worker's claim.",
        "",
        "| figure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(figures.items())],
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return out.returncode


if __name__ == "__main__":
    raise SystemExit(main())
