"""Run every benchmark in turn and write their tables to bench/results/latest.md.

    python -m bench.run_all              # about 10-15 minutes on 2 cores

Each script measures taskq and its baseline in the same run, on the same embedded server.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [
    ("latency", []),
    ("drain", []),
    ("bulk_submit", []),
    ("fanout", []),
    ("cpu_fanout", []),
    ("scaling", []),
    ("idle", []),
]


def main() -> int:
    out = ROOT / "bench" / "results" / "latest.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# Benchmarks ({time.strftime('%Y-%m-%d %H:%M')} UTC, `python -m bench.run_all`)", ""]
    code = 0
    for name, args in SCRIPTS:
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
