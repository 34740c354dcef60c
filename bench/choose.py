"""taskq next to multiprocessing, joblib, Dask and Ray, as a notebook user meets them: one run, ratios only.

    python -m bench.choose --install      # once: a venv (.choose-venv) with joblib, dask[distributed], ray
    python -m bench.choose                # --calls 2000 --burns 40

Each system runs in its own fresh process with 2 workers (this machine has 2 cores) and its
defaults, and measures:

- ``startup_s``: from "start the pool / cluster" to the first result of a trivial function;
- ``per_call_ms``: ``--calls`` trivial calls given all at once to its natural map call
  (``Pool.map``, ``Parallel``, ``client.map``, ``.remote`` + ``ray.get``, taskq's ``client.map``,
  one job per call), wall time / calls;
- ``cpu_speedup``: ``--burns`` calls of a ~25 ms pure-Python function, time in the calling
  process divided by the time through the system (2 workers: at most ~2x);
- ``reattach`` (taskq only): a process submits a keyed batch to a server and workers that run
  outside it, dies (``os._exit``), and a new process gets the results by the key - what a kernel
  restart does to a notebook. Pools, Dask clients and Ray drivers own their tasks: their results
  go when the process that submitted them goes (their documented model; not measured here).

taskq runs in this interpreter's environment; the peers run in ``--venv``. The machine's speed
drifts between runs, so compare ratios from one run, never numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".choose-venv"
PEERS = ("joblib", "dask[distributed]", "ray")

COMMON = """
import json, sys, time

def noop(x):
    return x

def burn(n=250_000):
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1_000_003
    return x

CALLS, BURNS = int(sys.argv[1]), int(sys.argv[2])
t0 = time.perf_counter()
for _ in range(BURNS):
    burn()
serial_s = time.perf_counter() - t0
"""

SYSTEMS = {
    "multiprocessing": """
import multiprocessing as mp
t0 = time.perf_counter()
pool = mp.Pool(2)
pool.apply(noop, (1,))
startup = time.perf_counter() - t0
t0 = time.perf_counter(); pool.map(noop, range(CALLS)); per_call = (time.perf_counter() - t0) / CALLS
t0 = time.perf_counter(); pool.starmap(burn, [()] * BURNS); parallel_s = time.perf_counter() - t0
pool.close(); pool.join()
""",
    "joblib": """
from joblib import Parallel, delayed
import joblib
t0 = time.perf_counter()
Parallel(n_jobs=2)(delayed(noop)(1) for _ in range(1))
startup = time.perf_counter() - t0
t0 = time.perf_counter(); Parallel(n_jobs=2)(delayed(noop)(i) for i in range(CALLS))
per_call = (time.perf_counter() - t0) / CALLS
t0 = time.perf_counter(); Parallel(n_jobs=2)(delayed(burn)() for _ in range(BURNS))
parallel_s = time.perf_counter() - t0
""",
    "dask": """
from dask.distributed import Client, LocalCluster
t0 = time.perf_counter()
cluster = LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
client = Client(cluster)
client.submit(noop, 1).result()
startup = time.perf_counter() - t0
t0 = time.perf_counter(); client.gather(client.map(noop, range(CALLS)))
per_call = (time.perf_counter() - t0) / CALLS
t0 = time.perf_counter(); client.gather([client.submit(burn, pure=False) for _ in range(BURNS)])
parallel_s = time.perf_counter() - t0
client.close(); cluster.close()
""",
    "ray": """
import ray
t0 = time.perf_counter()
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
rnoop, rburn = ray.remote(noop), ray.remote(burn)
ray.get(rnoop.remote(1))
startup = time.perf_counter() - t0
t0 = time.perf_counter(); ray.get([rnoop.remote(i) for i in range(CALLS)])
per_call = (time.perf_counter() - t0) / CALLS
t0 = time.perf_counter(); ray.get([rburn.remote() for _ in range(BURNS)])
parallel_s = time.perf_counter() - t0
ray.shutdown()
""",
    "taskq": """
from taskq_sdk import LocalCluster
t0 = time.perf_counter()
cluster = LocalCluster(n_workers=2)
client = cluster.client()
cluster.job(noop)
cluster.job(burn)
client.submit("noop", 1).result(timeout=60)
startup = time.perf_counter() - t0
t0 = time.perf_counter(); client.map("noop", range(CALLS)).results(timeout=300)
per_call = (time.perf_counter() - t0) / CALLS
t0 = time.perf_counter(); client.map("burn", [250_000] * BURNS).results(timeout=300)
parallel_s = time.perf_counter() - t0
cluster.close()
""",
}

REPORT = """
print(json.dumps({"startup_s": startup, "per_call_ms": per_call * 1000, "cpu_speedup": serial_s / parallel_s}))
"""

SUBMIT_AND_DIE = """
import os, sys
from taskq_sdk import Client
client = Client()
client.map("text_stats", [f"text number {i}" for i in range(200)], key="reattach-demo")
os._exit(0)  # like a kernel restart: no cleanup, no goodbye
"""

REATTACH = """
import json, time
from taskq_sdk import Client
t0 = time.perf_counter()
client = Client()
batch = client.batch("reattach-demo")
results = batch.results(timeout=120)
print(json.dumps({"items": len(results), "words": sum(r["words"] for r in results), "s": time.perf_counter() - t0}))
"""


def run_snippet(python: str, code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write("if __name__ == '__main__':\n" + textwrap.indent(code, "    "))
    try:
        out = subprocess.run([python, f.name, *args], capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    finally:
        os.unlink(f.name)
    if out.returncode != 0:
        raise RuntimeError(f"{python} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def reattach() -> dict[str, float]:
    """Submit from a process that dies, then read the results from a new one (server and worker outside both)."""
    from taskq_sdk._server import LocalServer

    server = LocalServer().start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env.update(
        {"REDIS_HOST": server.host, "REDIS_PORT": str(server.port), "REDIS_PASSWORD": server.password,
         "TASKQ_RESULTS_DB": "off", "PYTHONPATH": str(ROOT)}
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskq_sdk.worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        died = subprocess.run([sys.executable, "-c", SUBMIT_AND_DIE], env=env, timeout=120)
        assert died.returncode == 0
        return run_snippet(sys.executable, REATTACH, env=env)
    finally:
        worker.terminate()
        worker.wait(30)
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--install", action="store_true", help=f"create {VENV.name} with {', '.join(PEERS)}")
    parser.add_argument("--venv", type=Path, default=VENV)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--burns", type=int, default=40)
    args = parser.parse_args()
    if args.install:
        subprocess.run([sys.executable, "-m", "venv", str(args.venv)], check=True)
        subprocess.run([str(args.venv / "bin" / "pip"), "install", "-q", *PEERS], check=True)
    rows = {}
    for name, code in SYSTEMS.items():
        python = sys.executable if name == "taskq" else str(args.venv / "bin" / "python")
        if name != "multiprocessing" and name != "taskq" and not Path(python).exists():
            print(f"{name}: skipped ({python} missing; run with --install)")
            continue
        rows[name] = run_snippet(python, COMMON + code + REPORT, str(args.calls), str(args.burns))
        print(name, json.dumps({k: round(v, 3) for k, v in rows[name].items()}), flush=True)
    print("taskq reattach after the submitting process died:", json.dumps(reattach()))
    print(f"\n| system | startup, s | per call, ms ({args.calls:,} trivial calls) | CPU speedup, 2 workers |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['startup_s']:.2f} | {r['per_call_ms']:.3f} | {r['cpu_speedup']:.2f}x |")


if __name__ == "__main__":
    main()
