"""Per-row timing and placement of a fan-out (``timing=True``): when each row started, how long it took,
which worker ran it and in how many attempts, in ``batch.to_frame()``, ``df.taskq.apply`` and
``batch.timeline()`` — through ``Client`` and ``AsyncClient`` with two real workers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import taskq_sdk.pandas  # registers df.taskq
from taskq_sdk.batch.frame import TIMING_COLUMNS
from taskq_sdk.batch.outcomes import row_times
from taskq_sdk.jobs.mapping import row_timing

from .conftest import Api, figure


@pytest.fixture
def two_workers(start_worker: Any) -> list[Any]:
    # one job at a time each: the second worker must take chunks while the first is busy
    return [start_worker(max_jobs=1), start_worker(max_jobs=1)]


def test_row_timing_is_compact_and_reads_back() -> None:
    base = 10_000_000_000
    packed = row_timing(1_700_000_000_000_000_000, base, [base, base + 5_000_000, base + 5_800_000, base + 9_000_000])
    assert packed == [1_700_000_000_000_000, [5000, 800, 3200]]
    from taskq_sdk._backend.envelope import ResultRecord

    record = ResultRecord(True, {"n": 3, "v": [1, 2, 3], "e": [], "t": packed}, None, "x", [], {}, 1, 0, 9)
    times = row_times(3, record, None, runner=True)
    assert times.started_us == [1_700_000_000_000_000, 1_700_000_000_005_000, 1_700_000_000_005_800]
    assert times.duration_us == [5000, 800, 3200] and times.attempts == [1, 1, 1]
    # a chunk without the runner's record (timing off, or failed as a whole) has no row starts
    bare = ResultRecord(True, {"n": 3, "v": [1, 2, 3], "e": []}, None, "x", [], {}, 2, 1000, 2000)
    assert row_times(3, bare, None, runner=True).started_us == [None] * 3
    assert row_times(1, bare, None, runner=False).duration_us == [1_000_000]


def _check_rows(out: pd.DataFrame, n: int, slow: int, failed: int, before: pd.Timestamp) -> None:
    assert list(out.columns[-4:]) == list(TIMING_COLUMNS)
    assert str(out["taskq_started"].dtype) == "datetime64[ns, UTC]"
    assert out["taskq_started"].notna().all() and out["taskq_duration_s"].notna().all()
    assert (out["taskq_started"] >= before).all() and (out["taskq_started"] <= pd.Timestamp.now(tz="UTC")).all()
    assert out["taskq_worker"].nunique() == 2, "two workers with one slot each share the chunks"
    assert (out["taskq_attempts"] == 1).all()
    assert out["taskq_status"].iloc[failed] == "failed", "the failed row has its timing too"
    # the straggler stands out: it slept ten times as long as any other row
    assert out["taskq_duration_s"].idxmax() == out.index[slow] and out["taskq_duration_s"].iloc[slow] >= 0.2
    # rows of one chunk ran one after the other on one worker
    for _jid, rows in out.groupby("taskq_job_id", observed=True):
        ends = rows["taskq_started"] + pd.to_timedelta(rows["taskq_duration_s"], unit="s")
        assert (rows["taskq_started"].iloc[1:].to_numpy() >= ends.iloc[:-1].to_numpy()).all()
        assert rows["taskq_worker"].nunique() == 1
    assert len(out) == n


def test_map_with_timing_puts_each_row_on_its_worker_and_clock(api: Api, two_workers: Any, tmp_path: Path) -> None:
    client = api.client(tenant=f"timing{api.kind}{uuid.uuid4().hex[:6]}")
    flags = tmp_path / "flags"
    flags.write_text("7")
    before = pd.Timestamp.now(tz="UTC").floor("s")
    batch = api(client.map("timed_row", range(40), chunk_size=5, timing=True, kwargs={"flags": str(flags), "slow": 12}))
    assert batch.manifest.timing
    out = api(batch.to_frame(timeout=60))
    _check_rows(out, 40, slow=12, failed=7, before=before)
    figure(f"timing_slowest_row_s_{api.kind}", round(float(out["taskq_duration_s"].max()), 3))
    # the failed row again, now passing: it ran twice, the second time where and when the frame says
    flags.write_text("")
    assert api(batch.retry_failed()) == 1
    again = api(batch.to_frame(timeout=60))
    assert again["taskq_status"].eq("complete").all()
    assert again["taskq_attempts"].iloc[7] == 2 and (again["taskq_attempts"].drop(index=7) == 1).all()
    assert again["taskq_started"].iloc[7] > out["taskq_started"].iloc[7]
    assert again["taskq_job_id"].iloc[7] != out["taskq_job_id"].iloc[7]
    # timing is the batch's choice; to_frame(timing=False) leaves the columns out
    assert not set(TIMING_COLUMNS) & set(api(batch.to_frame(timing=False)).columns)


def test_timing_off_sends_nothing_extra(api: Api, worker: Any) -> None:
    client = api.client(tenant=f"notiming{api.kind}{uuid.uuid4().hex[:6]}")
    batch = api(client.map("timed_row", range(10), chunk_size=5, kwargs={"seconds": 0}))
    out = api(batch.to_frame(timeout=60))
    assert not set(TIMING_COLUMNS) & set(out.columns) and not batch.manifest.timing
    chunk = api(batch.jobs()[0].result(timeout=30))
    assert set(chunk) == {"n", "v", "e"}, "no per-row clock readings travel without timing=True"
    timed = api(client.map("timed_row", range(10), chunk_size=5, timing=True, kwargs={"seconds": 0}))
    assert set(api(timed.jobs()[0].result(timeout=30))) == {"n", "v", "e", "t"}


def test_a_retried_one_item_job_shows_attempts_2(api: Api, worker: Any) -> None:
    client = api.client(tenant=f"retried{api.kind}{uuid.uuid4().hex[:6]}")
    # flaky(succeed_on) raises a transient error until that attempt: item 0 needs two
    batch = api(client.map("flaky", [2, 1, 1], chunk_size=1, timing=True))
    out = api(batch.to_frame(timeout=60))
    assert out["flaky"].tolist() == [2, 1, 1]
    assert out["taskq_attempts"].tolist() == [2, 1, 1]
    assert out["taskq_worker"].notna().all() and out["taskq_started"].notna().all()
    assert (out["taskq_duration_s"] >= 0).all()


def test_dataframe_fanout_with_timing(api: Api, two_workers: Any, tmp_path: Path) -> None:
    client = api.client(tenant=f"dftiming{api.kind}{uuid.uuid4().hex[:6]}")
    flags = tmp_path / "flags"
    flags.write_text("3")
    df = pd.DataFrame({"x": range(30)}, index=[f"r{i}" for i in range(30)])
    before = pd.Timestamp.now(tz="UTC").floor("s")
    how: dict[str, Any] = {"column": "x", "chunk_size": 5, "timing": True, "kwargs": {"flags": str(flags), "slow": 20}}
    if api.kind == "sync":
        out = df.taskq.apply("timed_row", client=client, progress=False, **how)
    else:
        out = api(taskq_sdk.pandas.apply_async(df, "timed_row", client=client, **how))
    assert out.index.equals(df.index)
    _check_rows(out, 30, slow=20, failed=3, before=before)
    # re-running the failed row keeps the columns; that row now ran twice
    flags.write_text("")
    if api.kind == "sync":
        fixed = out.taskq.rerun_failed(client=client, progress=False)
    else:
        fixed = api(taskq_sdk.pandas.rerun_failed_async(out, client=client))
    assert fixed["timed_row"].tolist() == [x * 2 for x in range(30)]
    assert fixed["taskq_attempts"].tolist() == [2 if i == 3 else 1 for i in range(30)]
    assert str(fixed["taskq_started"].dtype) == "datetime64[ns, UTC]" and fixed["taskq_started"].notna().all()
    assert fixed["taskq_worker"].notna().all()
    # the same frame without timing=True: no timing columns
    plain = (
        df.taskq.apply("timed_row", column="x", client=client, progress=False, kwargs={"seconds": 0})
        if (api.kind == "sync")
        else api(taskq_sdk.pandas.apply_async(df, "timed_row", client=client, column="x", kwargs={"seconds": 0}))
    )
    assert not set(TIMING_COLUMNS) & set(plain.columns)


def test_timeline_shows_which_worker_ran_which_row_when(api: Api, two_workers: Any, tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    client = api.client(tenant=f"stream{api.kind}{uuid.uuid4().hex[:6]}")
    flags = tmp_path / "flags"
    flags.write_text("7")
    batch = api(client.map("timed_row", range(40), chunk_size=5, timing=True, kwargs={"flags": str(flags), "slow": 12}))
    api(batch.wait(timeout=60))
    tl = api(batch.timeline())
    assert len(tl) == batch.n_jobs == 8
    rows = tl.rows()
    assert list(rows.columns) == [
        "position", "job_id", "worker", "status", "attempts", "started_at", "finished_at", "duration_s",
    ]  # fmt: skip
    assert rows["position"].tolist() == list(range(40)) and rows["worker"].nunique() == 2
    assert rows["status"].iloc[7] == "failed" and (rows["status"].drop(index=7) == "complete").all()
    assert rows["started_at"].notna().all() and (rows["finished_at"] >= rows["started_at"]).all()
    assert rows.nlargest(1, "duration_s")["position"].item() == 12, "the straggler is the slowest row"
    # the per-row frame agrees with to_frame(): same worker and start for every row
    out = api(batch.to_frame())
    assert (rows["worker"].astype(str).to_numpy() == out["taskq_worker"].astype(str).to_numpy()).all()
    assert (rows["started_at"].to_numpy() == out["taskq_started"].to_numpy()).all()
    # the drawing: a lane per worker, a bar per row, the straggler outlined and named in the title
    ax = tl.plot()
    assert len([t.get_text() for t in ax.get_yticklabels()]) == 2
    bars = sum(len(c.get_paths()) for c in ax.collections)
    assert bars == 40, "one bar per row"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["complete (39)", "failed (1)", "straggler (>3x median)"], legend
    assert "slowest row 12" in ax.get_title()
    matplotlib.pyplot.close(ax.figure)
    html = tl._repr_html_()
    assert html.count("<rect") == 40 + 3, "40 row bars and three legend swatches (complete, failed, straggler)"
    assert "row 12: complete" in html and "(straggler)" in html and "failed (1)" in html
    # per job, the old view
    assert sum(len(c.get_paths()) for c in tl.plot(rows=False).collections) == 8
    matplotlib.pyplot.close("all")


def test_timeline_of_a_running_chunked_batch(api: Api, worker: Any) -> None:
    client = api.client(tenant=f"running{api.kind}{uuid.uuid4().hex[:6]}")
    batch = api(client.map("timed_row", range(6), chunk_size=3, timing=True, kwargs={"seconds": 0.5}))
    running = lambda: (api(batch.timeline()).rows()["status"] == "running").sum() >= 3  # noqa: E731
    from .conftest import wait_until

    wait_until(running, 20, 0.05, "a chunk running")
    rows = api(batch.timeline()).rows()
    live = rows[rows["status"] == "running"]
    assert live["worker"].notna().all() and live["started_at"].isna().all(), "a running chunk's rows: worker, no times"
    api(batch.cancel())


def test_the_notebook_view_joins_rows_too_narrow_to_tell_apart() -> None:
    from taskq_sdk.plotting import Bar, Stream
    from taskq_sdk.views.task_stream import task_stream_html

    rows = [Bar(0, 0, 1, i / 1000, (i + 1) / 1000, "complete", f"row {i}") for i in range(1000)]
    rows[500] = Bar(0, 0, 1, 0.5, 0.501, "failed", "row 500")
    html = task_stream_html(Stream(["w1"], rows, 1.0, "1000 rows"))
    drawn = html.count("<rect") - 2  # two legend swatches
    assert 3 <= drawn <= 60, f"1,000 rows of 1 ms on 510 px: joined into a few bars, not {drawn}"
    assert "rows 0-" in html and "row 500: failed" in html and "complete (999)" in html


def test_cached_rows_have_no_time_and_zero_attempts(settings: Any, two_workers: Any) -> None:
    from taskq_sdk import Client

    df = pd.DataFrame({"x": range(12)})
    with Client(settings=settings, tenant=f"cachetiming{uuid.uuid4().hex[:6]}") as client:
        first = df.taskq.apply("timed_row", column="x", client=client, progress=False, timing=True, cache=True)
        assert (first["taskq_attempts"] == 1).all() and first["taskq_started"].notna().all()
        grown = pd.DataFrame({"x": range(16)})  # 12 rows cached, 4 new
        again = grown.taskq.apply("timed_row", column="x", client=client, progress=False, timing=True, cache=True)
        cached = df.taskq.apply("timed_row", column="x", client=client, progress=False, timing=True, cache=True)
    assert list(cached.columns[-4:]) == list(TIMING_COLUMNS) and (cached["taskq_attempts"] == 0).all()
    assert again["timed_row"].tolist() == [x * 2 for x in range(16)]
    assert list(again.columns[-4:]) == list(TIMING_COLUMNS)
    assert str(again["taskq_started"].dtype) == "datetime64[ns, UTC]"
    ran = again["taskq_attempts"] == 1
    assert ran.tolist() == [False] * 12 + [True] * 4, "cached rows did not run now"
    assert again["taskq_started"][~ran].isna().all() and again["taskq_worker"][ran].notna().all()


def test_a_big_batch_without_timing_is_drawn_from_job_states(
    settings: Any, worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskq_sdk import Client
    from taskq_sdk.batch import handles

    monkeypatch.setattr(handles, "ROWS_FROM_RESULTS", 0)  # as if it had more rows than a timeline reads
    with Client(settings=settings, tenant=f"bigtl{uuid.uuid4().hex[:6]}") as client:
        chunked = client.map("timed_row", range(10), chunk_size=5, kwargs={"seconds": 0})
        single = client.map("timed_row", range(3), chunk_size=1, kwargs={"seconds": 0})
        chunked.wait(timeout=30), single.wait(timeout=30)
        rows = chunked.timeline().rows()
        ones = single.timeline().rows()
    assert rows["status"].eq("complete").all() and rows["worker"].notna().all() and rows["started_at"].isna().all()
    assert ones["started_at"].notna().all() and (ones["duration_s"] >= 0).all(), "one-item jobs: their own times"
