"""Store the notebooks with their outputs, so that a reader on a code host sees the tables, widgets and charts.

    python -m tests.notebooks              # execute every notebook and write it back with its outputs
    python -m tests.notebooks 03           # only notebooks whose name contains "03"

Each notebook runs top to bottom in a fresh kernel (nbclient, as nbmake does in the test suite). The
written notebook records a hash of its code cells in ``metadata.taskq.code_sha256``:
``tests/test_first_hour_docs.py`` fails when a code cell changed after its outputs were stored, when
most code cells have no output, or when a stored output is an error, so stored outputs cannot drift
from the code.

Volatile parts are normalised before writing, so that re-storing an unchanged notebook gives a small
diff: execution timing metadata is dropped, and temp paths, ports and random job ids in text
outputs stay as they ran (the drift check looks at code, never at output text).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def code_sha256(nb: Any) -> str:
    """A hash of the code cells' sources, in order (what produced the stored outputs)."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            digest.update(cell.source.strip().encode() + b"\0")
    return digest.hexdigest()


def store(path: Path, timeout: int = 300) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(path.parent)}}
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    nb.metadata["taskq"] = {"code_sha256": code_sha256(nb), "stored_by": "python -m tests.notebooks"}
    nbformat.write(nb, path)


def main(argv: list[str]) -> None:
    chosen = [p for p in NOTEBOOKS if not argv or any(a in p.name for a in argv)]
    for path in chosen:
        print(f"executing {path.name} ...", flush=True)
        store(path)
    print(f"stored {len(chosen)} notebook(s) with outputs")


if __name__ == "__main__":
    main(sys.argv[1:])
