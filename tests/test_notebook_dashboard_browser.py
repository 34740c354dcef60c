"""The monitoring notebook in a real JupyterLab, in headless Chromium: the dashboard renders as a live widget.

Runs ``notebooks/04_monitoring.ipynb`` through ``tests/nbshot.py`` (``TASKQ_NBSHOT`` overrides it)
with ``--strict-widgets``: every cell must run without error and every widget output must render
as a widget, not as its text fallback. The rendered page must show the dashboard with its
numbers (live workers, throughput, failure rate) and its per-minute chart. The screenshot is
saved under the test's tmp dir (``TASKQ_DASHBOARD_SCREENSHOT`` names a path to keep a copy).
Skips, saying how to enable it, where Chromium, playwright or JupyterLab is missing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from taskq_sdk.views.html import PALETTE

from .conftest import ROOT, figure
from .test_browser import run_strict

pytestmark = pytest.mark.notebook

NOTEBOOK = ROOT / "notebooks" / "04_monitoring.ipynb"
KEEP_SCREENSHOT = os.environ.get("TASKQ_DASHBOARD_SCREENSHOT")


@pytest.mark.timeout(450)
def test_monitoring_notebook_renders_the_dashboard_in_jupyterlab(tmp_path: Path) -> None:
    png = tmp_path / "04_monitoring.png"
    page = tmp_path / "04_monitoring.html"
    rendered, total, report = run_strict(NOTEBOOK, png, "--dump-html", str(page))
    figure("monitoring_widgets_rendered", f"{rendered}/{total}")
    assert total >= 1 and rendered == total, report
    assert png.stat().st_size > 20_000
    print(f"screenshot: {png}")
    if KEEP_SCREENSHOT:
        shutil.copyfile(png, KEEP_SCREENSHOT)

    # the dashboard widget as the browser drew it: title, numbers from the jobs the notebook ran, chart
    html = page.read_text(encoding="utf-8")
    start = html.find("<b>taskq dashboard</b>")
    assert start >= 0, "the dashboard widget is not on the page"
    end = html.find("<b>Recent jobs</b>", start)
    assert end > start, "the dashboard widget has no recent-jobs list"
    html = html[start:end]  # the dashboard's title, numbers, chart and workers table
    workers = re.search(r"live workers <b>(\d+)</b>", html)
    throughput = re.search(r"throughput <b>([\d.]+)</b> jobs/s", html)
    failure = re.search(r"failure rate <b>([\d.]+)%</b>", html)
    assert workers and throughput and failure, "the dashboard shows no numbers"
    assert int(workers.group(1)) == 2
    assert float(throughput.group(1)) > 0
    assert float(failure.group(1)) > 0  # the notebook's check() fails on multiples of 3
    assert "jobs/min, last 15 min" in html, "the dashboard's chart is missing"
    failed = re.escape(PALETTE["failed"])  # the one palette every view uses
    assert re.search(rf'<rect[^>]*fill="{failed}"', html), "the chart shows no failed jobs"
    figure("monitoring_dashboard", f"{workers.group(1)} workers, {throughput.group(1)} jobs/s")
