"""Run one peer measurement in the peers venv and print its figures as one ``RESULT {json}`` line.

    python bench/peers/run_peer.py PEER latency --n 200 --slow-n 40 --warmup 20
    python bench/peers/run_peer.py PEER drain --n 5000 --timeout 240
    python bench/peers/run_peer.py PEER submit --n 2000 --concurrent 100

PEER is saq, huey, dramatiq or taskiq (module ``PEER_app`` beside this file); REDIS_URL,
PEERS_SETTING and PEERS_CONCURRENCY come from the environment (bench/peers.py sets them).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import signal
import sys
import time
from importlib.metadata import version
from types import FrameType
from typing import Any

from _common import SETTING, drain, measure, sync_redis, wait_ready, worker

PEERS = ("saq", "huey", "dramatiq", "taskiq")


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop the worker


async def _latency(app: Any, n: int, slow_n: int, warmup: int) -> dict[str, Any]:
    cmd, env = app.worker_cmd()
    with worker(cmd, env) as proc:
        if hasattr(app, "ready"):
            wait_ready(app.ready, proc)
        async with app.client() as one:
            result: dict[str, Any] = await measure(one, n, slow_n, warmup, proc)
            return result


async def _submit(app: Any, n: int, concurrent: int) -> dict[str, Any]:
    """Enqueue rates with no worker running: one by one, and ``concurrent`` at a time with asyncio.gather."""
    out: dict[str, Any] = {}
    async with app.submitter() as (one, gatherable):
        await one()  # warm: connection, scripts
        t0 = time.perf_counter()
        for _ in range(n):
            await one()
        out["one_by_one"] = n / (time.perf_counter() - t0)
        if gatherable:
            t0 = time.perf_counter()
            for _ in range(0, n, concurrent):
                await asyncio.gather(*(one() for _ in range(concurrent)))
            out["gather"] = n / (time.perf_counter() - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("peer", choices=PEERS)
    p.add_argument("what", choices=("latency", "drain", "submit"))
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--slow-n", type=int, default=40)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--timeout", type=float, default=240.0)
    p.add_argument("--concurrent", type=int, default=100)
    args = p.parse_args()
    signal.signal(signal.SIGTERM, _sigterm)
    app = importlib.import_module(f"{args.peer}_app")
    out: dict[str, Any] = {"version": version(app.PACKAGE), "setting": app.SETTINGS[SETTING]}
    if args.what == "latency":
        out.update(asyncio.run(_latency(app, args.n, args.slow_n, args.warmup)))
    elif args.what == "submit":
        out.update(asyncio.run(_submit(app, args.n, args.concurrent)))
    elif SETTING not in app.DRAIN_SETTINGS:
        out["drain_same_as"] = "defaults"
    else:
        asyncio.run(app.enqueue(args.n))
        cmd, env = app.worker_cmd()
        out.update(drain(args.n, app.done, cmd, args.timeout, env))
        if hasattr(app, "verify"):
            r = sync_redis()
            out["not_completed"] = app.verify(r, args.n)
            r.close()
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:
        print("ERROR " + json.dumps(f"{type(exc).__name__}: {exc}"), flush=True)
        sys.exit(1)
