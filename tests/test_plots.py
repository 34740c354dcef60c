"""Charts the ecosystem's way: metrics and batch timelines plot with matplotlib; the dashboard chart reads like one.

Real jobs on a real worker feed the charts; what the Axes hold (bars, labels, lanes) is checked, not pixels.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from typing import Any

import pytest

from taskq_sdk import Client
from taskq_sdk.config import Settings
from taskq_sdk.views.dashboard import chart_svg

from .conftest import ROOT

matplotlib = pytest.importorskip("matplotlib", reason='needs matplotlib: pip install "taskq-sdk[notebook]"')
pytest.importorskip("pandas")
matplotlib.use("Agg")


def _bar_widths(ax: Any) -> dict[str, list[float]]:
    """Legend label -> bar lengths of that series (horizontal bars), read back from the Axes."""
    handles, labels = ax.get_legend_handles_labels()
    return {label: [p.get_width() for p in h.patches] for h, label in zip(handles, labels, strict=True)}


def test_metrics_plot_stacks_complete_failed_cancelled_per_function(settings: Settings, worker: Any) -> None:
    with Client(settings=settings, workspace="plots") as client:
        for i in range(5):
            client.submit("add", i, 1).result(timeout=10)
        for _ in range(2):
            client.submit("boom", 1).exception(timeout=10)
        metrics = client.metrics(window=600, workspace="plots")
    ax = metrics.plot()
    assert [t.get_text() for t in ax.get_yticklabels()] == ["boom", "add"], "largest function on top"
    bars = _bar_widths(ax)
    assert bars["complete"] == [0, 5] and bars["failed"] == [2, 0] and bars["cancelled"] == [0, 0]
    assert ax.get_xlabel() == "jobs finished" and ax.get_ylabel() == "function"
    assert "last 10 min" in ax.get_title() and "failure rate 28.6%" in ax.get_title()
    matplotlib.pyplot.close(ax.figure)


def test_batch_timeline_has_a_lane_per_worker_and_a_bar_per_job(settings: Settings, start_worker: Any) -> None:
    start_worker(max_jobs=2), start_worker(max_jobs=2)  # 8 jobs of 0.3 s cannot all go to one of them
    with Client(settings=settings) as client:
        batch = client.map("sleeper", [0.3] * 8)
        batch.wait(timeout=30)
        timeline = batch.timeline()
    frame = timeline.to_frame()
    assert len(frame) == 8 and set(frame["status"]) == {"complete"}
    assert (frame["run_seconds"] >= 0.3).all() and (frame["wait_seconds"] >= 0).all()
    workers = set(frame["worker"])
    assert len(workers) == 2 and None not in workers, workers
    ax = timeline.plot()
    lanes = [t.get_text() for t in ax.get_yticklabels()]
    assert len(lanes) == 2
    spans = [path for collection in ax.collections for path in collection.get_paths()]
    assert len(spans) == 8, "one bar per job run"
    assert ax.get_xlabel() == "seconds since the first job was queued" and "8 jobs on 2 workers" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["complete (8)"]
    matplotlib.pyplot.close(ax.figure)


def test_without_matplotlib_the_error_names_the_install_line(tmp_path: Any) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None; sys.modules['matplotlib.pyplot'] = None\n"
        "from taskq_sdk.plotting import Timeline\n"
        "try:\n    Timeline([]).plot()\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == 'timeline.plot() needs matplotlib: pip install "taskq-sdk[notebook]"', out.stderr


def test_dashboard_chart_has_axes_labels_and_a_legend_per_function() -> None:
    now = int(time.time() // 60)
    series = [(now - 2, {"resize": (10, 0)}), (now - 1, {"resize": (4, 1), "ocr": (6, 2)}), (now, {})]
    svg = chart_svg(series)
    legend = re.findall(r'<rect x="\d+" y="\d+" width="9" height="9" fill="(#\w+)"/><text[^>]*>([^<]+)</text>', svg)
    assert [name for _, name in legend] == ["resize", "ocr", "failed"], "functions by share, then failures"
    colors = dict((name, color) for color, name in legend)
    assert len(re.findall(rf'fill="{colors["resize"]}"><title>resize: ', svg)) == 2
    assert re.search(rf'fill="{colors["failed"]}"><title>3 failed at \d\d:\d\d: ocr 2, resize 1</title>', svg)
    ticks = re.findall(r'text-anchor="end">(\d+)</text>', svg)
    assert ticks == ["0", "10", "20"], "y axis from 0 to a round maximum above the peak (13)"
    assert "minute (local time)" in svg and ">jobs</text>" in svg and "jobs/min, last 3 min (peak 13)" in svg
    assert len(re.findall(r'text-anchor="middle">\d\d:\d\d</text>', svg)) == 3, "first, middle, last minute"


def test_dashboard_chart_groups_functions_beyond_six_as_other() -> None:
    series = [(29_000_000, {f"fn{i}": (i + 1, 0) for i in range(9)})]
    names = re.findall(r'height="9" fill="#\w+"/><text[^>]*>([^<]+)</text>', chart_svg(series))
    assert names == ["fn8", "fn7", "fn6", "fn5", "fn4", "other functions", "failed"]
    assert "other functions: 10 complete" in chart_svg(series)
