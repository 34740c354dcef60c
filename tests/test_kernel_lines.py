"""Live widgets on both ipykernel lines, in a real JupyterLab 4 with comm subshells on and off.

ipykernel 7 changed how output and comm messages sent from threads reach the front end (7.0 broke widget
updates from threads; 7.1 fixed most), and JupyterLab 4.4+ may route comms over kernel subshells. The
quickstart notebook (its job widgets are updated from the client's event-loop thread after their cell
ended) runs in headless Chromium through ``tests/nbshot.py --strict-widgets`` on:

* the suite's venv (ipykernel 7.x, the latest release), comms over subshells ``perCommTarget`` (JupyterLab's
  default) and ``disabled``;
* a second venv with ipykernel 6.29.x (``.venv-ipykernel6`` in the repository, made on first use; or
  ``TASKQ_KERNEL6_PYTHON=/path/to/python`` of a venv that has it).

Each run checks the kernel's version (a first cell prints it), that every widget rendered as a widget, and
that the first job's widget, shown while the job was queued, ended showing ``complete`` - an update that
crossed from a thread. Skips like ``tests/test_browser.py`` where Chromium or playwright is missing.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, figure
from .test_browser import _chromium, _missing

pytestmark = pytest.mark.notebook

NOTEBOOK = ROOT / "notebooks" / "01_quickstart.ipynb"
NBSHOT = ROOT / "tests" / "nbshot.py"
KERNEL6_VENV = ROOT / ".venv-ipykernel6"
KERNEL6_PYTHON = os.environ.get("TASKQ_KERNEL6_PYTHON")
KERNEL6_INSTALL = ["-e", f"{ROOT}[all]", "ipykernel>=6.29,<6.30", "playwright>=1.40", "jupyter_client>=8"]
PROBE = 'import ipykernel, sys\nprint("IPYKERNEL", ipykernel.__version__, sys.prefix)'


def kernel6_python() -> Path:
    """The python of a venv with ipykernel 6.29.x, made (once, ~1-2 min) where none is named."""
    if KERNEL6_PYTHON:
        return Path(KERNEL6_PYTHON)
    python = KERNEL6_VENV / "bin" / "python"
    # one maker at a time: CI runs the heavy notebook tier beside the default one, and both need this venv
    with open(f"{KERNEL6_VENV}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(KERNEL6_VENV)], check=True, timeout=120)
        check = subprocess.run(
            [
                str(python),
                "-c",
                "import av, ipykernel, jupyterlab, playwright, taskq_sdk; print(ipykernel.__version__)",
            ],
            capture_output=True,
            text=True,
        )
        if check.returncode != 0 or not check.stdout.startswith("6.29."):
            pip = [str(python), "-m", "pip", "install", "-q", *KERNEL6_INSTALL]
            done = subprocess.run(pip, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return python


def _probe_notebook(tmp: Path, notebook: Path = NOTEBOOK) -> Path:
    """The notebook with a first cell that prints the kernel's ipykernel version."""
    nb = json.loads(notebook.read_text())
    probe = {"cell_type": "code", "metadata": {}, "source": PROBE, "outputs": [], "execution_count": None}
    nb["cells"].insert(1, probe)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    path = tmp / notebook.name
    path.write_text(json.dumps(nb))
    return path


def run_in_lab(python: Path, tmp: Path, subshells: str | None, notebook: Path = NOTEBOOK) -> tuple[str, str]:
    """Run the probed notebook in JupyterLab under ``python``; nbshot's report and the rendered HTML."""
    missing = _missing()
    if missing:
        pytest.skip(f"browser check skipped: {missing}")
    chromium = _chromium()
    assert chromium is not None
    page = tmp / "page.html"
    cmd = [str(python), str(NBSHOT), str(_probe_notebook(tmp, notebook)), str(tmp / "shot.png"), "--strict-widgets"]
    cmd += ["--timeout", "240", "--chromium", chromium, "--dump-html", str(page)]
    if subshells:
        cmd += ["--comms-over-subshells", subshells]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "TASKQ_", "ARQ_", "VIRTUAL_ENV"))}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=420, env=env)
    report = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, f"nbshot exited {out.returncode}:\n{report}"
    return report, page.read_text()


def _rendered(report: str, html: str, major: str) -> tuple[int, int]:
    """(widget outputs rendered as widgets, widget outputs), after checking the kernel's major version."""
    text = re.sub(r"<[^>]+>", " ", html)
    version = re.search(r"IPYKERNEL (\d+)\.(\d+)\.\S+", text)
    assert version and version.group(1) == major, f"kernel was not ipykernel {major}.x: {version and version.group(0)}"
    found = re.search(r"widget outputs rendered as widgets: (\d+)/(\d+)", report)
    assert found, report
    return int(found.group(1)), int(found.group(2))


def _check(report: str, html: str, major: str) -> int:
    rendered, total = _rendered(report, html, major)
    assert total >= 4 and rendered == total, report
    # the first job's widget: shown while queued, then updated from the client's thread until it completed
    cells = re.split(r'(?=<div[^>]*class="[^"]*jp-Cell jp-CodeCell)', html)
    shown = [c for c in cells if "job=client.submit(score" in re.sub(r"\s|<[^>]+>", "", c)]
    assert len(shown) == 1, "the cell that shows the first job"
    words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", shown[0]))
    assert "jupyter-widgets" in shown[0], "the job showed as a widget"
    assert " complete " in words and "scoring word 10/10" in words and "result:" in words, words[:1500]
    return rendered


@pytest.mark.parametrize("subshells", ["perCommTarget", "disabled"])
def test_widgets_on_ipykernel_7(tmp_path: Path, subshells: str) -> None:
    import ipykernel

    if not ipykernel.__version__.startswith("7."):
        pytest.skip(f"the suite's venv has ipykernel {ipykernel.__version__}, not 7.x")
    report, html = run_in_lab(Path(sys.executable), tmp_path, subshells)
    rendered = _check(report, html, "7")
    figure(f"widgets_rendered_ipykernel7_subshells_{subshells}", rendered)


def test_widgets_on_ipykernel_6_29(tmp_path: Path) -> None:
    if _missing():
        pytest.skip(f"browser check skipped: {_missing()}")
    report, html = run_in_lab(kernel6_python(), tmp_path, None)
    rendered = _check(report, html, "6")
    figure("widgets_rendered_ipykernel6", rendered)


@pytest.mark.heavy
@pytest.mark.parametrize("line", ["6", "7"])
@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_on_both_kernel_lines(tmp_path: Path, notebook: Path, line: str) -> None:
    """Every notebook, every cell, every widget live, on ipykernel 6.29.x and 7.x (``-m heavy``: ~5 min)."""
    if _missing():
        pytest.skip(f"browser check skipped: {_missing()}")
    import ipykernel

    if line == "7" and not ipykernel.__version__.startswith("7."):
        pytest.skip(f"the suite's venv has ipykernel {ipykernel.__version__}, not 7.x")
    python = kernel6_python() if line == "6" else Path(sys.executable)
    report, html = run_in_lab(python, tmp_path, None, notebook)
    rendered, total = _rendered(report, html, line)
    assert rendered == total, report
