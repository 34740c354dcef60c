"""Run benchmarks for two revisions of taskq in one session, interleaved (A B B A), to compare them fairly.

This machine's speed drifts 2-3x within an hour, so two runs an hour apart compare nothing; runs
interleaved in one session do. The base revision is checked out into a temporary git worktree and
each benchmark runs there and in this tree alternately, with the same Python::

    python -m bench.compare --base fde75ed latency "drain --n 5000" scaling
    python -m bench.compare --base HEAD~3 --rounds 2 bulk_submit

It prints every run's table, labelled ``base`` or ``this tree``; read the ratios inside each table
(taskq vs arq in the same run) and compare them across the interleaved runs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(label: str, root: Path, spec: str) -> None:
    name, *args = shlex.split(spec)
    env = {**os.environ, "PYTHONPATH": str(root)}
    print(f"### {label}: python -m bench.{spec}", flush=True)
    out = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args], cwd=root, env=env, capture_output=True, text=True
    )
    print(out.stdout.strip() or out.stderr[-2000:], "\n", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("benchmarks", nargs="+", help='bench module names with their arguments, e.g. "drain --n 5000"')
    p.add_argument("--base", required=True, help="the git revision to compare this tree with")
    p.add_argument("--rounds", type=int, default=1, help="A B B A rounds per benchmark (default 1)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="taskq-base-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=ROOT, check=True)
        try:
            for spec in args.benchmarks:
                for _ in range(args.rounds):
                    for label, root in (("base", base), ("this tree", ROOT), ("this tree", ROOT), ("base", base)):
                        run(f"{label} ({args.base if label == 'base' else 'working tree'})", root, spec)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
