"""Where the time of one submit goes, next to arq's and huey's enqueue, measured in one run.

    python -m bench.submit_profile          # --n 3000 --rounds 3; huey too when .peers-venv exists

A one-by-one submit's wall time per call, taken apart into what any client pays and what taskq adds:

- **round-trip floor**: a ``PING`` and its reply, through redis-py's blocking client (what huey's
  enqueue rides on) and through the ``AsyncClient``'s own connection (its auto-pipeline, which every
  submit uses). This is system calls and process wake-ups: no client can submit faster than this.
- **server time**: what the server spends in the SUBMIT script per call (``INFO commandstats``, its
  ``EVALSHA`` calls, reset before each run; the script's own commands are inside that figure).
- **client Python**: the rest of an ``AsyncClient.submit`` (options, id, encoding, the handle).
- **thread hand-off**: ``Client`` runs each call on its event-loop thread; a bare call of a coroutine
  that does nothing measures the hand-off alone.

Beside them, in the same rounds: arq's ``enqueue_job`` and huey's enqueue (the peer's own client, in
``.peers-venv``; skipped without it: ``python -m bench.peers --install`` creates it). No worker runs.
Rounds are interleaved, their order reversed every other round; figures are medians of ``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import redis

from taskq_sdk import AsyncClient, Client

from . import submit_rate
from ._harness import ROOT, flush, server, table

PEERS_PYTHON = ROOT / ".peers-venv" / "bin" / "python"


def _cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def _server_us(r: redis.Redis) -> tuple[float, int]:
    """Microseconds the server spent in EVALSHA since the last reset, and how many calls."""
    info: dict[str, Any] = r.info("commandstats")  # type: ignore[assignment]
    stats = info.get("cmdstat_evalsha", {})
    return float(stats.get("usec", 0)), int(stats.get("calls", 0))


def ping_sync(url: str, n: int) -> dict[str, float]:
    r = redis.Redis.from_url(url)
    try:
        r.ping()
        c0, t0 = _cpu(), time.perf_counter()
        for _ in range(n):
            r.ping()
        return {"wall": (time.perf_counter() - t0) / n * 1e6, "cpu": (_cpu() - c0) / n * 1e6}
    finally:
        r.close()


async def _ping_async(url: str, n: int) -> dict[str, float]:
    async with AsyncClient(url) as client:
        await client.submit("noop")  # opens the connection every submit uses
        auto = client._core.open().auto
        assert auto is not None, "the AsyncClient has no auto-pipeline connection"
        await auto.execute("PING")
        c0, t0 = _cpu(), time.perf_counter()
        for _ in range(n):
            await auto.execute("PING")
        return {"wall": (time.perf_counter() - t0) / n * 1e6, "cpu": (_cpu() - c0) / n * 1e6}


async def _submit_async(url: str, n: int) -> dict[str, float]:
    r = redis.Redis.from_url(url)
    try:
        async with AsyncClient(url) as client:
            await client.submit("noop")  # warm: connection, script, reply channel
            r.config_resetstat()
            c0, t0 = _cpu(), time.perf_counter()
            for _ in range(n):
                await client.submit("noop")
            wall, cpu = (time.perf_counter() - t0) / n * 1e6, (_cpu() - c0) / n * 1e6
        usec, calls = _server_us(r)
        return {"wall": wall, "cpu": cpu, "server": usec / max(calls, 1)}
    finally:
        r.close()


async def _noop() -> None:
    return None


def handoff(url: str, n: int) -> dict[str, float]:
    with Client(url) as client:
        portal = client.portal
        portal.call(_noop)
        c0, t0 = _cpu(), time.perf_counter()
        for _ in range(n):
            portal.call(_noop)
        return {"wall": (time.perf_counter() - t0) / n * 1e6, "cpu": (_cpu() - c0) / n * 1e6}


def submit_sync(url: str, n: int) -> dict[str, float]:
    with Client(url) as client:
        client.submit("noop")
        c0, t0 = _cpu(), time.perf_counter()
        for _ in range(n):
            client.submit("noop")
        return {"wall": (time.perf_counter() - t0) / n * 1e6, "cpu": (_cpu() - c0) / n * 1e6}


def arq_enqueue(url: str, n: int) -> dict[str, float]:
    return {"wall": 1e6 / asyncio.run(submit_rate.arq_rate(url, n, 1))}


def huey_enqueue(url: str, n: int) -> dict[str, float]:
    from .peers import run_peer

    res = run_peer(PEERS_PYTHON, url, "huey", "submit", "defaults", ["--n", str(n), "--concurrent", "1"], 1)
    return {"wall": 1e6 / float(res["one_by_one"])}


CASES: dict[str, Callable[[str, int], dict[str, float]]] = {
    "PING, redis-py blocking client": ping_sync,
    "PING, AsyncClient's connection": lambda u, n: asyncio.run(_ping_async(u, n)),
    "AsyncClient.submit": lambda u, n: asyncio.run(_submit_async(u, n)),
    "Client hand-off alone": handoff,
    "Client.submit": submit_sync,
    "arq enqueue_job": arq_enqueue,
    "huey enqueue": huey_enqueue,
}


def measure(url: str, n: int, rounds: int, names: list[str]) -> dict[str, dict[str, list[float]]]:
    """Run the cases ``rounds`` times, interleaved (the order reversed every other round)."""
    out: dict[str, dict[str, list[float]]] = {name: {} for name in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else list(reversed(names)):
            flush(url)
            for key, value in CASES[name](url, n).items():
                out[name].setdefault(key, []).append(value)
    return out


def _med(runs: dict[str, dict[str, list[float]]], name: str, key: str = "wall") -> float | None:
    values = runs.get(name, {}).get(key)
    return statistics.median(values) if values else None


def report(runs: dict[str, dict[str, list[float]]], n: int, rounds: int, version: str) -> str:
    """The per-call table and the decomposition of the two submits (``FIGURE`` lines printed too)."""
    rows = []
    for name, figures in runs.items():
        wall = figures["wall"]
        cpu = f"{statistics.median(figures['cpu']):.1f}" if "cpu" in figures else ""
        server_us = f"{statistics.median(figures['server']):.1f}" if "server" in figures else ""
        rows.append([name, f"{statistics.median(wall):.1f}", f"{min(wall):.0f}-{max(wall):.0f}", cpu, server_us])
        slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")  # one FIGURE name per row
        print(f"FIGURE submit_profile_{slug}_us={statistics.median(wall):.1f}")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    text = table(
        f"Where a one-by-one submit's time goes: microseconds per call, {n:,} calls, median of {rounds} "
        f"interleaved rounds (server {version}; no worker; load {load})",
        ["what", "us per call", "range", "client CPU us", "server us"],
        rows,
    )
    floor, submit = _med(runs, "PING, AsyncClient's connection"), _med(runs, "AsyncClient.submit")
    script = _med(runs, "AsyncClient.submit", "server")
    lines = []
    if floor is not None and submit is not None and script is not None:
        python = submit - floor - script
        lines.append(
            f"- `AsyncClient.submit` {submit:.0f} us = round-trip floor {floor:.0f} + SUBMIT on the server "
            f"{script:.0f} + client Python {python:.0f}."
        )
        hand, sync = _med(runs, "Client hand-off alone"), _med(runs, "Client.submit")
        if hand is not None and sync is not None:
            lines.append(
                f"- `Client.submit` {sync:.0f} us = `AsyncClient.submit` {submit:.0f} + thread hand-off {hand:.0f}"
                f" + {sync - submit - hand:.0f} more."
            )
        arq = _med(runs, "arq enqueue_job")
        if arq is not None:
            lines.append(
                f"- arq's `enqueue_job` {arq:.0f} us (three round trips): `AsyncClient` {arq / submit:.2f}x its rate"
                + (f", `Client` {arq / sync:.2f}x." if sync is not None else ".")
            )
        huey, sync_floor = _med(runs, "huey enqueue"), _med(runs, "PING, redis-py blocking client")
        if huey is not None and sync_floor is not None:
            lines.append(
                f"- huey's enqueue {huey:.0f} us = blocking round-trip floor {sync_floor:.0f} + "
                f"{huey - sync_floor:.0f} (its Python and one LPUSH). `AsyncClient` runs at {huey / submit:.2f}x "
                "huey's rate. To match it, "
                f"SUBMIT's server time and the client's Python would have to fit in {max(huey - floor, 0):.0f} us "
                f"(huey's call less this connection's floor); they take {script + python:.0f}."
            )
    return text + ("\n\n" + "\n".join(lines) if lines else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-huey", action="store_true", help="leave huey out even when .peers-venv exists")
    args = ap.parse_args()
    names = list(CASES)
    if args.no_huey or not PEERS_PYTHON.exists():
        names.remove("huey enqueue")
        if not args.no_huey:
            print("huey left out: no .peers-venv (python -m bench.peers --install creates it)", file=sys.stderr)
    with server() as srv:
        runs = measure(srv.url, args.n, args.rounds, names)
        version = srv.version or "?"
    print(report(runs, args.n, args.rounds, version))


if __name__ == "__main__":
    main()
