"""The dashboard widget: its numbers move while jobs run, its buttons act, it stops when closed."""

from __future__ import annotations

from typing import Any

import pytest

from taskq_sdk import Client, JobStatus
from taskq_sdk.config import Settings

from .conftest import wait_until

pytest.importorskip("ipywidgets")


def test_dashboard_numbers_move_and_buttons_act(settings: Settings, worker: Any) -> None:
    with Client(settings=settings, workspace="dash") as client:
        dash = client.dashboard(interval=0.25, minutes=5)
        wait_until(lambda: dash.refreshes >= 1, what="first refresh")
        before = dash.data
        assert before is not None and len(before.live_workers) == 1
        jobs = [client.submit("add", i, i) for i in range(12)] + [client.submit("boom", 1)]
        for j in jobs:
            j.exception(timeout=10)
        wait_until(lambda: dash.data is not None and dash.data.minute.totals.complete >= 12, what="counts moved")
        assert dash.data is not None
        assert dash.data.minute.totals.failed >= 1
        assert "throughput" in dash.stats.value and "<svg" in dash.chart.value
        assert "failed" in dash.chart.value
        # the Cancel button of a deferred job cancels it; Retry re-runs a failed one
        later = client.submit("add", 1, 1, _defer_by=600)
        wait_until(lambda: later.id in dash.job_buttons, what="deferred job listed")
        cancel, _ = dash.job_buttons[later.id]
        cancel.click()
        wait_until(lambda: later.status() is JobStatus.cancelled, what="cancelled by the button")
        failed = jobs[-1]
        wait_until(lambda: failed.id in dash.job_buttons, what="failed job listed")
        finished_cancel, retry = dash.job_buttons[failed.id]
        assert finished_cancel.layout.visibility == "hidden", "a finished job offers Retry, not Cancel"
        retry.click()
        wait_until(lambda: failed.info().retried_by is not None, what="retried by the button")
        assert settings.redis_url is not None
        assert settings.redis_url.get_secret_value().split("@")[0] not in dash.widget.children[0].children[0].value
        dash.close()
        n = dash.refreshes
        assert not dash.running
        client.submit("add", 1, 1).result(timeout=10)
        assert dash.refreshes <= n + 1, "no refresh after close"
