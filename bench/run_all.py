"""Run every benchmark in turn and write their tables to bench/results/latest.md.

    python -m bench.run_all              # about 20-30 minutes on 2 cores (bench.scaling alone ~7)
    python -m bench.run_all --peers      # also saq, huey, dramatiq, taskiq (installed into .peers-venv)
    python -m bench.run_all --only cpu_fanout limits   # re-run these; the file keeps the other sections

Each script's section ends with its "took" line, so ``--only`` replaces just those sections (a new
script's is appended) and the heading says which were re-run when: compare ratios within a section only.

Each script measures taskq and its baseline in the same run, on the same embedded server.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS: list[tuple[str, list[str]]] = [
    ("latency", []),
    ("drain", []),
    ("bulk_submit", []),
    ("submit_rate", []),
    ("submit_script", []),
    ("submit_profile", []),
    ("startup", []),
    ("memory", []),
    ("fanout", []),
    ("cpu_fanout", []),
    ("priority", []),
    ("scaling", []),
    ("idle", []),
    ("limits", []),
    ("cache", []),
    ("stream", []),
    ("row_timing", []),
]
TOOK = re.compile(r"^_`python -m bench\.(\w+)` took \d+ s_$")


def sections(text: str) -> tuple[list[str], dict[str, str]]:
    """The scripts' sections of a results file, in order, each up to and including its "took" line.

    Example::

        order, by_name = sections(Path("bench/results/latest.md").read_text())
        by_name["drain"]   # '### Drain: ...\n...\n_`python -m bench.drain` took 468 s_'
    """
    order: list[str] = []
    found: dict[str, str] = {}
    block: list[str] = []
    for line in text.splitlines()[1:]:  # the first line is the file's heading
        block.append(line)
        m = TOOK.match(line)
        if m:
            order.append(m.group(1))
            found[m.group(1)] = "\n".join(block).strip()
            block = []
    return order, found


def write_only(out: Path, names: list[str]) -> int:
    """Re-run the scripts ``names`` and replace their sections of ``out`` (others kept, new ones appended)."""
    known = {name: args for name, args in SCRIPTS}
    unknown = [n for n in names if n not in known and n != "peers"]
    if unknown:
        raise SystemExit(f"unknown bench script(s) {unknown}; choose from {sorted(known)} or peers")
    order, found = sections(out.read_text()) if out.exists() else ([], {})
    head = out.read_text().splitlines()[0] if out.exists() else "# Benchmarks"
    code = 0
    for name in names:
        args = known.get(name, [] if (ROOT / ".peers-venv" / "bin" / "python").exists() else ["--install"])
        t0 = time.monotonic()
        res = subprocess.run([sys.executable, "-m", f"bench.{name}", *args], cwd=ROOT, capture_output=True, text=True)
        print(res.stdout, flush=True)
        took = time.monotonic() - t0
        if res.returncode != 0:
            code = res.returncode
            body = f"### {name}: FAILED (exit {res.returncode})\n\n```\n{res.stderr[-2000:]}\n```"
        else:
            body = res.stdout.strip()
        stamp = time.strftime("%Y-%m-%d %H:%M")
        found[name] = f"{body}\n\n_re-run {stamp} UTC with `--only`_\n\n_`python -m bench.{name}` took {took:.0f} s_"
        if name not in order:
            order.append(name)
        out.write_text("\n\n".join([head, *(found[n] for n in order)]) + "\n")
    return code


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--peers", action="store_true", help="also run bench.peers (installs the peers into .peers-venv)")
    p.add_argument("--only", nargs="+", metavar="SCRIPT", help="re-run only these scripts' sections of the file")
    opts = p.parse_args()
    out = ROOT / "bench" / "results" / "latest.md"
    if opts.only:
        return write_only(out, opts.only)
    scripts = list(SCRIPTS)
    if opts.peers:
        scripts.append(("peers", [] if (ROOT / ".peers-venv" / "bin" / "python").exists() else ["--install"]))
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
