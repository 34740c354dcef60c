"""Server time of the submit scripts: SUBMIT per lone call and per row of a joined call, BULK_SUBMIT per row.

    python -m bench.submit_script                    # --n 2000 --gather 100 --map-n 5000 --rounds 3
    python -m bench.submit_script --base main        # also main's scripts, interleaved in one run

What the server spends inside the Lua scripts a submit runs: the scripts' own EVALSHA calls in the
slow log (threshold 0, reset before each run), per call and per row, and the server commands per row
(every ``cmdstat_*`` but the script's in ``INFO commandstats``; ``CONFIG RESETSTAT`` before each run).
Workloads, all through ``AsyncClient`` on an embedded server:

- ``lone``: ``--n`` submits one by one (``await client.submit("noop")``), no worker: one SUBMIT call,
  one row each;
- ``handed over``: ``--handed-n`` submits one by one to a warm idle worker process, each waiting for
  its result, so each job is handed straight to the worker by the script (the push path);
- ``gather``: ``--gather`` submits at a time with ``asyncio.gather``, no worker: they join one SUBMIT
  call of many rows (the first of each round goes out alone and is not counted);
- ``map``: ``client.map("noop", range(--map-n), chunk_size=1)``: BULK_SUBMIT calls (fresh ids), per row;
- ``map keyed``: the same with ``key=`` (content-hashed ids, so every row checks its id is free).

``--base REF`` loads the SUBMIT and BULK_SUBMIT texts of a git revision (``git show``) and runs them
as a second variant on the same server, interleaved with this tree's (base, this, this, base per
round), so the two compare in one run on this noisy machine. Figures are medians of ``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib.util
import re
import subprocess
import sys
from types import ModuleType
from typing import Any

import redis

from taskq_sdk import AsyncClient
from taskq_sdk._backend import batches, layout

from ._harness import ROOT, flush, median, server, table, taskq_worker

#: the scripts of this tree, as imported
HEAD = {"SUBMIT": layout.SUBMIT, "BULK_SUBMIT": batches.BULK_SUBMIT}


def _module_at(rev: str, path: str, name: str) -> ModuleType:
    """The module at ``path`` as of git revision ``rev``, loaded under ``name`` in its own package."""
    source = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True)
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "taskq_sdk._backend"
    sys.modules[name] = mod  # dataclasses look their module up while the source runs
    try:
        exec(compile(source.stdout, f"{rev}:{path}", "exec"), mod.__dict__)
    finally:
        del sys.modules[name]
    return mod


def scripts_at(rev: str) -> dict[str, str]:
    """The SUBMIT and BULK_SUBMIT texts of git revision ``rev``."""
    old_layout = _module_at(rev, "taskq_sdk/_backend/layout.py", "taskq_sdk._backend._bench_layout")
    old_batches = _module_at(rev, "taskq_sdk/_backend/batches.py", "taskq_sdk._backend._bench_batches")
    # batches.py builds BULK_SUBMIT on the imported (this tree's) prelude: put the revision's back
    bulk = old_batches.BULK_SUBMIT
    assert bulk.startswith(layout.PRELUDE)
    return {"SUBMIT": old_layout.SUBMIT, "BULK_SUBMIT": old_layout.PRELUDE + bulk[len(layout.PRELUDE) :]}


def use(scripts: dict[str, str]) -> None:
    """Make clients opened from now on register ``scripts`` (a Store reads them when it is built)."""
    layout.SUBMIT = scripts["SUBMIT"]
    batches.BULK_SUBMIT = scripts["BULK_SUBMIT"]


def script_stats(url: str) -> tuple[int, float, int]:
    """(evalsha calls, evalsha usec, other commands) since the last ``CONFIG RESETSTAT``."""
    r: Any = redis.Redis.from_url(url)
    try:
        stats: dict[str, Any] = r.info("commandstats")
    finally:
        r.close()
    ev = stats.get("cmdstat_evalsha", {"calls": 0, "usec": 0})
    skip = {"cmdstat_evalsha", "cmdstat_info", "cmdstat_config", "cmdstat_client", "cmdstat_hello", "cmdstat_ping"}
    skip |= {"cmdstat_subscribe", "cmdstat_ssubscribe", "cmdstat_psubscribe", "cmdstat_script", "cmdstat_slowlog"}
    inner = sum(int(v["calls"]) for k, v in stats.items() if k not in skip)
    return int(ev["calls"]), float(ev["usec"]), inner


def script_calls(url: str, sha: str) -> list[tuple[int, int]]:
    """(microseconds, arguments) of each EVALSHA of script ``sha`` since :func:`reset` (slow log, threshold 0)."""
    r: Any = redis.Redis.from_url(url)
    try:
        entries = r.execute_command("SLOWLOG", "GET", "-1")
    finally:
        r.close()
    out = []
    for entry in entries:
        argv = entry[3]
        if argv[0].upper() != b"EVALSHA" or argv[1].decode() != sha:
            continue
        more = re.match(rb"\.\.\. \((\d+) more arguments\)", argv[-1])
        out.append((int(entry[2]), len(argv) - 1 + int(more.group(1)) if more else len(argv)))
    return out


def reset(url: str) -> None:
    """Zero the command statistics and the slow log, which from now on records every command."""
    r: Any = redis.Redis.from_url(url)
    try:
        r.config_set("slowlog-log-slower-than", 0)
        r.config_set("slowlog-max-len", 100_000)
        r.config_resetstat()
        r.slowlog_reset()
    finally:
        r.close()


def submit_rows(argc: int) -> int:
    """Rows of a SUBMIT call with ``argc`` arguments (EVALSHA, sha, numkeys 0, the header, the rows)."""
    return (argc - 3 - layout.SUBMIT_HEADER) // layout.SUBMIT_STRIDE


def sha(text: str) -> str:
    """The id the server gives a script (SHA-1 of its text), as in EVALSHA."""
    return hashlib.sha1(text.encode()).hexdigest()


async def run_workload(url: str, kind: str, n: int, gather: int) -> tuple[float, float, float | None]:
    """One workload; returns (usec per script call, rows per call, server commands per row or None).

    ``gather`` counts only its joined calls (the first submit of each round goes out alone);
    ``handed over`` counts no server commands (the worker's own scripts run in the same window).
    """
    async with AsyncClient(url) as client:
        await client.submit("noop")  # warm: connection, scripts loaded, reply channel
        if kind.startswith("map"):
            await client.map("noop", [-1], chunk_size=1)
        reset(url)
        rows = n
        if kind == "lone":
            for _ in range(n):
                await client.submit("noop")
        elif kind == "handed over":
            for _ in range(n):
                await (await client.submit("noop")).result(timeout=30)
        elif kind == "gather":
            for _ in range(0, n, gather):
                await asyncio.gather(*(client.submit("noop") for _ in range(gather)))
        else:
            key = "bench-keyed" if kind == "map keyed" else None
            batch = await client.map("noop", range(n), chunk_size=1, key=key)
            rows = batch.size
        _, _, inner = script_stats(url)
        timed = script_calls(url, sha(batches.BULK_SUBMIT if kind.startswith("map") else layout.SUBMIT))
    cmds = None if kind == "handed over" else inner / max(rows, 1)
    us = sum(t for t, _ in timed)
    if kind.startswith("map"):
        return us / max(len(timed), 1), rows / max(len(timed), 1), cmds
    if kind == "gather":
        timed = [(t, argc) for t, argc in timed if submit_rows(argc) > 1]
        us = sum(t for t, _ in timed)
    rows_n = sum(submit_rows(argc) for _, argc in timed)
    return us / max(len(timed), 1), rows_n / max(len(timed), 1), cmds


KINDS = ("lone", "handed over", "gather", "map", "map keyed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="submits per lone / gather run")
    ap.add_argument("--gather", type=int, default=100)
    ap.add_argument("--map-n", type=int, default=5000)
    ap.add_argument("--handed-n", type=int, default=500, help="submits handed over to an idle worker, one by one")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--base", default=None, help="a git revision whose scripts run interleaved with this tree's")
    args = ap.parse_args()
    variants: dict[str, dict[str, str]] = {"this tree": HEAD}
    if args.base:
        variants = {f"base {args.base}": scripts_at(args.base), "this tree": HEAD}
    order = list(variants) + list(reversed(variants))
    runs: dict[tuple[str, str], list[tuple[float, float, float | None]]] = {}
    with server() as srv:
        url = srv.url
        for _ in range(args.rounds):
            for label in order:
                use(variants[label])
                for kind in KINDS:
                    flush(url)
                    n = args.map_n if kind.startswith("map") else args.handed_n if kind == "handed over" else args.n
                    with taskq_worker(url, "bench.noop_jobs") if kind == "handed over" else contextlib.nullcontext():
                        got = asyncio.run(run_workload(url, kind, n, args.gather))
                    runs.setdefault((label, kind), []).append(got)
        version = srv.version
    use(HEAD)
    out = []
    figures: dict[str, float] = {}
    for kind in KINDS:
        for label in variants:
            done = runs[(label, kind)]
            us_call = median([g[0] for g in done])
            per_call = median([g[1] for g in done])
            counted = [g[2] for g in done if g[2] is not None]
            cmds = f"{median(counted):.2f}" if counted else "-"
            us_row = us_call / per_call
            out.append([kind, label, f"{us_call:,.1f}", f"{per_call:,.0f}", f"{us_row:.2f}", cmds])
            if label == "this tree":
                slug = kind.replace(" ", "_")
                figures[f"submit_script_{slug}_us_per_row"] = us_row
    print(
        table(
            f"Server time in the submit scripts (SLOWLOG, INFO commandstats; median of {args.rounds}; {version})",
            ["workload", "scripts", "us / script call", "rows / call", "us / row", "server cmds / row"],
            out,
        )
    )
    print()
    for name, value in figures.items():
        print(f"FIGURE {name}={value:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
