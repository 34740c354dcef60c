"""Latency and drain rate of peer job queues (saq, huey, dramatiq, taskiq) next to taskq and raw arq, same server.

    python -m bench.peers --install      # once: creates .peers-venv with the peers, then runs
    python -m bench.peers                # --n 200 --drain-n 5000 --concurrency 10 --rounds 2

The peers run only in their own venv (``--venv``, default ``.peers-venv`` in the repository root),
as subprocesses: the scripts in ``bench/peers/`` run there and start each peer's worker with its
own command line; nothing of theirs is imported here. Every system uses one embedded server,
flushed between runs.

Latency: sequential submit -> result of a no-op job with a warm idle worker (20 warm-ups, then
``--n`` samples; variants whose warm-ups take over 0.1 s, i.e. that poll at 0.2-0.5 s, get
``--slow-n`` samples, as bench.latency does for arq's defaults). Each peer runs with its defaults
and, where it has a latency knob, "tuned" with it (the row names the setting).

Drain: ``--drain-n`` no-op jobs queued with no worker running, then one worker process with
``--concurrency`` (arq max_jobs, saq concurrency, huey threads, dramatiq threads, taskiq
max-async-tasks). Every system's drain is observed the same way: this harness reads a counter the
system keeps on the server every 10 ms (``bench/peers/_common.py``; ``ref_drain`` for taskq and
arq); "jobs/s" is the steady rate from the first completion seen to the last (start-up left out),
"drain s" the wall time from spawning the worker process to the last completion seen. ``--rounds``
interleaves the systems (latency samples pooled, drain medians with their range). Ratios are
"times arq's defaults" (higher is better for both).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import redis

from . import drain as bench_drain
from . import submit_rate
from ._harness import ROOT, arq_worker, clean_env, flush, percentile, server, table, taskq_worker
from .latency import raw_arq, taskq_async

PEERS_DIR = Path(__file__).resolve().parent / "peers"
DEFAULT_VENV = ROOT / ".peers-venv"
PEER_PACKAGES = ["saq", "huey", "dramatiq[redis]", "taskiq", "taskiq-redis", "redis"]
PEERS = ("saq", "huey", "dramatiq", "taskiq")
# "tuned" where a peer has a latency knob (the peer's script names it); dramatiq's only candidate, the
# worker timeout (``dramatiq_worker_timeout``), caps the idle-poll backoff but not its 5-10 ms first step
VARIANTS = {
    "saq": ("defaults", "tuned"),
    "huey": ("defaults", "tuned"),
    "dramatiq": ("defaults",),
    "taskiq": ("defaults", "tuned"),
}
SYSTEMS = ("arq", "taskq", *PEERS)
RUN_TIMEOUT = 300.0  # one peer measurement (latency or drain), start-up included


@dataclass
class Row:
    system: str
    setting: str
    samples: list[float] = field(default_factory=list)
    latency_error: str = ""
    rate: float | None = None
    wall: float | None = None
    drain_note: str = ""
    drain_warning: str = ""
    variant: str = ""  # "defaults" / "tuned" (arq: its settings class): the row's identity across rounds


class PeerError(Exception):
    """A peer measurement failed; the message is the peer script's own."""


def _short(exc: BaseException | str, limit: int = 160) -> str:
    text = exc if isinstance(exc, str) else str(exc) if isinstance(exc, PeerError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the peers venv ---------------------------------------------------------------------------


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def install(venv: Path) -> None:
    """Create ``venv`` (if missing) and pip-install the peers into it."""
    if not venv_python(venv).exists():
        print(f"creating {venv}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    print(f"installing {' '.join(PEER_PACKAGES)} into {venv}", file=sys.stderr)
    pip = [str(venv_python(venv)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *PEER_PACKAGES], check=True, timeout=900)


# --- measurements --------------------------------------------------------------------------------


def _group_members(pgid: int) -> list[int]:
    """PIDs of live processes in process group ``pgid`` (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def _kill_group(pgid: int, sig: int) -> None:
    for pid in _group_members(pgid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def run_peer(python: Path, url: str, peer: str, what: str, setting: str, args: list[str], concurrency: int) -> Any:
    """Run ``bench/peers/run_peer.py`` in the peers venv (in a process group of its own) and return its result."""
    env = clean_env(url, PYTHONPATH=str(PEERS_DIR), PEERS_SETTING=setting, PEERS_CONCURRENCY=str(concurrency))
    env.pop("VIRTUAL_ENV", None)
    cmd = [str(python), str(PEERS_DIR / "run_peer.py"), peer, what, *args]
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid, signal.SIGTERM)  # run_peer.py stops its worker on SIGTERM
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.communicate()
        raise TimeoutError(f"{peer} {what} took over {RUN_TIMEOUT:.0f} s") from None
    finally:
        if proc.poll() is None:
            _kill_group(proc.pid, signal.SIGKILL)
            proc.wait()
        _kill_group(proc.pid, signal.SIGKILL)  # anything the peer's worker left behind in the group
    for line in reversed(out.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
        if line.startswith("ERROR "):
            raise PeerError(json.loads(line[len("ERROR ") :]))
    raise PeerError(f"{peer} {what} exited {proc.returncode} without a result: {err.strip()[-600:]}")


def ref_drain(url: str, n: int, kind: str, concurrency: int) -> tuple[float, float]:
    """taskq's or arq's drain (settings ``kind``), observed exactly as the peers' are (``bench/peers/_common.py``).

    The queue is filled with no worker running; then the worker process is spawned and this
    process reads the server every 10 ms: done = N - ZCARD arq:queue (arq, and taskq, keep a
    running job in the queue set until it finishes). Returns the steady rate from the first
    completion seen to the last, and the wall time from the spawn to the last completion.
    """
    flush(url)
    env = {"ARQ_MAX_JOBS": str(concurrency)}
    if kind == "taskq":
        asyncio.run(bench_drain.enqueue_taskq(url, n))
        cmd = [sys.executable, "-m", "taskq_sdk.worker", "bench.noop_jobs"]
    else:
        asyncio.run(bench_drain.enqueue_arq(url, n))
        cmd = [sys.executable, "-m", "arq", f"bench.arq_baseline.{kind}"]
    r = redis.Redis.from_url(url)
    proc = subprocess.Popen(
        cmd, env=clean_env(url, **env), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        rate, wall = _observer().observe(
            lambda: n - int(r.zcard("arq:queue")),  # type: ignore[arg-type]
            n,
            proc,
            spawned=time.perf_counter(),
            timeout=RUN_TIMEOUT,
        )
        return float(rate), float(wall)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        r.close()


def _observer() -> Any:
    """``bench/peers/_observe.py``, the drain observer the peers use too (loaded by path: bench.peers is this file)."""
    spec = importlib.util.spec_from_file_location("taskq_bench_observe", PEERS_DIR / "_observe.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _attempt(what: str, fn: Callable[[], Any]) -> tuple[Any, str]:
    try:
        return fn(), ""
    except Exception as exc:
        print(f"{what}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None, _short(exc)


def reference_rows(url: str, args: argparse.Namespace) -> list[Row]:
    rows = []
    if "arq" in args.systems:
        for kind, setting, poll, n in (
            ("Default", "defaults (worker and result polls 0.5 s)", 0.5, args.arq_default_n),
            ("Fast", "tuned: worker and result polls at 5 ms", 0.005, args.n),
        ):
            row = Row("arq (raw)", setting, variant=kind)
            flush(url)
            print(f"arq {kind}: latency", file=sys.stderr)
            with arq_worker(url, f"bench.arq_baseline.{kind}"):
                samples, row.latency_error = _attempt("arq latency", partial(raw_arq, url, n, poll))
            row.samples = samples or []
            print(f"arq {kind}: drain", file=sys.stderr)
            res, row.drain_note = _attempt("arq drain", partial(ref_drain, url, args.drain_n, kind, args.concurrency))
            if res:
                row.rate, row.wall = res
            rows.append(row)
    if "taskq" in args.systems:
        row = Row("taskq", "AsyncClient, defaults", variant="defaults")
        flush(url)
        print("taskq: latency", file=sys.stderr)
        with taskq_worker(url, "bench.noop_jobs"):
            samples, row.latency_error = _attempt("taskq latency", partial(taskq_async, url, args.n))
        row.samples = samples or []
        print("taskq: drain", file=sys.stderr)
        res, row.drain_note = _attempt("taskq drain", partial(ref_drain, url, args.drain_n, "taskq", args.concurrency))
        if res:
            row.rate, row.wall = res
        rows.append(row)
    return rows


def peer_rows(url: str, python: Path, args: argparse.Namespace) -> list[Row]:
    rows = []
    for peer in PEERS:
        if peer not in args.systems:
            continue
        for setting in VARIANTS[peer]:
            row = Row(peer, setting, variant=setting)
            flush(url)
            print(f"{peer} {setting}: latency", file=sys.stderr)
            lat_args = ["--n", str(args.n), "--slow-n", str(args.slow_n), "--warmup", str(args.warmup)]
            run = partial(run_peer, python, url, peer, setting=setting, concurrency=args.concurrency)
            res, row.latency_error = _attempt(f"{peer} {setting} latency", partial(run, "latency", args=lat_args))
            if res:
                row.system = f"{peer} {res['version']}"
                row.setting = res["setting"] if setting == "defaults" else f"tuned: {res['setting']}"
                row.samples = res["samples"]
            flush(url)
            print(f"{peer} {setting}: drain", file=sys.stderr)
            drain_args = ["--n", str(args.drain_n), "--timeout", str(RUN_TIMEOUT - 30)]
            res, row.drain_note = _attempt(f"{peer} {setting} drain", partial(run, "drain", args=drain_args))
            if res and "drain_same_as" in res:
                row.drain_note = "as defaults (client-side setting)"
            elif res:
                row.rate, row.wall = res["rate"], res["wall_s"]
                row.drain_warning = res.get("not_completed", "")
            rows.append(row)
    return rows


def submit_rates(url: str, python: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """Enqueue rates, no worker running: one by one and ``--concurrent`` gathered, per system (one round)."""
    n, c = args.submit_n, args.concurrent
    cases: dict[str, Callable[[], float]] = {}
    if "arq" in args.systems:
        cases["arq 0.28 `enqueue_job`, one by one"] = lambda: asyncio.run(submit_rate.arq_rate(url, n, 1))
        cases[f"arq `enqueue_job`, gather of {c}"] = lambda: asyncio.run(submit_rate.arq_rate(url, n, c))
    if "taskq" in args.systems:
        cases["taskq `AsyncClient.submit`, one by one"] = lambda: asyncio.run(submit_rate.async_rate(url, n, 1))
        cases[f"taskq `AsyncClient.submit`, gather of {c}"] = lambda: asyncio.run(submit_rate.async_rate(url, n, c))
        cases["taskq `Client.submit`, one by one"] = lambda: submit_rate.sync_rate(url, n, 1)
    out: dict[str, list[float]] = {}
    for name, case in cases.items():
        flush(url)
        rate, _ = _attempt(name, case)
        if rate:
            out.setdefault(name, []).append(rate)
    for peer in PEERS:
        if peer not in args.systems:
            continue
        flush(url)
        res, _ = _attempt(
            f"{peer} submit",
            partial(run_peer, python, url, peer, "submit", "defaults", ["--n", str(n), "--concurrent", str(c)], 10),
        )
        if res:
            out.setdefault(f"{peer} {res['version']}, one by one", []).append(res["one_by_one"])
            if "gather" in res:
                out.setdefault(f"{peer} {res['version']}, gather of {c}", []).append(res["gather"])
    return out


def render_submit(rates: dict[str, list[float]], args: argparse.Namespace) -> str:
    base = next((statistics.median(v) for k, v in rates.items() if k.startswith("arq") and "one by one" in k), None)
    rows = []
    for name, values in rates.items():
        rate = statistics.median(values)
        rows.append(
            [name, f"{rate:,.0f}", f"{min(values):,.0f}-{max(values):,.0f}", f"{rate / base:.2f}x" if base else ""]
        )
    title = f"Peers: enqueue rate of {args.submit_n:,} no-op jobs, no worker running (medians of {args.rounds} rounds)"
    return table(title, ["how", "jobs/s", "range", "vs arq one by one"], rows)


def merge_rounds(rounds: list[list[Row]]) -> list[Row]:
    """One row per system and setting: latency samples pooled over the rounds, drain rate and wall the medians."""
    merged: dict[tuple[str, str], tuple[Row, list[float], list[float]]] = {}
    for rows in rounds:
        for row in rows:
            key = (row.system.split()[0], row.variant)
            if key not in merged:
                merged[key] = (Row(row.system, row.setting, variant=row.variant), [], [])
            into, rates, walls = merged[key]
            into.system, into.setting = row.system, row.setting
            into.samples += row.samples
            into.latency_error = into.latency_error or row.latency_error
            into.drain_note = into.drain_note or row.drain_note
            into.drain_warning = into.drain_warning or row.drain_warning
            if row.rate is not None and row.wall is not None:
                rates.append(row.rate)
                walls.append(row.wall)
    out = []
    order = {name: i for i, name in enumerate(SYSTEMS)}
    for into, rates, walls in sorted(merged.values(), key=lambda m: order.get(m[0].system.split()[0], 99)):
        if rates:
            into.rate, into.wall = statistics.median(rates), statistics.median(walls)
            if len(rates) > 1:
                into.drain_note = f"{min(rates):,.0f}-{max(rates):,.0f} over {len(rates)} rounds"
        out.append(into)
    return out


# --- output ----------------------------------------------------------------------------------------


def render(rows: list[Row], args: argparse.Namespace) -> str:
    base = next((r for r in rows if r.system.startswith("arq") and r.setting.startswith("defaults")), None)
    base_p50 = percentile(base.samples, 0.5) if base and base.samples else None
    base_rate = base.rate if base else None
    out = []
    for r in rows:
        if r.samples:
            p50, p95 = percentile(r.samples, 0.5), percentile(r.samples, 0.95)
            lat = [str(len(r.samples)), f"{p50 * 1000:.2f}", f"{p95 * 1000:.2f}"]
            lat.append(f"{base_p50 / p50:.1f}x" if base_p50 else "")
        else:
            lat = ["", f"ERROR: {r.latency_error}" if r.latency_error else "", "", ""]
        if r.rate is not None:
            warning = f" ({r.drain_warning} of {args.drain_n:,} not completed)" if r.drain_warning else ""
            spread = f" ({r.drain_note})" if r.drain_note.endswith("rounds") else ""
            drain = [
                f"{r.rate:,.0f}{spread}{warning}",
                f"{r.rate / base_rate:.2f}x" if base_rate else "",
                f"{r.wall:.2f}",
            ]
        else:
            drain = [f"ERROR: {r.drain_note}" if r.drain_note and not r.drain_note.startswith("as ") else r.drain_note]
            drain += ["", ""]
        out.append([r.system, r.setting, *lat, *drain])
    header = ["system", "setting", "n", "latency p50 ms", "p95 ms", "p50 vs arq defaults"]
    header += ["drain jobs/s", "drain vs arq defaults", "drain s (spawn to last)"]
    title = f"Peers: submit -> result latency, and drain of {args.drain_n:,} no-op jobs by one worker process"
    title += f" (concurrency {args.concurrency})"
    return table(title, header, out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--install", action="store_true", help="create/update the peers venv (pip), then run")
    p.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the peers venv (default: %(default)s)")
    p.add_argument("--n", type=int, default=200, help="latency samples per variant")
    p.add_argument("--slow-n", type=int, default=40, help="latency samples for variants polling at >= 0.1 s")
    p.add_argument("--arq-default-n", type=int, default=20, help="arq defaults take ~0.5-1 s per job")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--drain-n", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--concurrent", type=int, default=100, help="submits gathered at once in the enqueue-rate run")
    p.add_argument("--submit-n", type=int, default=2000, help="jobs per enqueue-rate run (0: skip)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (latency pooled, drain medians)")
    p.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS), help="a subset, for quick runs")
    args = p.parse_args()
    venv = args.venv.resolve()
    if args.install:
        install(venv)
    python = venv_python(venv)
    if not python.exists():
        cmd = "python -m bench.peers --install" + ("" if venv == DEFAULT_VENV else f" --venv {args.venv}")
        print(f"The peers venv {venv} does not exist. Create it (and run) with:\n\n    {cmd}\n", file=sys.stderr)
        return 2
    started = time.time()
    with server() as srv:
        rounds: list[list[Row]] = []
        submits: dict[str, list[float]] = {}
        for i in range(args.rounds):
            if args.submit_n:
                for name, values in submit_rates(srv.url, python, args).items():
                    submits.setdefault(name, []).extend(values)
            print(f"round {i + 1} of {args.rounds}", file=sys.stderr)
            # interleaved: every system once per round, the order reversed every other round (drift evens out)
            if i % 2 == 0:
                rounds.append(reference_rows(srv.url, args) + peer_rows(srv.url, python, args))
            else:
                rounds.append(peer_rows(srv.url, python, args) + reference_rows(srv.url, args))
        rows = merge_rounds(rounds)
        version = srv.version
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(render(rows, args))
    if submits:
        print()
        print(render_submit(submits, args))
    print()
    print(
        f"_{time.strftime('%Y-%m-%d %H:%M %Z')}; server {version}; {os.cpu_count()} cores; "
        f"load average {load} at the end; took {time.time() - started:.0f} s_"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
