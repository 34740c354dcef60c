"""Store the notebooks with their outputs, so that a reader on a code host sees the tables, widgets and charts.

    python -m tests.notebooks              # run every notebook under nbmake and write it back with its outputs
    python -m tests.notebooks 03           # only notebooks whose name contains "03"

The outputs come from the test run itself: this runs ``pytest --nbmake --overwrite`` on the chosen
notebooks (the same plugin, kernel and timeout as the suite), and only when every notebook passed does it
stamp each one with a hash of its code cells in ``metadata.taskq.code_sha256``.
``tests/test_first_hour_docs.py`` fails when a code cell changed after its outputs were stored, when
most code cells have no output, or when a stored output is an error, so stored outputs cannot drift
from the code.

Volatile parts are normalised before writing, so that re-storing an unchanged notebook gives a small
diff: execution timing metadata is dropped; temp paths, ports and random job ids in text outputs stay as
they ran (the drift check looks at code, never at output text).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STORED_BY = "python -m tests.notebooks (pytest --nbmake --overwrite)"


def code_sha256(nb: Any) -> str:
    """A hash of the code cells' sources, in order (what produced the stored outputs)."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.strip().encode() + b"\0")
    return digest.hexdigest()


def run_and_overwrite(paths: list[Path]) -> int:
    """Run the notebooks as the suite does (nbmake), writing each executed notebook over its source."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "addopts=", "-q"]
    command += ["--nbmake", "--nbmake-timeout=300", "--overwrite", *map(str, paths)]
    return subprocess.call(command, cwd=ROOT)


def stamp(path: Path) -> None:
    """Drop volatile execution metadata and record which code produced the stored outputs."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata["taskq"] = {"code_sha256": code_sha256(nb), "stored_by": STORED_BY}
    nbformat.write(nb, path)


def main(argv: list[str]) -> int:
    chosen = [p for p in NOTEBOOKS if not argv or any(a in p.name for a in argv)]
    if not chosen:
        print(f"no notebook matches {argv}", file=sys.stderr)
        return 2
    code = run_and_overwrite(chosen)
    if code != 0:
        print("a notebook failed: nothing stamped, fix it and run again", file=sys.stderr)
        return code
    for path in chosen:
        stamp(path)
    print(f"stored {len(chosen)} notebook(s) with the outputs of their nbmake run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
