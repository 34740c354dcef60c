"""The quickstart notebook in a real JupyterLab, in headless Chromium: widgets render as live widgets.

Runs ``tests/nbshot.py`` (a copy of the team's ``../shared/tools/nbshot.py``; ``TASKQ_NBSHOT``
overrides it) with ``--strict-widgets``: every cell must run without error and every widget
output must render as a widget, not as its text fallback (``FloatProgress(value=...)``). Set
``TASKQ_SCREENSHOT`` to a path to keep the screenshot. Skips, saying how to enable it, where
Chromium, playwright or JupyterLab is missing.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT, figure

pytestmark = pytest.mark.notebook

NOTEBOOK = ROOT / "notebooks" / "01_quickstart.ipynb"
ENABLE = 'apt-get install -y chromium && pip install -e ".[dev,all]"'
# read at import: during a test the autouse fixture `_no_env_leak` has removed every TASKQ_* variable
NBSHOT = os.environ.get("TASKQ_NBSHOT") or str(ROOT / "tests" / "nbshot.py")
SCREENSHOT = os.environ.get("TASKQ_SCREENSHOT")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def _missing() -> str | None:
    if _chromium() is None:
        return "Chromium is not installed"
    for module in ("playwright", "jupyterlab", "ipywidgets"):
        if importlib.util.find_spec(module) is None:
            return f"the {module} package is not installed"
    return None


def run_strict(notebook: Path, png: Path, *extra: str) -> tuple[int, int, str]:
    """Run ``notebook`` in JupyterLab with ``--strict-widgets`` (the test skips where it can't run).

    Returns (widget outputs rendered as widgets, widget outputs, nbshot's report); fails the test
    if nbshot fails (a cell errored or a widget fell back to text).
    """
    missing = _missing()
    if missing:
        pytest.skip(f"browser check skipped: {missing}. Enable it with: {ENABLE}")
    chromium = _chromium()
    assert chromium is not None
    cmd = [sys.executable, NBSHOT, str(notebook), str(png), "--strict-widgets", "--timeout", "150", *extra]
    out = subprocess.run([*cmd, "--chromium", chromium], capture_output=True, text=True, timeout=400)
    report = out.stdout[-6000:] + out.stderr[-2000:]
    assert out.returncode == 0, f"nbshot exited {out.returncode}:\n{report}"
    match = re.search(r"widget outputs rendered as widgets: (\d+)/(\d+)", out.stdout)
    assert match, report
    return int(match.group(1)), int(match.group(2)), report


def test_quickstart_renders_live_widgets_in_jupyterlab(tmp_path: Path) -> None:
    png = Path(SCREENSHOT or tmp_path / "quickstart.png")
    rendered, total, report = run_strict(NOTEBOOK, png)
    figure("quickstart_widgets_rendered", f"{rendered}/{total}")
    assert total >= 4 and rendered == total, report
    assert png.stat().st_size > 20_000
