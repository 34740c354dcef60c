"""The first hour of a data scientist on a LocalCluster: the mistakes a new user makes, and what they get.

Each test is one step of that hour, made the way a newcomer makes it: a plain notebook function
passed to ``submit``/``map``/``df.taskq.apply`` (no ``@cluster.job``), a lambda, an edited cell
run again, ``df.taskq`` without ``import taskq_sdk.pandas`` or ``client=``, and the ``taskq``
command in a second shell. Real server, real worker processes, the CLI in subprocesses.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskq_sdk import Client, LocalCluster, Settings, UnknownJob

from .conftest import FAST, ROOT, wait_until


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=1, settings=Settings(**FAST)) as c:  # type: ignore[arg-type]
        yield c


# --- 1. any callable just works ------------------------------------------------------------------------------------
def test_a_plain_notebook_function_runs_with_submit_and_map(cluster: LocalCluster) -> None:
    client = cluster.client()

    def clean(text: str) -> str:  # a notebook cell, never registered with @cluster.job
        return text.strip().lower()

    assert client.submit(clean, "  Hello ").result(timeout=30) == "hello"
    assert client.map(clean, [" A", "B "]).results(timeout=30) == ["a", "b"]


def test_lambdas_partials_and_builtins_run(cluster: LocalCluster) -> None:
    client = cluster.client()
    assert client.submit(lambda x: x * 2, 21).result(timeout=30) == 42
    assert client.submit(functools.partial(pow, 2), 10).result(timeout=30) == 1024
    assert client.map(lambda a, b: a + b, [(1, 2), (3, 4)], star=True).results(timeout=30) == [3, 7]


def test_an_edited_cell_runs_its_new_code(cluster: LocalCluster) -> None:
    client = cluster.client()
    cell: dict[str, Any] = {}
    exec("def score(x):\n    return x + 1\n", cell)  # the cell as first run
    first = cell["score"]
    assert client.submit(first, 1).result(timeout=30) == 2
    exec("def score(x):\n    return x + 100\n", cell)  # edited and run again
    assert client.submit(cell["score"], 1).result(timeout=30) == 101
    assert client.submit(first, 1).result(timeout=30) == 2, "the old version still runs what it ran"


def test_closures_over_different_values_do_not_overwrite_each_other(cluster: LocalCluster) -> None:
    client = cluster.client()

    def times(k: int) -> Any:
        return lambda x: x * k

    jobs = [client.submit(times(k), 10) for k in (1, 2, 3)]
    assert [j.result(timeout=30) for j in jobs] == [10, 20, 30]


def test_async_client_of_a_cluster_takes_callables(cluster: LocalCluster) -> None:
    async def cell() -> None:
        async with cluster.async_client() as client:

            async def fetch(n: int) -> int:
                return n + 1

            job = await client.submit(fetch, 1)
            assert await job.result(timeout=30) == 2
            batch = await client.map(lambda s: s.upper(), ["a", "b"])
            assert await batch.results(timeout=30) == ["A", "B"]

    asyncio.run(cell())


def test_a_shared_server_never_receives_code_and_says_both_fixes(cluster: LocalCluster) -> None:
    with Client(cluster.url) as shared:  # a client of the server, not of the LocalCluster
        with pytest.raises(UnknownJob) as info:
            shared.submit(lambda x: x, 1)
        message = str(info.value)
        assert "@cluster.job" in message and "python -m taskq_sdk.worker" in message
        assert "name=" not in message, "submit takes no name=: never suggest it"

        def never_served(x: int) -> int:
            return x

        with pytest.raises(UnknownJob) as info:
            shared.submit(never_served, 1)
        assert "@cluster.job" in str(info.value) and "python -m taskq_sdk.worker mymodule" in str(info.value)


def test_a_string_name_no_worker_serves_names_both_fixes(cluster: LocalCluster) -> None:
    with pytest.raises(UnknownJob) as info:
        cluster.client().submit("scroe", "typo")
    message = str(info.value)
    assert "'scroe'" in message and "spelling" in message
    assert "@cluster.job" in message and "python -m taskq_sdk.worker mymodule" in message


# --- 2. df.taskq without ceremony ----------------------------------------------------------------------------------
def _fresh_python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_df_taskq_exists_after_import_taskq_sdk_in_either_order() -> None:
    out = _fresh_python(
        "import sys, taskq_sdk\n"
        "assert 'pandas' not in sys.modules, 'import taskq_sdk must not import pandas'\n"
        "import pandas as pd\n"
        "print(type(pd.DataFrame({'x': [1]}).taskq).__name__)\n"
    )
    assert out.strip() == "TaskqAccessor"
    out = _fresh_python("import pandas as pd, taskq_sdk\nprint(type(pd.Series([1]).taskq).__name__)\n")
    assert out.strip() == "TaskqAccessor"


def test_df_taskq_apply_without_client_uses_the_cluster_and_runs_a_plain_function() -> None:
    out = _fresh_python(
        "import pandas as pd, taskq_sdk\n"
        "df = pd.DataFrame({'text': ['a b', 'c']}, index=['r1', 'r2'])\n"
        "try:\n"
        "    df.taskq.apply(len, column='text')\n"
        "except taskq_sdk.ConfigurationError as exc:\n"
        "    print('NO CLIENT:', exc)\n"
        "def words(t):\n"
        "    return len(t.split())\n"
        "with taskq_sdk.LocalCluster(n_workers=1):\n"
        "    out = df.taskq.apply(words, column='text', key='first-hour', progress=False)\n"
        "    print(list(out.columns), out['words'].tolist(), out.taskq.reused)\n"
        "    again = df.taskq.apply(words, column='text', key='first-hour', progress=False)\n"
        "    print('REUSED', again.taskq.reused, again.taskq.batch_id)\n"
    )
    no_client, result, reused = out.strip().splitlines()
    assert "LocalCluster()" in no_client and "cluster.client()" in no_client
    assert result == "['words', 'taskq_status', 'taskq_error', 'taskq_job_id'] [2, 1] False"
    assert reused == "REUSED True first-hour"


def test_apply_async_defaults_to_the_open_async_client(cluster: LocalCluster) -> None:
    import pandas as pd

    import taskq_sdk.pandas

    async def cell() -> list[int]:
        async with cluster.async_client():
            out = await taskq_sdk.pandas.apply_async(pd.Series(["x", "yy"]), lambda s: len(s))
            return list(out["lambda"])

    assert asyncio.run(cell()) == [1, 2]


# --- 3. the taskq command in another shell -------------------------------------------------------------------------
def _env(state: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env.update(PYTHONPATH=str(ROOT), XDG_RUNTIME_DIR=str(state), TMPDIR=str(tmp))
    return env


def _taskq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskq_sdk.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_taskq_jobs_in_another_shell_finds_taskq_local(tmp_path: Path) -> None:
    state, tmp = tmp_path / "run", tmp_path / "tmp"
    state.mkdir(mode=0o700)
    tmp.mkdir()
    env = _env(state, tmp)
    local = subprocess.Popen(
        [sys.executable, "-m", "taskq_sdk.cli", "local", "tests.jobfns"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    state_file = state / "taskq" / "local.json"
    try:
        wait_until(state_file.exists, timeout=60, what="taskq local wrote its state file")
        assert (state_file.stat().st_mode & 0o777) == 0o600
        assert ((state / "taskq").stat().st_mode & 0o777) == 0o700
        workers = wait_until(
            lambda: (r := _taskq(env, "workers", "--json")).returncode == 0 and json.loads(r.stdout) and r,
            timeout=30,
            what="taskq workers sees the local workers",
        )
        assert json.loads(workers.stdout)[0]["status"] == "running"
        assert _taskq(env, "jobs").returncode == 0
        second = _taskq(env, "local")
        assert second.returncode == 2 and "already running" in second.stderr and "Traceback" not in second.stderr
        local.send_signal(signal.SIGTERM)
        out, _ = local.communicate(timeout=30)
        assert local.returncode == 0 and "stopped" in out
        assert "python" not in out.lower() and "LocalCluster" not in out, out
        assert not state_file.exists(), "the state file goes away when taskq local stops"
        assert list(tmp.iterdir()) == [], f"temp files left behind: {list(tmp.iterdir())}"
    finally:
        if local.poll() is None:
            local.kill()


def test_a_stale_state_file_is_ignored_and_removed(tmp_path: Path) -> None:
    state = tmp_path / "run"
    (state / "taskq").mkdir(parents=True, mode=0o700)
    os.chmod(state / "taskq", 0o700)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = state / "taskq" / "local.json"
    stale.write_text(json.dumps({"url": "redis://:pw@127.0.0.1:1/0", "safe_url": "x", "pid": gone.pid}))
    os.chmod(stale, 0o600)
    env = _env(state, tmp_path)
    out = _taskq(env, "workers", "--url", "redis://127.0.0.1:1/0")  # an explicit --url wins; the file stays
    assert stale.exists()
    out = _taskq(env, "workers")
    assert not stale.exists(), "a state file whose taskq local is gone is removed"
    assert out.returncode == 3 and "127.0.0.1:1" not in out.stderr


def test_usage_errors_exit_2_naming_the_choices_without_a_traceback(tmp_path: Path) -> None:
    env = _env(tmp_path, tmp_path)
    out = _taskq(env, "jobs", "--status", "bogus")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "failed" in out.stderr and "in_progress" in out.stderr
    out = _taskq(env, "jobs", "--limit", "0")
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_shell_messages_speak_shell(tmp_path: Path) -> None:
    out = _taskq(_env(tmp_path, tmp_path), "workers", "--url", "redis://127.0.0.1:1/0")
    assert out.returncode == 3
    assert "taskq local" in out.stderr
    assert "LocalCluster()" not in out.stderr and "in Python" not in out.stderr


def test_help_is_plain_text_with_version_and_workers_help(tmp_path: Path) -> None:
    env = _env(tmp_path, tmp_path)
    text = _taskq(env, "--help").stdout
    assert "``" not in text and "::" not in text, text[-400:]
    version = _taskq(env, "--version")
    assert version.returncode == 0 and version.stdout.startswith("taskq ")
    local_help = _taskq(env, "local", "--help").stdout
    workers_line = next(line for line in local_help.splitlines() if "--workers" in line)
    assert len(workers_line.split("--workers", 1)[1].strip()) > 3, local_help
    # the console script is the same program
    script = Path(sys.executable).with_name("taskq")
    if script.exists():
        assert subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env).returncode == 0
