"""Notebook views on real jobs: the live job widget, progress views, HTML reprs, and life without ipywidgets.

The widget models are driven by real workers; the Cancel button is pressed by calling its click
handlers, as the browser would.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from taskq_sdk import AsyncClient, BadArguments, Client, JobFailed, JobStatus, Settings
from taskq_sdk.local import WorkerThread
from taskq_sdk.views.progress import TqdmView, WidgetProgressView, make_view
from taskq_sdk.views.widgets import JobWidget

from .conftest import ROOT, async_wait_until, wait_until


@pytest.fixture
def client(settings: Settings, worker: WorkerThread) -> Iterator[Client]:
    c = Client(settings=settings)
    yield c
    c.close()


def test_widget_follows_a_job_to_completion(client: Client) -> None:
    job = client.submit("slow", 30, step=0.05)
    view = JobWidget(job)
    assert view.running
    wait_until(lambda: 0 < view.bar.value < 1, timeout=10, what="bar moving")
    wait_until(lambda: "step" in view.message.value, timeout=10, what="progress message")
    wait_until(lambda: "running" in view.elapsed.value, timeout=10, what="elapsed time")
    assert "attempt 1" in view.attempts.value
    wait_until(lambda: not view.running, timeout=20, what="view stopped after the job finished")
    assert "complete" in view.status.value
    assert view.bar.value == 1.0 and view.bar.bar_style == "success"
    assert "result" in view.result.value and "30" in view.result.value
    assert view.cancel_button.disabled
    assert "slow(30" in view.title.value
    assert not client.async_client.core.tasks  # nothing left running on the client's loop


def test_cancel_button_cancels_the_job(client: Client) -> None:
    job = client.submit("sleeper", 30)
    view = JobWidget(job)
    wait_until(lambda: job.status() is JobStatus.in_progress, timeout=10, what="job running")
    view.cancel_button.click()  # calls the button's click handlers, as a press in the browser does
    wait_until(lambda: job.status() is JobStatus.cancelled, timeout=10, what="job cancelled")
    wait_until(lambda: not view.running, timeout=10, what="view stopped")
    assert "cancelled" in view.status.value
    assert view.cancel_button.disabled


def test_view_stops_when_its_client_closes_and_the_job_lives_on(settings: Settings, worker: WorkerThread) -> None:
    client = Client(settings=settings)
    job = client.submit("sleeper", 30)
    view = JobWidget(job)
    wait_until(lambda: "in_progress" in view.status.value, timeout=10, what="view shows the job running")
    client.close()
    wait_until(lambda: not view.running, timeout=10, what="view stopped with its client")
    assert "stopped updating" in view.result.value
    with Client(settings=settings) as other:
        assert other.job(job.id).status() is JobStatus.in_progress
        assert other.job(job.id).cancel()


def test_failed_job_shows_its_remote_traceback_escaped(client: Client) -> None:
    job = client.submit("boom", "<script>alert(1)</script>")
    view = JobWidget(job)
    wait_until(lambda: not view.running, timeout=20, what="view finished")
    assert "failed" in view.status.value and view.bar.bar_style == "danger"
    assert "ValueError" in view.result.value and "Traceback" in view.result.value
    assert "<script>" not in view.result.value + view.message.value
    assert "&lt;script&gt;" in view.result.value
    assert "about to fail" in view.logs.value  # the job's captured print

    exc = job.exception()
    assert isinstance(exc, JobFailed)
    html = exc._repr_html_()
    assert "remote traceback" in html and "&lt;script&gt;" in html and "<script>" not in html


def test_widget_of_an_async_job_on_a_running_loop(settings: Settings, worker: WorkerThread) -> None:
    async def story() -> JobWidget:
        async with AsyncClient(settings=settings) as aclient:
            ajob = await aclient.submit("slow", 10, step=0.02)
            view = JobWidget(ajob)
            await async_wait_until(lambda: not view.running, timeout=20, what="view finished")
            return view

    view = asyncio.run(story())
    assert "complete" in view.status.value and view.bar.value == 1.0


def test_view_of_a_finished_job_paints_once_and_stops(client: Client) -> None:
    job = client.submit("add", 1, 2)
    assert job.result(timeout=10) == 3
    view = JobWidget(job)
    wait_until(lambda: not view.running, timeout=10, what="view done")
    assert "complete" in view.status.value and "3" in view.result.value


def test_wait_with_a_widget_progress_view(client: Client) -> None:
    view = WidgetProgressView("slow job", display=False)
    assert client.submit("sync_slow", 10, step=0.02).wait(progress=view) == 10
    assert view.bar.value == 1.0 and view.bar.bar_style == "success"
    assert "complete" in view.status.value


def test_wait_progress_in_a_terminal_is_a_tqdm_bar(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(make_view(True, "x"), TqdmView)
    assert client.submit("slow", 5, step=0.01).wait(progress=True) == 5
    err = capsys.readouterr().err
    assert "100%" in err and "complete" in err


def test_html_views_show_no_secrets(client: Client, settings: Settings) -> None:
    password = settings.redis_url.get_secret_value().split(":")[2].split("@")[0]
    assert password
    html = client._repr_html_()
    assert password not in html and "***" in html and "live" in html
    assert password not in client.async_client._repr_html_()
    with pytest.raises(BadArguments) as refused:  # add() takes no password: submit says so, naming no value
        client.submit("add", 1, 2, password="hunter2")
    assert "'password'" in str(refused.value) and "hunter2" not in str(refused.value)
    job = client.submit("echo", 1, password="hunter2")  # echo takes **kwargs: it runs, the view redacts it
    job.result(timeout=10)
    card = job._repr_html_()
    assert "hunter2" not in card and "complete" in card
    assert job._repr_mimebundle_() is None  # not in a notebook: IPython uses the reprs


def test_without_ipywidgets_everything_still_works(redis_url: str, worker: WorkerThread) -> None:
    script = textwrap.dedent(
        """
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "ipywidgets" or name.startswith("ipywidgets."):
                    raise ImportError("blocked for the test")
        sys.meta_path.insert(0, Block())

        from taskq_sdk import Client
        from taskq_sdk.views.progress import make_view, TqdmView
        with Client(sys.argv[1]) as client:
            job = client.submit("slow", 3, step=0.01)
            assert job.wait(progress=True) == 3
            assert isinstance(make_view(True, "x"), TqdmView)
            try:
                from taskq_sdk.views.widgets import JobWidget
                JobWidget(job)
            except ImportError as exc:
                print("IMPORT-ERROR", exc)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script, redis_url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 0, out.stderr
    assert 'IMPORT-ERROR Live notebook views need ipywidgets: pip install "taskq-sdk[notebook]"' in out.stdout


def test_a_finished_batch_offers_no_cancel(client: Client) -> None:
    from taskq_sdk.views.widgets import WidgetBatchView

    batch = client.map("sleeper", [0.2] * 3)
    view = WidgetBatchView(batch.manifest, on_cancel=batch.cancel)
    assert not view.cancel.disabled and view.cancel.layout.display != "none", "a running batch offers Cancel"
    counts = batch.wait(timeout=30, progress=view)
    assert counts.finished and counts.done == 3
    assert view.cancel.disabled and view.cancel.layout.display == "none", "a finished batch does not"
