"""Project hygiene that must hold on every change: lint, format, types, the public API, import cost."""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
import sys

import pytest

import taskq_sdk
from taskq_sdk import AsyncClient, AsyncJob, Client, Job

from .conftest import ROOT

PUBLIC = {
    "AsyncBatch", "AsyncClient", "AsyncJob", "Batch", "BatchCounts", "BlockedDestination", "BrokerUnavailable",
    "Client", "ClientClosed", "ConfigurationError", "DeserializationError", "DownloadFailed", "DownloadTimeout",
    "DownloadTooLarge", "InvalidName", "InvalidURL", "Job", "JobCancelled", "JobFailed", "JobInfo", "JobLost",
    "JobNotFound", "JobStatus", "JobTimedOut", "JobTimeout", "LocalCluster", "NotAVideo", "PayloadTooLarge",
    "PermissionDenied", "Progress", "ResultExpired", "Retry", "SerializationError", "ServerError", "Settings",
    "StopJob", "SubmitError", "TaskQueueService", "TaskqError", "UnknownJob", "UnsupportedScheme", "VideoError",
    "WaitTimeout", "WorkerInfo", "__version__", "current_job", "job", "report_progress",
}  # fmt: skip


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("ruff") is None and not (ROOT / ".venv").exists(), reason="ruff not installed")
def test_ruff_lint_and_format() -> None:
    lint = run(sys.executable, "-m", "ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout[-4000:]
    fmt = run(sys.executable, "-m", "ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout[-4000:]


def test_mypy_strict_clean() -> None:
    out = run(sys.executable, "-m", "mypy")
    assert out.returncode == 0, out.stdout[-4000:]


def test_public_api_is_curated() -> None:
    assert set(taskq_sdk.__all__) == PUBLIC
    for name in taskq_sdk.__all__:
        assert getattr(taskq_sdk, name) is not None


def test_import_is_light() -> None:
    code = (
        "import sys, time; t = time.perf_counter(); import taskq_sdk; "
        "print(time.perf_counter() - t); "
        "heavy = ('pandas', 'ipywidgets', 'av', 'numpy', 'IPython', 'arq', 'redis'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = run(sys.executable, "-c", code)
    seconds, modules = out.stdout.splitlines()
    assert json.loads(modules.replace("'", '"')) == []
    assert float(seconds) < 0.5


def _public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        n: inspect.signature(m)
        for n, m in inspect.getmembers(cls, predicate=inspect.isfunction)
        if not n.startswith("_")
    }


@pytest.mark.parametrize(("sync", "asynchronous"), [(Client, AsyncClient), (Job, AsyncJob)])
def test_sync_facade_mirrors_async_api(sync: type, asynchronous: type) -> None:
    s, a = _public_methods(sync), _public_methods(asynchronous)
    assert set(s) == set(a), f"only sync: {set(s) - set(a)}, only async: {set(a) - set(s)}"
    for name in a:
        assert list(s[name].parameters) == list(a[name].parameters), name
