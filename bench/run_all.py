"""Run every benchmark in turn and write their tables to bench/results/latest.md.

    python -m bench.run_all              # about 20-30 minutes on 2 cores (bench.scaling alone ~7)
    python -m bench.run_all --peers      # also saq, huey, dramatiq, taskiq (installed into .peers-venv)

Each script measures taskq and its baseline in the same run, on the same embedded server.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [
    ("latency", []),
    ("drain", []),
    ("bulk_submit", []),
    ("submit_rate", []),
    ("startup", []),
    ("memory", []),
    ("fanout", []),
    ("cpu_fanout", []),
    ("priority", []),
    ("scaling", []),
    ("idle", []),
    ("limits", []),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", action="store_true", help="also run bench.peers (installs the peers into .peers-venv)")
    scripts = list(SCRIPTS)
    if p.parse_args().peers:
        scripts.append(("peers", [] if (ROOT / ".peers-venv" / "bin" / "python").exists() else ["--install"]))
    out = ROOT / "bench" / "results" / "latest.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# Benchmarks ({time.strftime('%Y-%m-%d %H:%M')} UTC, `python -m bench.run_all`)", ""]
    code = 0
    for name, args in scripts:
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT, capture_output=True, text=True)
        took = time.monotonic() - t0
        print(res.stdout, flush=True)
        if res.returncode != 0:
            code = res.returncode
            parts += [f"### {name}: FAILED (exit {res.returncode})", "", "```", res.stderr[-2000:], "```", ""]
        else:
            parts += [res.stdout.strip(), "", f"_`python -m bench.{name}` took {took:.0f} s_", ""]
        out.write_text("\n".join(parts))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
